"""Optimizers and learning-rate schedules from the ``optim`` config group."""

from __future__ import annotations

import math

import torch
from torch import nn

from normbench.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "rmsprop")


def effective_lr(cfg, batch_size: int) -> float:
    """``cfg.lr``, scaled by ``batch_size / cfg.base_batch_size`` under ``lr_scaling=linear``.

    The linear scaling rule (Goyal et al. 2017) keeps the update per sample seen comparable
    across batch sizes; the GN paper uses lr = 0.1 N / 32.
    """
    if cfg.lr_scaling == "linear":
        return cfg.lr * batch_size / cfg.base_batch_size
    return cfg.lr


def parameter_groups(cfg, model: nn.Module):
    """All parameters in one group, or, with ``norm_weight_decay=false``, the norms' γ and β apart
    in a second group without weight decay (the GN paper decays them: the default is true)."""
    from normbench.norms import norm_parameters

    if cfg.get("norm_weight_decay", True):
        return model.parameters()
    norm_ids = {id(p) for p in norm_parameters(model)}
    rest = [p for p in model.parameters() if id(p) not in norm_ids]
    norms = [p for p in model.parameters() if id(p) in norm_ids]
    return [{"params": rest}, {"params": norms, "weight_decay": 0.0}]


def build_optimizer(cfg, model: nn.Module, batch_size: int, leaf=None) -> tuple[torch.optim.Optimizer, float]:
    """The optimizer named by ``cfg.name`` over ``model``'s parameters, and its learning rate.

    ``batch_size`` is the batch of one device: under data parallelism the linear scaling rule
    uses the per-device batch, as the GN paper's 0.1 N / 32 for N images per GPU (8 GPUs).
    ``leaf(parameter)``, when given, is the tensor the optimizer updates in place of each of
    ``model``'s parameters, in the same groups and order (a pack's stacked members).
    """
    lr = effective_lr(cfg, batch_size)
    params = parameter_groups(cfg, model)
    if leaf is not None:
        groups = [{"params": list(params)}] if not isinstance(params, list) else params
        params = [{**g, "params": [leaf(p) for p in g["params"]]} for g in groups]
    if cfg.name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay)
    elif cfg.name == "adam":
        opt = torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    elif cfg.name == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay)
    else:
        raise ConfigError(f"unknown optimizer '{cfg.name}'; known: {', '.join(OPTIMIZERS)}")
    return opt, lr


def schedule_factor(cfg, total_steps: int, steps_per_epoch: int):
    """The learning-rate multiplier as a function of the step (the number of updates made), or None.

    - warm-up (``warmup_steps``, or ``warmup_epochs`` x steps per epoch): the rate rises linearly,
      ``(step + 1) / warmup``, reaching the base rate at the end of the warm-up;
    - then ``constant``; ``cosine`` from 1 down to 0 over the steps after the warm-up;
      ``step``: ``gamma ** k`` after the k-th milestone (``milestones`` in epochs, counted from
      the start of the run, e.g. the GN paper's ÷10 at epochs 30, 60, 90).
    """
    kind, warmup_steps = cfg.schedule, cfg.get("warmup_steps")
    epochs, raw, gamma = cfg.get("warmup_epochs", 0) or 0, list(cfg.get("milestones") or []), cfg.get("gamma", 0.1)
    warmup = warmup_steps if warmup_steps is not None else round(epochs * steps_per_epoch)
    milestones: list[int] = []
    if kind == "step":
        milestones = [round(m * steps_per_epoch) for m in raw]
    else:
        gamma = 1.0
    if kind == "constant" and warmup == 0:
        return None
    decay_steps = max(total_steps - warmup, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step - warmup, decay_steps) / decay_steps))
        if kind == "step":
            return gamma ** sum(step >= m for m in milestones)
        return 1.0

    return factor


def build_schedule(cfg, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int = 1):
    """A per-step ``LambdaLR`` of :func:`schedule_factor` (its state is checkpointed); None when constant."""
    factor = schedule_factor(cfg, total_steps, steps_per_epoch)
    if factor is None:
        return None  # nothing to do per step
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
