"""What a run learns and how it is scored: classification or character-level language modelling.

The trainer asks its task for the training loss and for the evaluation metrics, so that the
loop itself has no branch on the kind of data. A task has a primary metric (``acc``, higher is
better; ``bpc``, bits per character, lower is better) that names the keys of the run record:
``train_<metric>``, ``val_<metric>``, ``test_<metric>``, ``best_val_<metric>``, ``final.<...>``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Classification:
    """One label per sample: cross-entropy of the logits ``(N, classes)``; accuracy."""

    metric = "acc"  # normbench.metrics: its direction, unit and target key

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 forward=None) -> tuple[float, float]:
        """Mean cross-entropy (nats) and accuracy of ``model`` in eval mode (population statistics).

        ``forward(model, x)``, when given, replaces ``model(x)`` (the trainer's autocast and
        memory format); logits are scored in float32.
        """
        return self.evaluate_batches(model, slices(x, y, batch_size), forward)

    @torch.no_grad()
    def evaluate_batches(self, model: nn.Module, batches, forward=None) -> tuple[float, float]:
        """:meth:`evaluate` over ``(x, y)`` batches already on the device (e.g. from a DataLoader)."""
        was_training = model.training
        model.eval()
        loss_sum, correct, n = 0, 0, 0
        for x, target in batches:
            logits = (forward(model, x) if forward else model(x)).float()
            loss_sum = loss_sum + F.cross_entropy(logits, target, reduction="sum")
            correct = correct + (logits.argmax(1) == target).sum()
            n += len(target)
        model.train(was_training)
        return float(loss_sum) / n, int(correct) / n

    @torch.no_grad()
    def examples(self, model: nn.Module, batches, forward=None) -> dict[str, torch.Tensor]:
        """Each example's ``correct`` (bool) and cross-entropy ``loss`` (nats), in eval mode, over
        ``(x, y)`` batches, in their order (the final evaluation's per-example record)."""
        was_training = model.training
        model.eval()
        correct, losses = [], []
        for x, target in batches:
            logits = (forward(model, x) if forward else model(x)).float()
            correct.append(logits.argmax(1) == target)
            losses.append(F.cross_entropy(logits, target, reduction="none"))
        model.train(was_training)
        return {"correct": torch.cat(correct).cpu(), "loss": torch.cat(losses).cpu()}

    @torch.no_grad()
    def evaluate_groups(self, model: nn.Module, x, y: torch.Tensor, groups: dict[str, torch.Tensor],
                        batch_size: int, forward=None) -> tuple[tuple[float, float], dict[str, tuple[float, float]]]:
        """:meth:`evaluate` of the whole of ``x``, and of each part ``groups[label]`` (indices that
        partition ``x``), from one pass: the sums are kept per group on the device."""
        ids = torch.empty(len(y), dtype=torch.int64, device=y.device)
        for k, index in enumerate(groups.values()):
            ids[index] = k
        sums = torch.zeros(3, len(groups), dtype=torch.float64, device=y.device)  # loss, correct, count
        was_training = model.training
        model.eval()
        for (xb, target), group in zip(slices(x, y, batch_size), ids.split(batch_size), strict=True):
            logits = (forward(model, xb) if forward else model(xb)).float()
            per_sample = torch.stack([F.cross_entropy(logits, target, reduction="none").double(),
                                      (logits.argmax(1) == target).double(), torch.ones_like(group).double()])
            sums.index_add_(1, group, per_sample)
        model.train(was_training)
        loss, correct, count = sums.tolist()
        parts = {label: (loss[k] / count[k], correct[k] / count[k]) for k, label in enumerate(groups)}
        return (sum(loss) / len(y), sum(correct) / len(y)), parts


class LanguageModelling:
    """A prediction per position: logits ``(N, T, vocab)`` for targets ``(N, T)``.

    The loss is the mean cross-entropy per character in nats; the metric is bits per
    character, the same quantity in base 2: :math:`\\text{bpc} = \\text{nats} / \\ln 2`.
    """

    metric = "bpc"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 forward=None) -> tuple[float, float]:
        """Mean cross-entropy per character (nats) and bits per character, in eval mode."""
        return self.evaluate_batches(model, slices(x, y, batch_size), forward)

    @torch.no_grad()
    def evaluate_batches(self, model: nn.Module, batches, forward=None) -> tuple[float, float]:
        """:meth:`evaluate` over ``(x, y)`` batches already on the device."""
        was_training = model.training
        model.eval()
        loss_sum, n = 0, 0
        for x, target in batches:
            logits = (forward(model, x) if forward else model(x)).float()
            loss_sum = loss_sum + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                  reduction="sum").double()
            n += target.numel()
        model.train(was_training)
        nats = float(loss_sum) / n
        return nats, nats / math.log(2)

    @torch.no_grad()
    def examples(self, model: nn.Module, batches, forward=None) -> dict[str, torch.Tensor]:
        """Each test segment's ``loss``: its mean cross-entropy per character (nats), in eval mode."""
        was_training = model.training
        model.eval()
        losses = []
        for x, target in batches:
            logits = (forward(model, x) if forward else model(x)).float()
            per_char = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
            losses.append(per_char.view(target.shape).mean(1))
        model.train(was_training)
        return {"loss": torch.cat(losses).cpu()}


def slices(x, y, batch_size: int):
    """Consecutive ``(x, y)`` batches of tensors (or :class:`~normbench.data.base.Inputs`) on the device."""
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size], y[start:start + batch_size]


def task_for(data) -> Classification | LanguageModelling:
    """The task a dataset poses: language modelling for ``kind="text"``, else classification."""
    return LanguageModelling() if data.kind == "text" else Classification()

