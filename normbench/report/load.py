"""Loading run directories into tidy tables.

The reporter sees the world only through run directories (``config.yaml``, ``metrics.jsonl``,
``summary.json``; see :mod:`normbench.records`), so that a report can be made on a laptop from a
cluster's outputs. This module turns any mix of run and sweep directories into

- ``runs``: one row per run, with the config values that identify the run's setting (dataset,
  model, norm, batch size, learning rate, seed and every other key that varies between the runs)
  and the summary's metrics;
- ``curves``: one row per evaluation of every run (the ``metrics.jsonl`` records), keyed by
  ``run_id``;
- ``skipped``: the directories that could not be read, each with the reason.

A broken run never stops a report: it is listed in ``skipped`` (unreadable) or kept with its
``status`` (failed, diverged, still running) so that it is counted and shown, never silently
dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from normbench.config.identity import nuisance_keys
from normbench.metrics import PRIMARY, primary_of
from normbench.records import (
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    find_run_dirs,
    read_config,
    read_examples,
    read_metrics,
    read_summary,
)

#: Columns every run row has, in this order, before the swept keys and the metrics.
ID_COLUMNS = ("run_id", "status", "dataset", "model", "norm", "batch_size", "lr", "seed")

#: Config keys that may differ between runs of one comparison (a CPU laptop and a GPU node)
#: without making them different settings: the keys that do not change what a run computes
#: (:func:`normbench.config.identity.nuisance_keys`), and those that only change how it is measured
#: (where steps_to_target counts, how often it evaluates, deterministic kernels).
NUISANCE_KEYS = (*nuisance_keys(), "trainer.target_acc", "trainer.target_bpc", "trainer.eval_every",
                 "trainer.deterministic", "dataset.download")
NUISANCE_PREFIXES = ("logger.", "hydra.")

#: Config groups whose ``<group>.name`` is the run's identity; their other keys only count as
#: varying between runs that share the name (``norm.groups`` exists for group norm only).
NAMED_GROUPS = ("dataset", "model", "norm", "optim")

#: Summary keys that are copied into the run row under their own name.
SUMMARY_SCALARS = (
    "steps",
    "epochs",
    "samples_seen",
    "best_val_acc",
    "best_val_bpc",
    "selected_step",
    "selected_test_acc",
    "selected_test_bpc",
    "steps_to_target",
    "time_to_target_s",
    "target_acc",
    "generalization_gap",
    "wall_time_s",
    "train_time_s",
    "samples_per_s",
    "num_params",
    "values_per_batch_statistic",
    "sequence_length",
)


@dataclass
class RunSet:
    """Everything the reporter knows about a set of runs.

    Attributes:
        runs: one row per run (see the module docstring); ``run_id`` is the run directory's path
            relative to the common root of the inputs, ``run_dir`` its absolute path.
        curves: the metrics records of every run, long format, with ``run_id`` and ``label``.
        skipped: ``(directory, reason)`` for every directory that could not be read.
        setting_keys: the columns that tell settings apart (without ``seed``): runs with equal
            values in all of them differ only in seed and are aggregated together.
        primary_metric: ``"acc"`` or ``"bpc"`` (language models; lower is better).
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    setting_keys: list[str] = field(default_factory=list)
    primary_metric: str = "acc"

    @property
    def swept_keys(self) -> list[str]:
        """The setting keys that take more than one value, in column order."""
        return [k for k in self.setting_keys if self.runs[k].nunique(dropna=False) > 1]


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys: ``{"norm": {"groups": 32}}`` -> ``{"norm.groups": 32}``.

    Lists stay values (turned into strings later for comparison).
    """
    out: dict[str, Any] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                out.update(flatten(value, name))
            else:
                out[name] = value
    elif prefix:
        out[prefix] = config
    return out


def _hashable(value: Any) -> Any:
    """A value that can be compared and grouped (lists and dicts become their JSON text)."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _is_nuisance(key: str) -> bool:
    return key in NUISANCE_KEYS or key.startswith(NUISANCE_PREFIXES)


def varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted config keys whose value differs between runs, in first-seen order.

    A key inside a named group (``norm.groups``) counts as varying only if it differs between
    runs with the same ``<group>.name``: group norm's ``groups`` is not a swept key just because
    batch-norm runs have no such key. Top-level keys vary if they take more than one value.
    """
    order: list[str] = []
    for cfg in configs:
        for key in cfg:
            if key not in order:
                order.append(key)
    missing = object()
    result = []
    for key in order:
        if _is_nuisance(key):
            continue
        group = key.split(".", 1)[0] if "." in key else None
        if group in NAMED_GROUPS and key != f"{group}.name":
            by_name: dict[Any, set] = {}
            for cfg in configs:
                if not any(k.startswith(group + ".") for k in cfg):
                    continue
                name = _hashable(cfg.get(f"{group}.name"))
                by_name.setdefault(name, set()).add(_hashable(cfg.get(key, missing)))
            if any(len(values) > 1 for values in by_name.values()):
                result.append(key)
        else:
            values = {_hashable(cfg.get(key, missing)) for cfg in configs}
            if len(values) > 1:
                result.append(key)
    return result


def _number(value: Any) -> float:
    """A float, or NaN for None, non-numbers and non-finite values (the record writes null)."""
    if isinstance(value, bool) or value is None:
        return float("nan")
    try:
        x = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return x if math.isfinite(x) else float("nan")


def discover(dirs: Iterable[Path]) -> list[Path]:
    """Every run directory at or below ``dirs``, each once, sorted.

    Uses :func:`normbench.records.find_run_dirs` (which finds runs by their ``config.yaml``)
    and adds directories that hold only a ``summary.json``, so that a run whose config was lost
    is still reported rather than ignored.
    """
    found: set[Path] = set()
    roots = [Path(d) for d in dirs]
    for run_dir in find_run_dirs(roots):
        found.add(run_dir.resolve())
    for root in roots:
        if root.is_dir():
            for path in root.rglob(SUMMARY_FILE):
                if ".hydra" not in path.parts:
                    found.add(path.parent.resolve())
    return sorted(found)


def _common_root(paths: list[Path]) -> Path | None:
    if not paths:
        return None
    parents = [p.parent for p in paths]
    common = Path(*Path(parents[0]).parts)
    for p in parents[1:]:
        while common != common.parent and not p.is_relative_to(common):
            common = common.parent
    return common


def _metric_family(summary: dict, metrics: list[dict]) -> str:
    """The run's own metric: as its summary says, else as its records show (the vocabulary's)."""
    if summary.get("primary_metric") in PRIMARY:
        return summary["primary_metric"]
    return primary_of({**(summary.get("final") or {}), **(metrics[0] if metrics else {})})


def batch_dependent(cfg: dict) -> bool | None:
    """Whether the run's norm makes one sample's output depend on its batch (None: unknown; a
    record of an earlier version is upgraded on reading: :func:`normbench.records.upgrade`)."""
    recorded = cfg.get("norm.batch_dependent")
    return recorded if isinstance(recorded, bool) else None


def _run_row(run_id: str, run_dir: Path, cfg: dict, summary: dict) -> dict[str, Any]:
    """The identity columns and summary metrics of one run."""
    optim_lr = cfg.get("optim.lr")
    row: dict[str, Any] = {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "status": summary.get("status") or "unknown",
        "dataset": summary.get("dataset", cfg.get("dataset.name")),
        "model": summary.get("model", cfg.get("model.name")),
        "norm": summary.get("norm", cfg.get("norm.name")),
        "batch_size": summary.get("batch_size", cfg.get("batch_size")),
        # The effective learning rate (after batch-size scaling) is what the optimizer used.
        "lr": _number(summary.get("lr", optim_lr)),
        "seed": summary.get("seed", cfg.get("seed")),
        "primary_metric": summary.get("primary_metric"),
        "error": summary.get("error"),
        "eval_statistics": summary.get("eval_statistics"),  # running, exact, or None
        "batch_dependent": batch_dependent(cfg),
        "norm_label": cfg.get("norm.label"),  # as papers write it (BN, GN, ...); runs before it: the name
    }
    final = summary.get("final") or {}
    if isinstance(final, dict):
        for key, value in final.items():
            if not isinstance(value, (dict, list, str)):
                row[f"final_{key}"] = _number(value)
    for key in SUMMARY_SCALARS:
        if key in summary:
            row[key] = _number(summary[key])
    # Later issues add keys (per-question-type accuracies, ...): keep every other numeric one.
    for key, value in summary.items():
        if key in row or key in SUMMARY_SCALARS or key == "final":
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = _number(value)
    return row


def load_runs(dirs: Iterable[Path | str]) -> RunSet:
    """Read every run below ``dirs`` (run or sweep directories, searched recursively).

    Raises ``FileNotFoundError`` if one of ``dirs`` does not exist; every problem with a single
    run (missing or corrupt ``summary.json``, unreadable ``config.yaml``) is recorded in
    ``RunSet.skipped`` instead.
    """
    dirs = [Path(d) for d in dirs]
    for d in dirs:
        if not d.exists():
            raise FileNotFoundError(f"no such directory: {d}")
    run_dirs = discover(dirs)
    root = _common_root(run_dirs)

    rows: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    curve_frames: list[pd.DataFrame] = []
    skipped: list[tuple[Path, str]] = []
    families: list[str] = []
    for run_dir in run_dirs:
        read = _read_run(run_dir)
        if isinstance(read, str):
            skipped.append((run_dir, read))
            continue
        summary, cfg, metrics = read
        run_id = str(run_dir.relative_to(root)) if root and run_dir != root else run_dir.name
        rows.append(_run_row(run_id, run_dir, cfg, summary))
        families.append(_metric_family(summary, metrics))
        configs.append(cfg)
        if metrics:
            frame = pd.DataFrame.from_records(metrics)
            frame.insert(0, "run_id", run_id)
            curve_frames.append(frame)
    runs, setting_keys = _run_table(rows, configs)
    curves = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame(
        columns=["run_id", "step"])
    for col in curves.columns:
        if col != "run_id":
            curves[col] = pd.to_numeric(curves[col], errors="coerce")
    if not runs.empty:
        curves = curves.merge(runs[["run_id", "label"]], on="run_id", how="left")

    family = max(set(families), key=families.count) if families else "acc"
    return RunSet(runs=runs, curves=curves, skipped=skipped, setting_keys=setting_keys,
                  primary_metric=family)


def _read_run(run_dir: Path) -> tuple[dict, dict, list[dict]] | str:
    """A run's summary, flattened config and metrics; or why the run is skipped."""
    try:
        summary = read_summary(run_dir)
    except FileNotFoundError:
        return f"no {SUMMARY_FILE}"
    except (ValueError, UnicodeDecodeError) as exc:
        return f"corrupt {SUMMARY_FILE}: {_one_line(exc)}"
    try:
        cfg = flatten(read_config(run_dir))
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as exc:
        return f"corrupt {CONFIG_FILE}: {_one_line(exc)}"
    if summary.get("status") != "completed":
        return summary, cfg, read_metrics(run_dir)
    try:  # a completed run's history must be whole: its curves and medians are read from it
        history = read_metrics(run_dir, strict=True)
    except ValueError as exc:
        return f"damaged {METRICS_FILE}: {_one_line(exc)}"
    if not history or history[-1].get("step") != summary.get("steps"):
        last = history[-1].get("step") if history else None
        return (f"damaged {METRICS_FILE}: its last evaluation is at step {last}, and the completed run's summary "
                f"says {summary.get('steps')} steps (truncated or edited)")
    return summary, cfg, history


