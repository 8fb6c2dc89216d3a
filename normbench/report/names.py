"""Metric and key names: how a user names them, how plots label them, which way is better.

Kept apart from the plotting and table code so that every output says the same thing about a
metric (its label, its unit, whether lower is better).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from normbench import metrics

#: Readable names for metrics and config keys, used in axis labels, legends and table heads.
LABELS = {
    "final_test_acc": "test accuracy",
    "final_train_acc": "train accuracy",
    "final_test_error": "test error",
    "final_train_error": "train error",
    "final_test_loss": "test loss",
    "final_train_loss": "train loss",
    "final_test_bpc": "test bits per character",
    "final_train_bpc": "train bits per character",
    "final_val_acc": "validation accuracy",
    "final_val_error": "validation error",
    "final_val_loss": "validation loss",
    "final_val_bpc": "validation bits per character",
    "best_val_acc": "best validation accuracy",
    "best_val_error": "best validation error",
    "best_val_bpc": "best validation bits per character",
    "selected_test_acc": "test accuracy at the best validation step",
    "selected_test_error": "test error at the best validation step",
    "selected_test_bpc": "test bits per character at the best validation step",
    "generalization_gap": "generalization gap",
    "steps_to_target": "steps to target",
    "time_to_target_s": "time to target (s)",
    "wall_time_s": "wall-clock time (s)",
    "train_time_s": "training time (s)",
    "samples_per_s": "throughput (samples/s)",
    "test_acc": "test accuracy",
    "train_acc": "train accuracy",
    "test_loss": "test loss",
    "train_loss": "training loss",
    "test_bpc": "test bits per character",
    "train_bpc": "training bits per character",
    "step": "training steps",
    "epoch": "epochs",
    "samples_seen": "training samples seen",
    "batch_size": "batch size (examples per batch)",
    "lr": "learning rate",
    "optim.lr": "base learning rate",
    "dataset.label_noise": "label noise (fraction of training labels randomized)",
    "norm.groups": "groups",
}



#: Short names for config keys used as table columns (the long axis labels are too wide there).
SHORT = {"batch_size": "batch size", "dataset.label_noise": "label noise", "optim.lr": "base lr",
         "lr": "lr", "norm.groups": "groups"}


@functools.cache
def paper_labels() -> dict[str, str]:
    """The labels papers use, from each norm's YAML ``label`` (``GN``), and the norms they stand for."""
    from omegaconf import OmegaConf

    from normbench.config.catalog import CONFIG_DIR, option_files

    configs = {name: OmegaConf.load(path) for name, path in option_files("norm", [CONFIG_DIR]).items()}
    return {str(cfg.label): name for name, cfg in configs.items() if cfg.get("label")}


def base_norm(label: str) -> str:
    """The norm a legend label stands for: ``GN (groups=8)`` -> ``group``, ``batch`` -> ``batch``; a
    norm keeps its colour, marker and place (BN first) whichever name its runs recorded."""
    head = str(label).split(" (", 1)[0]
    return paper_labels().get(head, head)


def norm_order(label: str) -> tuple[bool, str]:
    """The sort key of a norm's label in legends and tables: batch norm first (the reference the
    papers compare with), then the others alphabetically."""
    return base_norm(label) != "batch", str(label)


def short(key: str) -> str:
    """A config key as a table column head."""
    return SHORT.get(key, key)


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (the metric vocabulary, :mod:`normbench.metrics`)."""
    return not metrics.higher_is_better(metric)


def label(name: str) -> str:
    """The readable name of a metric or key (the name itself if there is none)."""
    return LABELS.get(name, name.replace("final_", "final ").replace("_", " "))


def axis_label(metric: str, direction: bool = True) -> str:
    """An axis label with the unit and, for metrics, which way is better."""
    text = label(metric)
    if metric.endswith(("_acc", "_error")) and "%" not in text:
        text += " (%)"
    if direction and metric not in LABELS_WITHOUT_DIRECTION:
        text += ", lower is better" if lower_is_better(metric) else ", higher is better"
    return text


#: Axes that are inputs (x axes), for which "better" makes no sense.
LABELS_WITHOUT_DIRECTION = {"step", "epoch", "samples_seen", "wall_time_s", "train_time_s",
                            "batch_size", "lr", "optim.lr", "dataset.label_noise"}


def is_percent(metric: str) -> bool:
    """Accuracies and errors are stored as fractions and shown in percent."""
    return metrics.is_percent(metric)


def resolve_metric(name: str, columns: Iterable[str]) -> str:
    """The run-table column a user means by ``name`` (``test_acc`` -> ``final_test_acc``).

    Raises ``KeyError`` with the known metric names if there is no such column.
    """
    columns = list(columns)
    for candidate in (name, f"final_{name}", name.replace("-", "_"),
                      f"final_{name.replace('-', '_')}"):
        if candidate in columns:
            return candidate
    known = sorted(c[len("final_"):] if c.startswith("final_") else c for c in columns
                   if c.startswith(("final_", "best_", "selected_")) or c in (
                       "generalization_gap", "steps_to_target", "time_to_target_s",
                       "samples_per_s", "wall_time_s", "train_time_s"))
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(known)}")
