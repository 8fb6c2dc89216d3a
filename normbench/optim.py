"""Optimizers and learning-rate schedules from the ``optim`` config group."""

from __future__ import annotations

import math

import torch
from torch import nn

from normbench.errors import ConfigError

OPTIMIZER_DESCRIPTIONS = {
    "sgd": "SGD with momentum (lr 0.05, momentum 0.9)",
    "adam": "Adam (lr 1e-3)",
    "rmsprop": "RMSProp (lr 1e-3; the recurrent BN paper's optimizer)",
}


def effective_lr(cfg, batch_size: int) -> float:
    """``cfg.lr``, scaled by ``batch_size / cfg.base_batch_size`` under ``lr_scaling=linear``.

    The linear scaling rule (Goyal et al. 2017) keeps the update per sample seen comparable
    across batch sizes; the GN paper uses lr = 0.1 N / 32.
    """
    if cfg.lr_scaling == "linear":
        return cfg.lr * batch_size / cfg.base_batch_size
    if cfg.lr_scaling != "none":
        raise ConfigError(f"optim.lr_scaling={cfg.lr_scaling} is not one of none, linear")
    return cfg.lr


def build_optimizer(cfg, model: nn.Module, batch_size: int) -> tuple[torch.optim.Optimizer, float]:
    """The optimizer named by ``cfg.name`` over ``model``'s parameters, and its learning rate."""
    lr = effective_lr(cfg, batch_size)
    params = model.parameters()
    if cfg.name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay)
    elif cfg.name == "adam":
        opt = torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    elif cfg.name == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay)
    else:
        raise ConfigError(f"unknown optimizer '{cfg.name}'; known: {', '.join(OPTIMIZER_DESCRIPTIONS)}")
    return opt, lr


def build_schedule(cfg, optimizer: torch.optim.Optimizer, total_steps: int):
    """A per-step schedule: ``cosine`` from the base rate to zero at the end; None for ``constant``."""
    if cfg.schedule == "constant":
        return None  # nothing to do per step
    if cfg.schedule == "cosine":
        factor = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))  # noqa: E731
    else:
        raise ConfigError(f"optim.schedule={cfg.schedule} is not one of constant, cosine")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
