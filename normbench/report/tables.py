"""The report's tables, as DataFrames of display strings shared by Markdown and the terminal.

Numbers are formatted once here so that ``report.md`` and the terminal summary agree to the
digit: accuracies and errors in percent, ``mean ± std [95% CI]`` for statistics over seeds, and
``n/N`` wherever runs of a setting did not all complete or reach the target.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from normbench.metrics import is_percent, metric_of
from normbench.metrics import metric as metric_spec
from normbench.report import names
from normbench.report.load import RunSet, per_example
from normbench.report.stats import aggregate, censored_median, compare

#: A metric name that formats as percent: differences of accuracies are percentage points.
_PERCENT = "_acc"


def fmt(value: float, metric: str = "", digits: int | None = None) -> str:
    """One number for display: percent for accuracies/errors, integers for step counts."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if names.is_percent(metric):
        return f"{value * 100:.{1 if digits is None else digits}f}"
    if metric in ("steps_to_target", "steps", "num_params", "samples_seen"):
        return f"{value:,.0f}"
    if metric in ("time_to_target_s", "wall_time_s", "train_time_s"):
        return f"{value:.1f}"
    if metric == "samples_per_s":
        return f"{value:,.0f}"
    if "gap" in metric and not names.is_percent(metric):
        return f"{value:.3f}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.{3 if digits is None else digits}f}"


def fmt_stat(row: pd.Series | dict, metric: str, scale_metric: str | None = None) -> str:
    """``mean ± std [lo, hi]`` from an :func:`aggregate` row (``[lo, hi]`` needs two seeds; an
    interval that ran past the metric's range, e.g. above 100% at 2 seeds, says it was clipped)."""
    scale_metric = scale_metric or metric
    mean = row.get(f"{metric}_mean")
    if mean is None or not np.isfinite(mean):
        return "–"
    text = fmt(mean, scale_metric)
    std = row.get(f"{metric}_std")
    if std is not None and np.isfinite(std):
        text += f" ± {fmt(std, scale_metric)}"
    lo, hi = row.get(f"{metric}_ci_lo"), row.get(f"{metric}_ci_hi")
    if lo is not None and np.isfinite(lo):
        flag = row.get(f"{metric}_clipped")
        clipped = " clipped to the range" if isinstance(flag, (bool, np.bool_)) and flag else ""
        text += f" [{fmt(lo, scale_metric)}, {fmt(hi, scale_metric)}{clipped}]"
    return text


def _head(metric: str) -> str:
    """A column head with the unit: ``test acc (%)``, ``test bpc``."""
    text = names.label(metric)
    if names.is_percent(metric):
        text += " (%)"
    return text


def setting_columns(rs: RunSet) -> list[str]:
    """Swept keys shown as table columns before the norm (batch size, label noise, ...)."""
    return [k for k in rs.swept_keys if k != "norm" and not k.startswith("norm.")]


