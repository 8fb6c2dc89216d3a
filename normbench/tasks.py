"""What a run learns and how it is scored: classification or character-level language modelling.

The trainer asks its task for the training loss and for the evaluation metrics, so that the
loop itself has no branch on the kind of data. A task has a primary metric (``acc``, higher is
better; ``bpc``, bits per character, lower is better) that names the keys of the run record:
``train_<metric>``, ``test_<metric>``, ``best_test_<metric>``, ``final.<...>``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Classification:
    """One label per sample: cross-entropy of the logits ``(N, classes)``; accuracy."""

    metric = "acc"
    higher_is_better = True
    target_key = "target_acc"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 forward=None) -> tuple[float, float]:
        """Mean cross-entropy (nats) and accuracy of ``model`` in eval mode (population statistics).

        ``forward(model, x)``, when given, replaces ``model(x)`` (the trainer's autocast and
        memory format); logits are scored in float32.
        """
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device, dtype=torch.long)
        for start in range(0, len(x), batch_size):
            logits = (forward(model, x[start:start + batch_size]) if forward else model(x[start:start + batch_size])).float()
            target = y[start:start + batch_size]
            loss_sum += F.cross_entropy(logits, target, reduction="sum")
            correct += (logits.argmax(1) == target).sum()
        model.train(was_training)
        return loss_sum.item() / len(x), correct.item() / len(x)

    def reached(self, value: float | None, target: float | None) -> bool:
        return target is not None and value is not None and value >= target

    def gap(self, train: float, test: float) -> float:
        """How much worse the test set is than the training set (train acc - test acc)."""
        return train - test


class LanguageModelling:
    """A prediction per position: logits ``(N, T, vocab)`` for targets ``(N, T)``.

    The loss is the mean cross-entropy per character in nats; the metric is bits per
    character, the same quantity in base 2: :math:`\\text{bpc} = \\text{nats} / \\ln 2`.
    """

    metric = "bpc"
    higher_is_better = False
    target_key = "target_bpc"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 forward=None) -> tuple[float, float]:
        """Mean cross-entropy per character (nats) and bits per character, in eval mode."""
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
        for start in range(0, len(x), batch_size):
            logits = (forward(model, x[start:start + batch_size]) if forward else model(x[start:start + batch_size])).float()
            target = y[start:start + batch_size]
            loss_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                        reduction="sum").double()
        model.train(was_training)
        nats = loss_sum.item() / y.numel()
        return nats, nats / math.log(2)

    def reached(self, value: float | None, target: float | None) -> bool:
        return target is not None and value is not None and value <= target

    def gap(self, train: float, test: float) -> float:
        """How much worse the test set is than the training set (test bpc - train bpc)."""
        return test - train


TASKS = {"classification": Classification, "language_modelling": LanguageModelling}


def task_for(data) -> Classification | LanguageModelling:
    """The task a dataset poses: language modelling for ``kind="text"``, else classification."""
    return LanguageModelling() if data.kind == "text" else Classification()


def task_for_metric(metric: str) -> Classification | LanguageModelling:
    return LanguageModelling() if metric == "bpc" else Classification()
