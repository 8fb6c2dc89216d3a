"""Convolutional networks for 1-D signals and 2-D images: conv -> norm -> ReLU blocks."""

from __future__ import annotations

from torch import nn

from normbench.errors import ConfigError
from normbench.models.mlp import make_activation
from normbench.norms import make_norm, needs_bias

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d}
_POOLS = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}


class CNN(nn.Module):
    """Blocks of ``conv(k, stride) -> norm -> activation``, global average pooling, linear head.

    Convolutions are 1-D for ``(N, C, L)`` signals and 2-D for ``(N, C, H, W)`` images, chosen
    from the input shape. Strided layers shrink the maps; that matters for batch norm, whose
    statistics cover batch x positions: with few positions left, small batches make them noisy,
    as deep in an ImageNet ResNet.
    """

    def __init__(self, input_shape, num_classes, norm, norm_options, channels=(32, 64, 128),
                 strides=(1, 2, 2), kernel_size=3, activation="relu"):
        super().__init__()
        dims = len(input_shape) - 1
        if dims not in _CONVS:
            raise ConfigError(f"model=cnn takes signals (C, L) or images (C, H, W), not inputs of shape {tuple(input_shape)}")
        channels, strides = list(channels), list(strides)
        if len(strides) != len(channels):
            raise ConfigError(f"model.strides has {len(strides)} entries and model.channels {len(channels)}; give one stride per layer")
        blocks: list[nn.Module] = []
        in_channels = input_shape[0]
        for out_channels, stride in zip(channels, strides, strict=True):
            norm_layer = make_norm(norm, out_channels, dims, **norm_options)
            conv = _CONVS[dims](in_channels, out_channels, kernel_size, stride=stride,
                                padding=kernel_size // 2, bias=needs_bias(norm_layer))
            blocks += [conv, norm_layer, make_activation(activation)]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.pool = _POOLS[dims](1)
        self.head = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))
