"""``make_report``: run and sweep directories in, CSV tables, PNG/SVG plots and report.md out.

This is the one entry point the CLI (``normbench report``), ``python -m normbench.report`` and
the end-of-sweep Hydra callback share. It reads run directories only and never imports torch
or training code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from normbench.errors import ConfigError
from normbench.report import names, tables
from normbench.report import plots as figures
from normbench.report.load import RunSet, load_runs
from normbench.report.markdown import Section, render
from normbench.report.stats import aggregate, batch_threshold

#: Plot names a user can ask for (``--plot``); ``convergence`` means both convergence plots.
PLOTS = ("convergence_steps", "convergence_time", "batch_size", "generalization",
         "label_noise", "sweep")
PLOT_ALIASES = {"convergence": ("convergence_steps", "convergence_time"),
                "batch": ("batch_size",), "noise": ("label_noise",),
                "all": ("convergence_steps", "convergence_time", "batch_size",
                        "generalization", "label_noise")}


class ReportError(ConfigError):
    """A report cannot be made as asked (no such directory, no runs, unknown metric or plot)."""


@dataclass
class Report:
    """What :func:`make_report` wrote, for callers that want more than the path."""

    path: Path
    runs: RunSet
    figures: dict[str, list[Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def resolve_plots(requested: Iterable[str] | None) -> list[str] | None:
    """Expand aliases and check names; ``None`` means choose from the data."""
    if requested is None:
        return None
    out: list[str] = []
    for name in requested:
        for n in PLOT_ALIASES.get(name, (name,)):
            if n not in PLOTS:
                known = ", ".join([*PLOTS, *PLOT_ALIASES])
                raise ReportError(f"unknown plot {name!r}; known: {known}")
            if n not in out:
                out.append(n)
    return out


def resolve_x(x: str, rs: RunSet) -> str:
    """The run-table column for ``--x``: exact, or the unique swept key ending in ``.x``."""
    cols = list(rs.runs.columns)
    if x in cols:
        return x
    matches = [c for c in cols if c.endswith("." + x)]
    if len(matches) == 1:
        return matches[0]
    swept = ", ".join(rs.swept_keys) or "none"
    raise ReportError(f"--x {x!r} is not a config key of these runs; swept keys: {swept}")


def choose_plots(rs: RunSet, x: str | None) -> list[str]:
    """The plots the data supports: convergence if there are curves, batch size if it was
    swept, generalization always, label noise if swept, and ``metric`` against ``--x``."""
    chosen = []
    done = rs.runs[rs.runs["status"] == "completed"]
    if not rs.curves.empty and not done.empty:
        chosen += ["convergence_steps"]
        if "wall_time_s" in rs.curves or "train_time_s" in rs.curves:
            chosen += ["convergence_time"]
    if "batch_size" in done and done["batch_size"].nunique() > 1:
        chosen.append("batch_size")
    chosen.append("generalization")
    if "dataset.label_noise" in done and done["dataset.label_noise"].nunique() > 1:
        chosen.append("label_noise")
    if x is not None and x != "batch_size":
        chosen.append("sweep")
    return chosen


def default_metric(rs: RunSet) -> str:
    """The headline metric: final test accuracy, or test bits per character for LMs."""
    return "final_test_bpc" if rs.primary_metric == "bpc" else "final_test_acc"


def make_report(
    dirs: Sequence[Path | str] | Path | str,
    out_dir: Path | str,
    x: str | None = None,
    metric: str | None = None,
    plots: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Read the runs under ``dirs`` and write a report into ``out_dir``; returns report.md.

    Args:
        dirs: run and sweep directories (any mix; searched recursively).
        out_dir: where ``report.md``, ``runs.csv``, ``summary.csv``, ``differences.csv``,
            ``skipped.csv`` and ``plots/*.png|svg`` go (created if missing).
        x: a config key to plot ``metric`` against (``batch_size``, ``optim.lr``, ...).
        metric: the metric to compare on (``test_acc``, ``final_test_error``,
            ``best_test_acc``, ``test_bpc``, ...); default final test accuracy (or bpc).
        plots: plot names to draw (see :data:`PLOTS`, or ``convergence``/``all``); default:
            chosen from what varies between the runs.
        title: the report's heading.

    Raises:
        ReportError: a directory does not exist, no run was found, or a metric, key or plot
            name is unknown. A single unreadable run is never an error: it is listed.
    """
    return build_report(dirs, out_dir, x=x, metric=metric, plots=plots, title=title).path


