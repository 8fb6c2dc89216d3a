"""Fully connected networks: Linear -> norm -> activation blocks and a linear classifier."""

from __future__ import annotations

import math

import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms import make_norm, needs_bias

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, each ``Linear -> norm -> activation``.

    The norm sits between the affine map and the nonlinearity, as in Ioffe & Szegedy (2015);
    a hidden Linear has no bias when the norm subtracts a mean, since the norm's own shift
    replaces it. Input of any shape ``(N, *)`` is flattened.
    """

    def __init__(self, input_shape, num_classes, norm, norm_options, depth=3, width=128, activation="relu"):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(input_shape)
        for _ in range(depth):
            norm_layer = make_norm(norm, width, 0, **norm_options)
            layers += [nn.Linear(fan_in, width, bias=needs_bias(norm_layer)), norm_layer]
            layers.append(make_activation(activation))
            fan_in = width
        layers.append(nn.Linear(fan_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)

    def probe(self, x: torch.Tensor) -> dict[str, float]:
        """The 15th, 50th and 85th percentiles of one last-layer pre-activation over ``x``.

        The input of the last hidden activation (after the norm) for its first unit, as the
        BN paper's Figure 1 follows "a typical sigmoid": without BN it drifts over training.
        Keys ``preact_p15``, ``preact_p50``, ``preact_p85``; the trainer records them at each
        evaluation (on a fixed test batch, in eval mode).
        """
        pre = self.net[:-2](x)[:, 0]
        q = torch.quantile(pre.float(), torch.tensor([0.15, 0.5, 0.85], device=pre.device))
        return {"preact_p15": q[0].item(), "preact_p50": q[1].item(), "preact_p85": q[2].item()}