def _sort(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if df.empty:
        return df
    order = df["label"].map(names.norm_order)
    df = df.assign(_norm_order=order)
    return df.sort_values([*keys, "_norm_order"], kind="stable").drop(columns="_norm_order")


def summary_table(rs: RunSet, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per setting: runs completed / total, and each metric as mean ± std [95% CI].

    The default metrics are the final test and train metric and the generalization gap.
    """
    if metrics is None:
        m = rs.primary_metric
        metrics = [f"final_test_{m}", f"final_train_{m}", "generalization_gap"]
    keys = setting_columns(rs)
    agg = aggregate(rs.runs, metrics, [*keys, "label"])
    if agg.empty:
        return pd.DataFrame()
    agg = _sort(agg, keys)
    rows = []
    for _, r in agg.iterrows():
        row = {names.short(k): format_key(r[k]) for k in keys}
        row["norm"] = r["label"]
        row["runs"] = _runs_cell(r)
        for m in metrics:
            if m == "generalization_gap":
                # A difference of accuracies: shown in percentage points.
                scale = _PERCENT if is_percent(rs.primary_metric) else m
                row[_gap_head(rs)] = fmt_stat(r, m, scale)
            else:
                row[_head(m)] = fmt_stat(r, m)
        rows.append(row)
    return pd.DataFrame(rows)


def _gap_head(rs: RunSet) -> str:
    spec = metric_spec(rs.primary_metric)
    order = "train − test" if spec.higher_is_better else "test − train"
    return f"gap, {order} ({'pp' if spec.percent else spec.name})"


def _runs_cell(r: pd.Series) -> str:
    """``3/3`` completed of all; failures and divergences named, so none goes unnoticed."""
    text = f"{r['completed']}/{r['runs']}"
    notes = [f"{r[s]} {s}" for s in ("failed", "diverged", "running") if r.get(s)]
    return text + (f" ({', '.join(notes)})" if notes else "")


def format_key(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def target_table(rs: RunSet) -> pd.DataFrame:
    """Time to the target accuracy per setting, censored: every finished run counts.

    A run that never reached the target (completed below it, or diverged) is not left out: it
    counts as infinitely slow, so the median is over all runs and reads "not reached" when
    fewer than half got there. ``reached`` gives the fraction; averaging only the runs that
    reached the target would reward a norm for losing its slow seeds.
    """
    runs = rs.runs
    if "steps_to_target" not in runs:
        return pd.DataFrame()
    keys = setting_columns(rs)
    finished = runs[runs["status"].isin(("completed", "diverged"))] if "status" in runs else runs
    cols = [m for m in ("steps_to_target", "time_to_target_s") if m in runs]
    target = runs["target_acc"].dropna().unique() if "target_acc" in runs else []
    rows = []
    for key, frame in finished.groupby([*keys, "label"], dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = {names.short(k): format_key(v) for k, v in zip(keys, key[:-1], strict=True)}
        row["norm"] = key[-1]
        steps = pd.to_numeric(frame["steps_to_target"], errors="coerce")
        reached = steps.notna().to_numpy()
        row["reached"] = f"{int(reached.sum())}/{len(frame)}"
        for m in cols:
            med = censored_median(pd.to_numeric(frame[m], errors="coerce").to_numpy(), reached)
            row[f"median {names.label(m)}"] = "not reached" if med == np.inf else fmt(med, m)
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    table.attrs["target"] = float(target[0]) if len(target) == 1 else None
    return table


def difference_table(rs: RunSet, metric: str, reference: str | None = None) -> pd.DataFrame:
    """Each norm minus the reference norm (batch norm if present) on the same setting.

    The interval is the 95% Welch t interval of the difference of means; ``excludes 0``
    marks those that exclude zero, and ``MDE`` is the smallest difference the seeds detect.
    Where every run of both norms recorded its test examples on one fixed test set, a second
    interval also counts the test set's sampling error (over test examples and seeds).
    """
    done = rs.runs[rs.runs["status"] == "completed"]
    labels = sorted(done["label"].dropna().unique(), key=names.norm_order)
    if len(labels) < 2 or metric not in done:
        return pd.DataFrame()
    reference = reference or labels[0]
    keys = setting_columns(rs)
    frames = [compare(done, metric, lab, reference, keys, examples=lambda f: per_example(f, metric))
              for lab in labels if lab != reference]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    diff = pd.concat(frames, ignore_index=True)
    scale = _PERCENT if names.is_percent(metric) or (
        metric == "generalization_gap" and rs.primary_metric == "acc") else metric
    rows = []
    for _, r in diff.sort_values([*keys, "a"], kind="stable").iterrows():
        row = {names.short(k): format_key(r[k]) for k in keys}
        row["comparison"] = f"{r['a']} − {r['b']}"
        row["seeds"] = f"{r['n_a']} vs {r['n_b']}"
        row["difference"] = fmt(r["diff"], scale)
        if np.isfinite(r["ci_lo"]):
            row["95% CI"] = f"[{fmt(r['ci_lo'], scale)}, {fmt(r['ci_hi'], scale)}]"
        else:
            row["95% CI"] = f"– ({r['n_a']} vs {r['n_b']} seeds: an interval needs 2 a side)"
        row["excludes 0"] = "yes" if r["significant"] else "no"
        if np.isfinite(r.get("ex_lo", np.nan)):
            row["95% CI over test examples and seeds"] = f"[{fmt(r['ex_lo'], scale)}, {fmt(r['ex_hi'], scale)}]"
        row["MDE"] = fmt(r["mde"], scale) if np.isfinite(r["mde"]) else "–"
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["raw"] = diff
    return table


def skipped_table(rs: RunSet) -> pd.DataFrame:
    """The directories that could not be read, with the reason."""
    return pd.DataFrame([{"directory": str(d), "reason": why} for d, why in rs.skipped])


#: Columns that hold paths: written relative to the CSV's directory.
PATH_COLUMNS = ("run_dir", "directory")


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as CSV at ``path``, as a person reads it and a script parses it: paths relative to
    the CSV's directory (no machine's absolute paths in a file that may be committed or shared),
    and counts as integers (a column of steps, seeds or batch sizes that holds a missing value
    would otherwise read 32.0)."""
    out = frame.copy()
    for col in PATH_COLUMNS:
        if col in out:
            out[col] = out[col].map(lambda d: os.path.relpath(Path(d).resolve(), Path(path).parent.resolve())
                                    if isinstance(d, str | Path) and str(d) else d)
    for col in out.columns:
        values = out[col]
        found = metric_of(str(col))
        if pd.api.types.is_float_dtype(values) and (found is None or found.name == "steps") and \
                values.dropna().map(float.is_integer).all() and values.notna().any():
            out[col] = values.astype("Int64")
    out.to_csv(path, index=False)


def incomplete_table(rs: RunSet) -> pd.DataFrame:
    """Every run that did not complete (failed, diverged, still running), with its error."""
    runs = rs.runs
    if runs.empty:
        return pd.DataFrame()
    bad = runs[runs["status"] != "completed"]
    rows = []
    for _, r in bad.iterrows():
        rows.append({"run": r["run_id"], "status": r["status"], "norm": r["label"],
                     "batch size": format_key(r["batch_size"]), "seed": format_key(r["seed"]),
                     "steps": fmt(r.get("steps", float("nan")), "steps"),
                     "error": " ".join(str(r.get("error") or "").split())[:160] or "–"})
    return pd.DataFrame(rows)


def run_index(rs: RunSet) -> pd.DataFrame:
    """One row per run directory found (``normbench runs``): its path, status, the config keys
    that differ between the runs (seed included), steps, the headline metrics (final test and
    validation score, the test score at the best validation step) and wall time; then every
    directory that could not be read, with why."""
    m = rs.primary_metric
    runs = rs.runs
    keys = [*rs.swept_keys, *(["seed"] if "seed" in runs and "seed" not in rs.swept_keys else [])]
    metrics = [c for c in ("steps", f"final_test_{m}", f"final_val_{m}", f"selected_test_{m}", "wall_time_s")
               if c in runs]
    index = runs[["run_dir", "status", *keys, *metrics]].rename(columns={"run_dir": "directory"}) \
        if not runs.empty else pd.DataFrame(columns=["directory", "status"])
    skipped = pd.DataFrame([{"directory": str(d), "status": f"unreadable: {why}"} for d, why in rs.skipped])
    return pd.concat([index, skipped], ignore_index=True) if len(skipped) else index.reset_index(drop=True)
