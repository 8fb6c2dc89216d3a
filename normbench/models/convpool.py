"""ConvPool-CNN-C, the CIFAR-10 network of the weight normalization paper (Salimans & Kingma 2016).

Springenberg et al.'s ConvPool-CNN-C as modified by Salimans & Kingma (section 5.1, table 1):

    Gaussian noise (σ = 0.15) on the input, in training only
    3 x [3x3 conv 96, leaky ReLU 0.1], 2x2 max pool (stride 2), dropout 0.5
    3 x [3x3 conv 192, leaky ReLU 0.1], 2x2 max pool (stride 2), dropout 0.5
    3x3 conv 192 (no padding), 1x1 conv 192 (NIN), 1x1 conv 192 (NIN), each with leaky ReLU 0.1
    global average pool, dense 10

Every conv is followed by ``make_norm(norm, ...)`` (before the nonlinearity); with
``norm=weight`` the convs and the dense layer are weight-normalized (``norm.mean_only=true``
adds the paper's mean-only batch norm). The paper trains it with Adam at batch 100 for 200
epochs, without augmentation (``dataset.augment=false``).
"""

from __future__ import annotations

import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms import make_norm, needs_bias


class GaussianNoise(nn.Module):
    """Adds N(0, σ²) noise to the input in training; the identity in eval."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x):
        if self.training and self.sigma > 0:
            return x + self.sigma * torch.randn_like(x)
        return x

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class ConvPoolCNNC(nn.Module):
    def __init__(self, input_shape, num_classes, norm, norm_options, width1=96, width2=192, dropout=0.5,
                 input_noise=0.15, leak=0.1):
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(f"model=convpool takes images (C, H, W), not inputs of shape {tuple(input_shape)}")
        if min(input_shape[1:]) < 12:
            raise ConfigError(f"model=convpool needs images of at least 12x12 pixels, got {tuple(input_shape[1:])}")

        layers: list[nn.Module] = [GaussianNoise(input_noise)]
        channels = input_shape[0]

        def conv(out, k, pad):
            nonlocal channels
            n = make_norm(norm, out, 2, **norm_options)
            layers.extend([nn.Conv2d(channels, out, k, padding=pad, bias=needs_bias(n)), n,
                           nn.LeakyReLU(leak)])
            channels = out

        for _ in range(3):
            conv(width1, 3, 1)
        layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
        for _ in range(3):
            conv(width2, 3, 1)
        layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
        conv(width2, 3, 0)
        conv(width2, 1, 0)
        conv(width2, 1, 0)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))
