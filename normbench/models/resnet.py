"""Residual networks (He et al. 2016) with every normalization built by ``make_norm``.

Two families, chosen by ``model.variant`` (``auto``: CIFAR for inputs up to 64 pixels wide,
ImageNet above):

- ``cifar``: the CIFAR-10 ResNets of He et al. 2016, section 4.2: a 3x3 conv to 16 channels,
  three stages of ``n`` basic blocks at 16, 32 and 64 channels (the first block of stages 2
  and 3 halves the map with stride 2), global average pooling, a linear layer; depth
  ``6n + 2`` (20, 32, 44, 56, 110). Shortcuts are identities, and where the shape changes the
  paper's option A: the input subsampled by 2 and zero-padded to the new channel count (no
  parameters): ResNet-20 has 0.27M parameters with batch norm.
- ``imagenet``: torchvision's ResNet-18/34/50/101/152, whose ``norm_layer`` argument gets a
  factory that asks ``make_norm`` for each layer (the GN paper's ResNet-50 with ``norm=group
  norm.groups=32``).

Initialisation as in the GN paper: He (Kaiming normal, fan-out) for convolutions, γ = 1 and
β = 0 for every norm, except γ = 0 for the last norm of each residual block when
``model.zero_init_residual=true`` (each block then starts as the identity). Group norm needs a
group count that divides every width: 16, 32, 64 for the CIFAR nets (``norm.groups`` 1, 2, 4, 8
or 16; the default 8 works), 64 ... 2048 for the ImageNet nets (the paper's 32 works).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from normbench.errors import ConfigError
from normbench.norms import make_norm, needs_bias

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
IMAGENET_DEPTHS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101", 152: "resnet152"}


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> ReLU -> conv3x3 -> norm, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str, norm_options: dict):
        super().__init__()
        n1 = make_norm(norm, out_channels, 2, **norm_options)
        n2 = make_norm(norm, out_channels, 2, **norm_options)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=needs_bias(n1))
        self.norm1 = n1
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=needs_bias(n2))
        self.norm2 = n2
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # option A: zero channels
        return x

    def forward(self, x):
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, depth: int, norm: str, norm_options: dict,
                 width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"model.depth={depth} is not a CIFAR ResNet depth (6n+2); use one of "
                              f"{', '.join(map(str, CIFAR_DEPTHS))}, or model.variant=imagenet for 18, 34, 50, 101")
        n = (depth - 2) // 6
        stem_norm = make_norm(norm, width, 2, **norm_options)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=needs_bias(stem_norm))
        self.norm1 = stem_norm
        blocks, channels = [], width
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, out, stride, norm, norm_options))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.blocks(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def last_norms(model: nn.Module) -> list[nn.Module]:
    """The last norm layer of every residual block (ours, and torchvision's BasicBlock/Bottleneck)."""
    tv = sys.modules.get("torchvision.models.resnet")  # imported only by the ImageNet variant
    out = []
    for m in model.modules():
        if isinstance(m, BasicBlock):
            out.append(m.norm2)
        elif tv is not None and isinstance(m, tv.Bottleneck):
            out.append(m.bn3)
        elif tv is not None and isinstance(m, tv.BasicBlock):
            out.append(m.bn2)
    return out


def init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """He init for convolutions; γ = 1, β = 0 for norms; γ = 0 for each block's last norm if asked."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(getattr(m, "weight", None), nn.Parameter) and not isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.ones_(m.weight)
            if isinstance(getattr(m, "bias", None), nn.Parameter):
                nn.init.zeros_(m.bias)
    if zero_init_residual:
        for norm in last_norms(model):
            if isinstance(getattr(norm, "weight", None), nn.Parameter):
                nn.init.zeros_(norm.weight)


class ResNet(nn.Module):
    """``model=resnet``: the CIFAR or ImageNet ResNet of ``model.depth`` with ``norm`` in every block.

    Args:
        input_shape: ``(C, H, W)`` of the images.
        num_classes: outputs of the final linear layer.
        norm, norm_options: the normalization and its options, for ``make_norm``.
        depth: 20, 32, 44, 56, 110 (CIFAR) or 18, 34, 50, 101, 152 (ImageNet).
        variant: ``auto`` (CIFAR when ``W <= 64``), ``cifar`` or ``imagenet``.
        zero_init_residual: γ = 0 for the last norm of each residual block (GN paper).
        width: channels of the CIFAR net's first stage (16 in the paper).
    """

    def __init__(self, input_shape, num_classes, norm, norm_options, depth=20, variant="auto",
                 zero_init_residual=True, width=16):
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(f"model=resnet takes images (C, H, W), not inputs of shape {tuple(input_shape)}")
        if variant == "auto":
            variant = "cifar" if input_shape[-1] <= 64 else "imagenet"
        if variant == "cifar":
            self.net = CifarResNet(input_shape[0], num_classes, depth, norm, norm_options, width)
        else:  # imagenet (normbench.config.schema allows no other)
            if depth not in IMAGENET_DEPTHS:
                raise ConfigError(f"model.depth={depth} is not an ImageNet ResNet depth; use one of "
                                  f"{', '.join(map(str, IMAGENET_DEPTHS))}, or model.variant=cifar for "
                                  f"{', '.join(map(str, CIFAR_DEPTHS))}")
            import torchvision

            factory = getattr(torchvision.models, IMAGENET_DEPTHS[depth])
            self.net = factory(weights=None, num_classes=num_classes,
                               norm_layer=lambda channels: make_norm(norm, channels, 2, **norm_options))
            if input_shape[0] != 3:
                self.net.conv1 = nn.Conv2d(input_shape[0], 64, 7, 2, 3, bias=False)
        self.variant = variant
        init_weights(self.net, zero_init_residual)

    def forward(self, x):
        return self.net(x)