def _portable(runs: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """``runs`` with run directories relative to the report directory (no machine's absolute
    paths in a CSV that may be committed or shared)."""
    if "run_dir" not in runs:
        return runs
    rel = runs["run_dir"].map(lambda d: os.path.relpath(Path(d).resolve(), Path(out_dir).resolve())
                              if isinstance(d, str | Path) else d)
    return runs.assign(run_dir=rel)


def build_report(
    dirs: Sequence[Path | str] | Path | str,
    out_dir: Path | str,
    x: str | None = None,
    metric: str | None = None,
    plots: Sequence[str] | None = None,
    title: str | None = None,
) -> Report:
    """:func:`make_report`, returning the loaded runs and the figures as well."""
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise ReportError("no directory given; pass run or sweep directories")
    for d in dirs:
        if not d.is_dir():
            raise ReportError(f"no such directory: {d}")
    requested = resolve_plots(plots)
    rs = load_runs(dirs)
    if rs.runs.empty:
        detail = f" ({len(rs.skipped)} unreadable: {rs.skipped[0][1]}, ...)" if rs.skipped else ""
        raise ReportError(
            f"no runs found under {', '.join(map(str, dirs))}{detail}; a run directory holds "
            "summary.json and config.yaml")
    user_metric = metric is not None
    try:
        metric = names.resolve_metric(metric, rs.runs.columns) if metric else default_metric(rs)
    except KeyError as exc:
        raise ReportError(exc.args[0]) from None
    if x is not None:
        x = resolve_x(x, rs)
    chosen = requested if requested is not None else choose_plots(rs, x)
    if "sweep" in chosen and x is None:
        raise ReportError("the 'sweep' plot needs --x KEY (the config key on the x axis)")

    out_dir = Path(out_dir)
    plot_dir = out_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(path=out_dir / "report.md", runs=rs)
    colors = plots_colors(rs)
    higher = not names.lower_is_better(metric)

    # Figures --------------------------------------------------------------------------
    for name in chosen:
        paths: list[Path] = []
        if name == "convergence_steps":
            paths = figures.plot_convergence(rs, plot_dir, colors, xaxis="step")
        elif name == "convergence_time":
            tx = "wall_time_s" if "wall_time_s" in rs.curves else "train_time_s"
            paths = figures.plot_convergence(rs, plot_dir, colors, xaxis=tx)
        elif name == "batch_size":
            # GN Fig. 1 plots error; a metric the user named replaces it.
            paths = figures.plot_batch_size(rs, plot_dir, colors,
                                          metric=metric if user_metric else None)
        elif name == "generalization":
            paths = figures.plot_generalization(rs, plot_dir, colors)
        elif name == "label_noise":
            paths = figures.plot_label_noise(rs, plot_dir, colors)
        elif name == "sweep":
            paths = figures.plot_sweep(rs, plot_dir, colors, x, metric)
        if paths:
            report.figures[name] = paths
        else:
            report.notes.append(f"plot {name!r} not drawn: the runs lack the data for it")

    # Tables ----------------------------------------------------------------------------
    keys = tables.setting_columns(rs)
    # Time to target is censored (runs that never reach it count): see tables.target_table,
    # not a mean over the runs that got there.
    numeric = [c for c in rs.runs.columns if c.startswith(("final_", "best_")) or c in (
        "generalization_gap", "wall_time_s", "train_time_s", "samples_per_s")]
    summary_stats = aggregate(rs.runs, numeric, [*keys, "label"])
    summary_stats.to_csv(out_dir / "summary.csv", index=False)
    _portable(rs.runs, out_dir).to_csv(out_dir / "runs.csv", index=False)
    diffs = tables.difference_table(rs, metric)
    raw_diffs = diffs.attrs.get("raw", pd.DataFrame())
    raw_diffs.to_csv(out_dir / "differences.csv", index=False)
    tables.skipped_table(rs).to_csv(out_dir / "skipped.csv", index=False)

    # The batch-size finding is stated in the batch-size plot's metric (error by default).
    thresh_metric = metric
    if not user_metric and rs.primary_metric == "acc":
        thresh_metric = "final_test_error"
    thresholds = batch_threshold(rs.runs, thresh_metric,
                                 higher_is_better=not names.lower_is_better(thresh_metric),
                                 by=keys)

    sections = _sections(rs, report, dirs, out_dir, metric, higher, diffs, thresholds,
                         thresh_metric, x)
    text = render(title or "normbench report", sections)
    report.path.write_text(text, encoding="utf-8")
    return report


def plots_colors(rs: RunSet) -> dict[str, str]:
    """The report's colour for each norm label (fixed per norm, see :func:`figures.color_map`)."""
    return figures.color_map(rs.runs["label"].dropna().astype(str).tolist())


def _sorted_values(values) -> list:
    """Numbers in numeric order (2, 4, 16, not 16, 2, 4), anything else as text."""
    try:
        return sorted(values, key=float)
    except (TypeError, ValueError):
        return sorted(values, key=str)


def _sections(rs, report, dirs, out_dir, metric, higher, diffs, thresholds, thresh_metric, x):
    """The report's sections, in order; empty ones are dropped by :func:`render`."""
    runs = rs.runs
    counts = runs["status"].value_counts()
    status_text = ", ".join(f"{int(counts.get(s, 0))} {s}" for s in
                            ("completed", "failed", "diverged", "running") if counts.get(s, 0))
    others = [s for s in counts.index if s not in ("completed", "failed", "diverged", "running")]
    status_text += "".join(f", {int(counts[s])} {s}" for s in others)
    overview = Section("Overview")
    overview.text(
        f"**{len(runs)} run{'s' if len(runs) != 1 else ''}** ({status_text}) read from "
        + ", ".join(f"`{d}`" for d in dirs)
        + (f"; **{len(rs.skipped)} "
           f"{'directory' if len(rs.skipped) == 1 else 'directories'} skipped** "
           "(unreadable, listed below)."
           if rs.skipped else "; no directory skipped."))
    ident = []
    for col in ("dataset", "model", "norm", "batch_size", "lr", "seed"):
        vals = runs[col].dropna().unique()
        shown = ", ".join(tables._fmt_key(v) for v in _sorted_values(vals)[:12])
        ident.append(f"- {col}: {shown}{' …' if len(vals) > 12 else ''}")
    swept = rs.swept_keys
    overview.text("\n".join(ident))
    overview.text("Varying between settings: " + (", ".join(f"`{k}`" for k in swept) or
                                                   "nothing (repeats of one setting)")
                  + ". Runs that differ only in `seed` are aggregated: mean ± standard "
                  "deviation [95% Student-t interval of the mean]; the interval needs at least two "
                  "seeds. Differences use Welch's t interval, which keeps its 5% false-significance "
                  "rate at 3 to 5 seeds where a percentile bootstrap does not (see "
                  "normbench/report/stats.py).")
    direction = "lower is better" if not higher else "higher is better"
    overview.text(f"Headline metric: **{names.label(metric)}** ({direction}). Accuracies and "
                  "errors are in percent; statistics use completed runs only.")
    if rs.primary_metric == "bpc":
        overview.text("These are language-model runs: bits per character, **lower is better**.")

    summary = Section("Summary over seeds")
    summary.table(tables.summary_table(rs))

    figs = report.figures
    conv = Section("1. Convergence speed")
    for name, alt in (("convergence_steps", "Convergence against steps"),
                      ("convergence_time", "Convergence against wall-clock time")):
        if name in figs:
            conv.image(figs[name][0], out_dir, alt, figs[name][1])
    if figs.get("convergence_steps") or figs.get("convergence_time"):
        tt = tables.target_table(rs)
        if not tt.empty:
            target = tt.attrs.get("target")
            what = f"{target * 100:g}% test accuracy" if target else "the target accuracy"
            conv.table(tt, f"Steps and time to reach {what}: `reached` counts the finished runs "
                           "(completed or diverged) that got there; the median counts the others as "
                           "infinitely slow (\"not reached\" when fewer than half got there), so no "
                           "slow seed is dropped:")

    bsec = Section("2. Batch-size sensitivity")
    if "batch_size" in figs:
        bsec.image(figs["batch_size"][0], out_dir, "Test error against batch size",
                   figs["batch_size"][1])
    if thresholds and ("batch_size" in figs or runs["batch_size"].nunique() > 1):
        bsec.text(*(t.sentence(names.label(thresh_metric)) for t in thresholds))
        scale = "_acc" if names.is_percent(thresh_metric) else thresh_metric
        rows = []
        for t in thresholds:
            for i, bs in enumerate(t.batch_sizes):
                row = {f"{k}": tables._fmt_key(v) for k, v in t.setting.items()}
                lo, hi = t.ci_lo[i], t.ci_hi[i]
                row.update({
                    "batch size": bs, "best batch-independent": t.best_other[i],
                    "BN worse by": tables.fmt(t.diff[i], scale),
                    "95% CI": (f"[{tables.fmt(lo, scale)}, {tables.fmt(hi, scale)}]"
                               if lo == lo else "– (one seed)"),
                    "BN behind": "yes" if t.behind[i] else "no"})
                rows.append(row)
        independent = sorted(set(runs.loc[runs["batch_dependent"].eq(False), "norm"].dropna()))
        bsec.table(pd.DataFrame(rows), f"Batch norm minus the best batch-independent norm "
                                       f"({', '.join(independent)}) at each batch size, "
                                       f"{names.label(thresh_metric)}; positive = BN worse:")
    elif "batch_size" in figs:
        bsec.text("No batch-norm/batch-independent pair to compare at a common batch size.")

    gen = Section("3. Generalization")
    if "generalization" in figs:
        gen.image(figs["generalization"][0], out_dir, "Train against test",
                  figs["generalization"][1])
    if "label_noise" in figs:
        gen.image(figs["label_noise"][0], out_dir, "Accuracy against label noise",
                  figs["label_noise"][1])

    extra = Section(f"{names.label(metric).capitalize()} against {names.label(x or '')}")
    if "sweep" in figs:
        extra.image(figs["sweep"][0], out_dir, "Sweep", figs["sweep"][1])

    dsec = Section(f"Differences between norms: {names.label(metric)}")
    if not diffs.empty:
        dsec.text("Each norm minus the reference norm on the same setting; the interval is the "
                  "95% Welch t interval of the difference of means (the norms' seeds are independent "
                  "samples); 'MDE' is the smallest difference these seeds detect with 80% power" + ("; accuracies in percentage points."
                                              if names.is_percent(metric) else "."))
        dsec.table(diffs)

    bad = Section("Runs that did not complete")
    inc = tables.incomplete_table(rs)
    if not inc.empty:
        bad.text("Counted in the tables above (`runs` column) but left out of the statistics:")
        bad.table(inc)

    skip = Section("Skipped directories")
    if rs.skipped:
        skip.table(tables.skipped_table(rs))

    notes = Section("Notes")
    if report.notes:
        notes.text("\n".join(f"- {n}" for n in report.notes))

    files = Section("Files")
    files.text("- `runs.csv`: one row per run (config values that vary, summary metrics)\n"
               "- `summary.csv`: statistics over seeds per setting\n"
               "- `differences.csv`: norm differences with Welch t intervals\n"
               "- `skipped.csv`: unreadable directories\n"
               "- `plots/`: every figure as PNG and SVG")
    return [overview, summary, conv, bsec, gen, extra, dsec, bad, skip, notes, files]
