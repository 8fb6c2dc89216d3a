"""The metric vocabulary: what each measured quantity is called, its unit, whether it is shown in
percent, and which way is better. Tasks, the progress lines, the final line, the summary, the
reporter and the verdicts all ask here instead of guessing from a name.

A run record's columns name their metric with one word among their parts: ``final_test_acc``,
``best_val_error``, ``test_acc_exact``, ``test_bpc_len200``, ``time_to_target_s``
(:func:`metric_of`).

Nothing here imports torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One measured quantity.

    Attributes:
        name: the word that names it in record keys (``acc`` in ``test_acc``).
        label: how tables and axes call it.
        unit: its unit as shown after a value (``%`` for fractions shown in percent).
        percent: stored as a fraction in [0, 1], shown in percent.
        higher_is_better: which way is better.
        target_key: the ``trainer`` key giving its target (``steps_to_target``), if it has one.
        domain: the values it can take; an interval over seeds is clipped to it.
    """

    name: str
    label: str
    unit: str
    percent: bool
    higher_is_better: bool
    target_key: str | None = None
    domain: tuple[float, float] = (-math.inf, math.inf)

    def reached(self, value: float | None, target: float | None) -> bool:
        """Whether ``value`` meets ``target`` (at least it, or at most it when lower is better)."""
        if value is None or target is None:
            return False
        return value >= target if self.higher_is_better else value <= target

    def gap(self, train: float, test: float) -> float:
        """How much worse the test set is than the training set (positive: worse)."""
        return train - test if self.higher_is_better else test - train

    def best(self, values):
        """The best of ``values`` (None when there are none)."""
        values = [v for v in values if v is not None]
        return (max if self.higher_is_better else min)(values) if values else None


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("acc", "accuracy", "%", True, True, "target_acc", (0.0, 1.0)),
    Metric("error", "error", "%", True, False, domain=(0.0, 1.0)),
    Metric("bpc", "bits per character", "bits/char", False, False, "target_bpc", (0.0, math.inf)),
    Metric("loss", "loss", "nats", False, False, domain=(0.0, math.inf)),
    Metric("time", "time", "s", False, False, domain=(0.0, math.inf)),
    Metric("steps", "steps", "steps", False, False, domain=(0.0, math.inf)),
    Metric("gap", "generalization gap", "", False, False),
)}

#: The metrics a task can score runs by, in the order they are looked for in a record.
PRIMARY = ("acc", "bpc")


def metric(name: str) -> Metric:
    """The metric called ``name`` (``acc``, ``bpc``, ...)."""
    return METRICS[name]


def metric_of(column: str) -> Metric | None:
    """The metric a record or report column measures, from the words of its name; None if none."""
    for word in re.split(r"[_\s]+", column):
        if word in METRICS:
            return METRICS[word]
    return None


def primary_of(record: dict) -> str:
    """The task's metric of an evaluation record: the one whose ``test_<name>`` it holds."""
    return next((name for name in PRIMARY if f"test_{name}" in record), "acc")


def higher_is_better(column: str) -> bool:
    """Which way is better for a column (a quantity that is no metric, e.g. a count: higher)."""
    found = metric_of(column)
    return found.higher_is_better if found else True


def is_percent(column: str) -> bool:
    """Whether a column is a fraction shown in percent (accuracies and errors)."""
    found = metric_of(column)
    return bool(found and found.percent)


def domain(column: str) -> tuple[float, float]:
    """The values a column's metric can take (unbounded for a column that is no metric)."""
    found = metric_of(column)
    return found.domain if found else (-math.inf, math.inf)