def _run_table(rows: list[dict], configs: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """One row per run with the swept keys as columns and a label each; and the setting keys."""
    swept = varying_keys(configs)
    # Keys the identity columns already carry under a short name.
    aliases = {"dataset.name": "dataset", "model.name": "model", "norm.name": "norm",
               "batch_size": "batch_size", "seed": "seed"}
    extra = [k for k in swept if k not in aliases]
    for row, cfg in zip(rows, configs, strict=True):
        for key in extra:
            value = cfg.get(key)
            row[key] = _hashable(value) if isinstance(value, (list, dict)) else value

    runs = pd.DataFrame.from_records(rows)
    if runs.empty:
        runs = pd.DataFrame(columns=[*ID_COLUMNS, "run_dir", "label"])
    else:
        ordered = [*ID_COLUMNS, *extra]
        rest = [c for c in runs.columns if c not in ordered]
        runs = runs[ordered + rest]
    runs = _add_derived(runs)

    # Settings are told apart by the identity columns and every swept key; the learning rate
    # is listed but derived (scaled with batch size), so optim.* keys carry it when swept.
    setting_keys = ["dataset", "model", "norm", "batch_size", *extra]
    norm_params = [k for k in extra if k.startswith("norm.")]
    runs["label"] = [_label(r, norm_params) for r in runs.to_dict("records")]
    return runs, setting_keys


def _add_derived(runs: pd.DataFrame) -> pd.DataFrame:
    """Errors (1 − accuracy), the form the GN paper plots, next to every accuracy column."""
    for col in list(runs.columns):
        if col.endswith("_acc") and not col.startswith("target"):
            err = col[: -len("_acc")] + "_error"
            if err not in runs.columns:
                runs[err] = 1.0 - pd.to_numeric(runs[col], errors="coerce")
    return runs


def _label(row: dict, norm_params: list[str]) -> str:
    """The name a norm goes by in legends: its ``norm.label`` (``GN``; else its name), with
    ``(groups=8)`` when group counts were swept."""
    name = row["norm_label"] if isinstance(row.get("norm_label"), str) else str(row.get("norm"))
    parts = []
    for key in norm_params:
        value = row.get(key)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        parts.append(f"{key.split('.', 1)[1]}={value}")
    return f"{name} ({', '.join(parts)})" if parts else name


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


#: The run-table columns whose per-example form a run records, and how from its ``correct``.
_PER_EXAMPLE = {"final_test_acc": lambda correct: correct.astype(float),
                "final_test_error": lambda correct: 1.0 - correct.astype(float)}


def per_example(runs: pd.DataFrame, metric: str) -> list[np.ndarray] | None:
    """Each completed run's per-example ``metric`` (``final_test_acc`` or ``final_test_error``)
    from its verified ``test_examples.npz``, or None unless every completed run has one, all on
    test sets of one size, and none drew its own data (``dataset.draw=seed``: each seed has its
    own test set, and the seeds' Welch interval already holds the data's variance)."""
    if metric not in _PER_EXAMPLE or not len(runs) or "run_dir" not in runs:
        return None
    done = runs[runs["status"] == "completed"]
    out = []
    for run_dir, steps in zip(done["run_dir"], done["steps"], strict=True):
        try:
            drawn = flatten(read_config(Path(run_dir))).get("dataset.draw") == "seed"
        except Exception:  # no readable config: no claim on its test set
            return None
        found = None if drawn else read_examples(Path(run_dir), int(steps))
        if found is None or "correct" not in found:
            return None
        out.append(_PER_EXAMPLE[metric](found["correct"]))
    return out if out and len({len(x) for x in out}) == 1 else None

