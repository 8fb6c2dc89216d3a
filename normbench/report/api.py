"""``make_report``: run and sweep directories in, CSV tables, PNG/SVG plots and report.md out.

This is the one entry point the CLI (``normbench report``), ``python -m normbench.report`` and
the end-of-sweep Hydra callback share. It reads run directories only and never imports torch
or training code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from normbench.errors import ConfigError
from normbench.report import names, sections, tables
from normbench.report import plots as figures
from normbench.report import plots_generalization as generalization_figures
from normbench.report.load import RunSet, load_runs
from normbench.report.markdown import render
from normbench.report.stats import aggregate, batch_threshold

#: Plot names a user can ask for (``--plot``); ``convergence`` means both convergence plots.
PLOTS = ("convergence_steps", "convergence_time", "convergence_epochs", "convergence_samples", "batch_size",
         "generalization", "label_noise", "sweep")
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
    return f"final_test_{rs.primary_metric}"


def make_report(
    dirs: Sequence[Path | str] | Path | str,
    out_dir: Path | str,
    x: str | None = None,
    metric: str | None = None,
    plots: Sequence[str] | None = None,
    title: str | None = None,
    seed_lines: bool = False,
) -> Path:
    """Read the runs under ``dirs`` and write a report into ``out_dir``; returns report.md.

    Args:
        dirs: run and sweep directories (any mix; searched recursively).
        out_dir: where ``report.md``, ``runs.csv``, ``summary.csv``, ``differences.csv``,
            ``skipped.csv`` and ``plots/*.png|svg`` go (created if missing).
        x: a config key to plot ``metric`` against (``batch_size``, ``optim.lr``, ...).
        metric: the metric to compare on (``test_acc``, ``final_test_error``,
            ``val_acc``, ``selected_test_acc``, ``test_bpc``, ...); default final test accuracy (or bpc).
        plots: plot names to draw (see :data:`PLOTS`, or ``convergence``/``all``); default:
            chosen from what varies between the runs.
        title: the report's heading.
        seed_lines: the convergence plots also draw each seed's curve, thin.

    Raises:
        ReportError: a directory does not exist, no run was found, or a metric, key or plot
            name is unknown. A single unreadable run is never an error: it is listed.
    """
    return build_report(dirs, out_dir, x=x, metric=metric, plots=plots, title=title, seed_lines=seed_lines).path


def build_report(
    dirs: Sequence[Path | str] | Path | str,
    out_dir: Path | str,
    x: str | None = None,
    metric: str | None = None,
    plots: Sequence[str] | None = None,
    title: str | None = None,
    seed_lines: bool = False,
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

    _draw(report, chosen, plot_dir, colors, x, metric if user_metric else None, metric, seed_lines)
    keys = tables.setting_columns(rs)
    diffs = _write_tables(rs, out_dir, metric, keys)
    # The batch-size finding is stated in the batch-size plot's metric (error by default).
    thresh_metric = metric
    if not user_metric and rs.primary_metric == "acc":
        thresh_metric = "final_test_error"
    thresholds = batch_threshold(rs.runs, thresh_metric,
                                 higher_is_better=not names.lower_is_better(thresh_metric), by=keys)
    figs = report.figures
    parts = [sections.overview(rs, dirs, metric), sections.summary(rs), sections.convergence(rs, figs, out_dir),
             sections.batch_size(rs, figs, out_dir, thresholds, thresh_metric),
             sections.generalization(figs, out_dir), sections.sweep(figs, out_dir, metric, x),
             sections.differences(diffs, metric), *sections.leftovers(rs, report.notes)]
    report.path.write_text(render(title or "normbench report", parts), encoding="utf-8")
    return report


def _convergence(axis: str):
    """The convergence figure against ``axis`` (see :data:`~normbench.report.plots.CONVERGENCE_AXES`)."""
    return lambda rs, d, c, x, user, m, seeds: figures.plot_convergence(rs, d, c, xaxis=axis, seed_lines=seeds)


# Each figure a report can draw: (runs, plot dir, colours, x key, the user's metric, the metric,
# seed lines) -> paths.
_FIGURES = {
    **{name: _convergence(axis) for axis, (name, _) in figures.CONVERGENCE_AXES.items()},
    "convergence_time": lambda rs, d, c, x, user, m, seeds: figures.plot_convergence(
        rs, d, c, xaxis="wall_time_s" if "wall_time_s" in rs.curves else "train_time_s", seed_lines=seeds),
    # GN Fig. 1 plots error; a metric the user named replaces it.
    "batch_size": lambda rs, d, c, x, user, m, seeds: figures.plot_batch_size(rs, d, c, metric=user),
    "generalization": lambda rs, d, c, x, user, m, seeds: generalization_figures.plot_generalization(rs, d, c),
    "label_noise": lambda rs, d, c, x, user, m, seeds: generalization_figures.plot_label_noise(rs, d, c),
    "sweep": lambda rs, d, c, x, user, m, seeds: figures.plot_sweep(rs, d, c, x, m),
}


def _draw(report: Report, chosen, plot_dir: Path, colors, x, user_metric, metric, seed_lines=False) -> None:
    for name in chosen:
        paths = _FIGURES[name](report.runs, plot_dir, colors, x, user_metric, metric, seed_lines)
        if paths:
            report.figures[name] = paths
        else:
            report.notes.append(f"plot {name!r} not drawn: the runs lack the data for it")


def _write_tables(rs: RunSet, out_dir: Path, metric: str, keys: list[str]) -> pd.DataFrame:
    """summary.csv, runs.csv, differences.csv and skipped.csv; returns the difference table."""
    # Time to target is censored (runs that never reach it count): see tables.target_table,
    # not a mean over the runs that got there.
    numeric = [c for c in rs.runs.columns if c.startswith(("final_", "best_", "selected_")) or c in (
        "generalization_gap", "wall_time_s", "train_time_s", "samples_per_s")]
    tables.write_csv(aggregate(rs.runs, numeric, [*keys, "label"]), out_dir / "summary.csv")
    tables.write_csv(rs.runs, out_dir / "runs.csv")
    diffs = tables.difference_table(rs, metric)
    tables.write_csv(diffs.attrs.get("raw", pd.DataFrame()), out_dir / "differences.csv")
    tables.write_csv(tables.skipped_table(rs), out_dir / "skipped.csv")
    return diffs


def plots_colors(rs: RunSet) -> dict[str, str]:
    """The report's colour for each norm label (fixed per norm, see :func:`figures.color_map`)."""
    return figures.color_map(rs.runs["label"].dropna().astype(str).tolist())
