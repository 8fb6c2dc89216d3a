"""The report's figures: convergence, batch-size sensitivity, generalization, label noise.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly, without pyplot, so the
reporter never switches the backend of a notebook that imports it and needs no display (the Agg
renderer writes the PNG, the SVG and PDF renderers the others). Every figure is written as PNG (for
``report.md``), SVG and PDF (for papers), with a title, axis labels with units and a legend. A norm
has the same colour in every figure of a report; bands and error bars are 95% Student-t
intervals over seeds (none with one seed).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from normbench.report import names
from normbench.report.load import RunSet
from normbench.report.stats import aggregate, curve_band

#: Fixed colours for the known norms (colour-blind-safe Okabe-Ito order), so that batch norm is
#: the same blue in every report; other labels take the remaining colours in sorted order.
NORM_COLORS = {
    "batch": "#0072B2",
    "group": "#D55E00",
    "layer": "#009E73",
    "instance": "#CC79A7",
    "weight": "#E69F00",
    "none": "#555555",
}
_SPARE = ["#56B4E9", "#F0E442", "#882255", "#44AA99", "#999933", "#AA4499", "#332288",
          "#117733", "#88CCEE", "#DDCC77"]
MARKERS = {"batch": "o", "group": "s", "layer": "^", "instance": "D", "weight": "v", "none": "x"}
_base = names.base_norm

DPI = 200
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "svg.fonttype": "none",  # text stays text in the SVG, editable in a paper's figure
}


def styled(func):
    """Run a plotting function inside the report's rc style, leaving global rcParams alone."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import matplotlib as mpl

        with mpl.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def color_map(labels: Sequence[str]) -> dict[str, str]:
    """One colour per norm label: fixed for a plain known norm, then spare colours in order.

    A variant of a known norm (``group (groups=8)``) takes the known colour if it is the only
    variant of that norm, so a sweep over one group count still shows group norm in orange.
    """
    labels = sorted(set(map(str, labels)))
    base = {lab: _base(lab) for lab in labels}
    counts: dict[str, int] = {}
    for b in base.values():
        counts[b] = counts.get(b, 0) + 1
    out: dict[str, str] = {}
    spare = iter(_SPARE * 4)
    for lab in labels:
        b = base[lab]
        if b in NORM_COLORS and (lab == b or counts[b] == 1):
            out[lab] = NORM_COLORS[b]
    for lab in labels:
        if lab not in out:
            out[lab] = next(spare)
    return out


def marker_for(label: str) -> str:
    return MARKERS.get(_base(label), "o")


def label_order(labels: Sequence[str]) -> list[str]:
    """Batch norm first (the reference), then the other norms alphabetically."""
    return sorted(set(map(str, labels)), key=names.norm_order)


def new_figure(ncols: int, nrows: int, width: float = 3.4, height: float = 2.7,
                sharey: bool | str = False) -> Figure:
    # A single panel still gets room for a two-line title and a legend row.
    fig = Figure(figsize=(max(width * ncols, 5.0), height * nrows + 0.9), dpi=DPI,
                 layout="constrained")
    fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig


def figure_title(fig: Figure, main: str, detail: str | None = None) -> None:
    """A figure title; the method details (what the bands are) go on a second line."""
    fig.suptitle(main if not detail else f"{main}\n{detail}", fontsize=9.5)


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` (for report.md), ``name.svg`` and ``name.pdf`` (for a paper) into
    ``out_dir``; returns the three paths in that order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg", out_dir / f"{name}.pdf"]
    # No dates and no software stamps: a report's figures are byte-identical between runs.
    fig.savefig(paths[0], dpi=DPI, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"Date": None})
    fig.savefig(paths[2], metadata={"CreationDate": None, "Producer": None, "Creator": None})
    return paths


def _scale(metric: str) -> float:
    return 100.0 if names.is_percent(metric) else 1.0


def facet_grid(rs: RunSet, exclude: Sequence[str]) -> list[str]:
    """Swept keys other than the norm (the lines) and ``exclude`` (the x axis): one panel each."""
    return [k for k in rs.swept_keys
            if k not in exclude and k != "norm" and not k.startswith("norm.")]


def facet_title(keys: Sequence[str], values: Sequence) -> str:
    """A panel's title: its setting of the facet keys, wrapped to the panel's width. A key the
    panel's runs do not set (a report over unrelated sweeps) is left out, not shown as nan."""
    import textwrap

    parts = []
    for k, v in zip(keys, values, strict=True):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        short = {"batch_size": "batch", "dataset.label_noise": "label noise"}.get(k, k)
        parts.append(f"{short} {v}" if k == "batch_size" else f"{short}={v}")
    return "\n".join(textwrap.wrap(", ".join(parts), 34)) if parts else "(defaults)"


def facet_groups(runs: pd.DataFrame, keys: list[str]):
    if not keys:
        yield (), runs
        return
    for key, frame in runs.groupby(keys, sort=True, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), frame


def add_legend(fig: Figure, colors: dict[str, str], order: list[str], extra=(),
            markers: bool = True) -> None:
    """One legend for the whole figure, below the panels, norms in report order."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[lab], marker=marker_for(lab) if markers else None,
                      markersize=4, label=lab) for lab in order]
    handles.extend(extra)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
               frameon=False, fontsize=8)


@styled
def plot_convergence(
    rs: RunSet, out_dir: Path, colors: dict[str, str], xaxis: str = "step",
    metrics: Sequence[str] | None = None, seed_lines: bool = False,
) -> list[Path]:
    """Test metric and training loss against ``xaxis`` (a key of :data:`CONVERGENCE_AXES`).

    One panel column per setting of the other swept keys (batch size, ...), one line per norm:
    the mean over seeds with its pointwise 95% t band, and with ``seed_lines`` each seed's own
    curve, thin. Runs that failed or diverged are left out of the curves (the report's tables
    count them). The subtitle says how many seeds the bands rest on.
    """
    curves = rs.curves
    done = rs.runs[rs.runs["status"] == "completed"]
    if curves.empty or done.empty or xaxis not in curves.columns:
        return []
    if metrics is None:
        test = f"test_{rs.primary_metric}"
        metrics = [m for m in (test, "train_loss") if m in curves.columns]
    if not metrics:
        return []
    facet_keys = facet_grid(rs, exclude=())
    facets = list(facet_groups(done, facet_keys))
    if len(facets) > 8:  # beyond this the panels are unreadable; keep the largest settings
        facets = facets[-8:]
    order = label_order(done["label"])
    fig = new_figure(len(facets), len(metrics), width=3.0, height=2.4, sharey="row")
    axes = fig.axes
    ncols = len(facets)
    for col, (fkey, frame) in enumerate(facets):
        for row, metric in enumerate(metrics):
            ax = axes[row * ncols + col]
            log = metric == "train_loss" and _wide(curves[metric])
            if log:  # decided first: the band is then taken over log values, and stays positive
                ax.set_yscale("log")
            for lab in order:
                ids = frame.loc[frame["label"] == lab, "run_id"]
                _band(ax, curves[curves["run_id"].isin(ids)], xaxis, metric, colors[lab], lab, seed_lines, log)
            ax.set_xlabel(names.label(xaxis) if row == len(metrics) - 1 else "")
            if col == 0:
                ax.set_ylabel(names.axis_label(metric))
            else:
                ax.tick_params(labelleft=False)
            if row == 0 and facet_keys:
                ax.set_title(facet_title(facet_keys, fkey))
            ax.set_xlim(left=0)
    name, what = CONVERGENCE_AXES.get(xaxis, ("convergence_time", "wall-clock time"))
    metric_names = " and ".join(names.label(m) for m in metrics)
    figure_title(fig, f"Convergence: {metric_names} against {what}",
           seeds_note(done, facet_keys, "shaded: 95% t band") + ("; thin: each seed" if seed_lines else "")
           + ("; log loss axis: geometric mean and band" if any(a.get_yscale() == "log" for a in axes) else ""))
    add_legend(fig, colors, order, markers=False)
    return save(fig, out_dir, name)


#: The x axes of the convergence plots: the curves' key -> (figure name, words for the title).
CONVERGENCE_AXES = {"step": ("convergence_steps", "training steps"), "epoch": ("convergence_epochs", "epochs"),
                    "samples_seen": ("convergence_samples", "training samples seen")}


def seeds_note(done: pd.DataFrame, keys: Sequence[str], interval: str) -> str:
    """What the intervals of a figure rest on: ``mean over 5 seeds; <interval>``, the range when the
    settings (norm label and ``keys``) differ, and plainly when one has one seed (no interval) or
    two (a wide one)."""
    counts = done.groupby(["label", *keys], dropna=False)["run_id"].count()
    lo, hi = int(counts.min()), int(counts.max())
    seeds = f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo} to {hi} seeds"
    if hi < MIN_SEEDS_FOR_INTERVAL:
        return f"mean over {seeds}, each seed drawn: no interval below {MIN_SEEDS_FOR_INTERVAL} seeds"
    caveat = (f"; settings with fewer than {MIN_SEEDS_FOR_INTERVAL} seeds show each seed, no interval"
              if lo < MIN_SEEDS_FOR_INTERVAL else "")
    return f"mean over {seeds}; {interval}{caveat}"


#: Below this many seeds a figure shows each seed instead of a t interval: at 2 seeds the 95%
#: t interval is 12.7 standard errors wide (an accuracy band from -80% to 200%).
MIN_SEEDS_FOR_INTERVAL = 3


def _band(ax, c: pd.DataFrame, xaxis: str, metric: str, color: str, label: str, seed_lines: bool = False,
          log: bool = False) -> None:
    """One norm's curve: the mean over its runs ``c`` and the pointwise 95% t band, clipped to the
    metric's range (``log``: over log values, for a log axis), and each run thin with
    ``seed_lines``. Below :data:`MIN_SEEDS_FOR_INTERVAL` runs each run is drawn and no band.
    Against time, on a common grid up to where the shortest run ends."""
    if c.empty or metric not in c:
        return
    few = c["run_id"].nunique() < MIN_SEEDS_FOR_INTERVAL
    if seed_lines or few:
        for _, run in c.groupby("run_id"):
            ax.plot(run[xaxis], run[metric] * _scale(metric), color=color, linewidth=0.6 if few else 0.5,
                    alpha=0.6 if few else 0.45)
    grid = None
    if xaxis != "step":
        grid = np.linspace(0.0, float(c.groupby("run_id")[xaxis].max().min()), 200)
    band = curve_band(c, xaxis, metric, grid=grid, log=log)
    if band.empty:
        return
    scale = _scale(metric)
    ax.plot(band["x"], band["mean"] * scale, color=color, label=label)
    ok = np.isfinite(band["lo"].to_numpy())
    if ok.any() and not few:
        ax.fill_between(band["x"][ok], band["lo"][ok] * scale, band["hi"][ok] * scale, color=color, alpha=0.2,
                        linewidth=0)


def _wide(values: pd.Series) -> bool:
    """Whether a positive quantity (a loss) spans more than a factor of 20: a log axis then."""
    v = pd.to_numeric(values, errors="coerce").to_numpy()
    v = v[np.isfinite(v) & (v > 0)]
    return bool(len(v) and v.max() / v.min() > 20)


def _set_log2_axis(ax, values: Sequence[float]) -> None:
    """A log-2 x axis with a tick at every power of two in range, labelled 2, 4, 8, ..."""
    vals = sorted(set(float(v) for v in values if v and v > 0))
    ax.set_xscale("log", base=2)
    ticks = vals if len(vals) <= 12 else [2.0 ** k for k in range(
        int(np.floor(np.log2(vals[0]))), int(np.ceil(np.log2(vals[-1]))) + 1)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(vals[0] / 2 ** 0.3, vals[-1] * 2 ** 0.3)


def _set_log_axis(ax, values: Sequence[float]) -> None:
    """A log x axis ticked at the values that were run (learning rates: 0.001, 0.003, ...)."""
    vals = sorted(set(float(v) for v in values if v and v > 0))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(vals))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(vals[0] / 10 ** 0.15, vals[-1] * 10 ** 0.15)


def _position(values, categories: list[str] | None) -> np.ndarray:
    """Where values of the swept key sit on the x axis: themselves, or a category's index."""
    if categories is None:
        return pd.to_numeric(values).to_numpy(dtype=float)
    return np.array([categories.index(str(v)) for v in values], dtype=float)


def _dodge(k: int, count: int, log: bool, xs: np.ndarray | None):
    """The shift of the ``k``-th of ``count`` norms at a shared x, so that their error bars do
    not overlap: a factor on a log axis, a fraction of the closest spacing on a linear one."""
    offset = k - (count - 1) / 2
    if count < 2:
        return lambda v: v
    if log:
        return lambda v: v * 10 ** (0.02 * offset)
    spacing = np.diff(np.unique(xs)).min() if xs is not None and len(np.unique(xs)) > 1 else 1.0
    return lambda v: v + 0.06 * spacing * offset


def _is_log_key(x: str, values: Sequence[float]) -> bool:
    vals = np.asarray([v for v in values if v is not None], dtype=float)
    vals = vals[np.isfinite(vals)]
    return bool(len(vals) > 2 and (vals > 0).all() and vals.max() / vals.min() >= 8
                and (x in ("lr", "optim.lr", "batch_size") or "lr" in x))


@styled
def plot_sweep(
    rs: RunSet, out_dir: Path, colors: dict[str, str], x: str, metric: str,
    name: str | None = None, title: str | None = None,
) -> list[Path]:
    """The final ``metric`` against the swept key ``x``, one line per norm (GN paper, Fig. 1).

    Points are means over seeds with 95% t-interval error bars; batch size and learning rates
    get a logarithmic axis (base 2 for batch size, ticks at the batch sizes run). Other swept
    keys make one panel each.
    """
    done = rs.runs[rs.runs["status"] == "completed"]
    if done.empty or x not in done.columns or metric not in done.columns:
        return []
    facet_keys = facet_grid(rs, exclude=(x,))
    facets = list(facet_groups(done, facet_keys))[:8]
    order = label_order(done["label"])
    fig = new_figure(len(facets), 1, width=3.6, height=2.9, sharey=True)
    scale = _scale(metric)
    numeric_x = pd.api.types.is_numeric_dtype(pd.to_numeric(done[x], errors="coerce")) and \
        pd.to_numeric(done[x], errors="coerce").notna().all()
    for ax, (fkey, frame) in zip(fig.axes, facets, strict=False):
        agg = aggregate(frame, [metric], ["label", x])
        categories = sorted(map(str, frame[x].unique())) if not numeric_x else None
        xvals = pd.to_numeric(frame[x], errors="coerce") if numeric_x else None
        log_x = x == "batch_size" or (numeric_x and _is_log_key(x, xvals))
        position = functools.partial(_position, categories=categories)
        present = [lab for lab in order if (agg["label"] == lab).any()]
        for k, lab in enumerate(present):
            a = agg[agg["label"] == lab]
            dodge = _dodge(k, len(present), log_x, position(frame[x]) if numeric_x else None)
            xs = dodge(position(a[x]))
            sort = np.argsort(xs)
            xs = xs[sort]
            mean = a[f"{metric}_mean"].to_numpy()[sort] * scale
            lo = a[f"{metric}_ci_lo"].to_numpy()[sort] * scale
            hi = a[f"{metric}_ci_hi"].to_numpy()[sort] * scale
            few = a[f"{metric}_n"].to_numpy()[sort] < MIN_SEEDS_FOR_INTERVAL
            yerr = np.where(few, 0.0, error_bars(mean, lo, hi))
            ax.errorbar(xs, mean, yerr=yerr, color=colors[lab], marker=marker_for(lab),
                        markersize=4, capsize=2.5, elinewidth=1.0, label=lab)
            small = set(a[x].to_numpy()[sort][few])
            seeds = frame[(frame["label"] == lab) & frame[x].isin(small)]
            if len(seeds):  # below MIN_SEEDS_FOR_INTERVAL: each seed, no interval
                ax.plot(dodge(position(seeds[x])), pd.to_numeric(seeds[metric], errors="coerce") * scale,
                        linestyle="none", marker=marker_for(lab), markersize=3, alpha=0.5, color=colors[lab],
                        markerfacecolor="none")
        if x == "batch_size":
            _set_log2_axis(ax, xvals)
        elif log_x:
            _set_log_axis(ax, xvals)
        elif not numeric_x:
            ax.set_xticks(range(len(categories)), categories)
        ax.set_xlabel(names.label(x))
        if ax is fig.axes[0]:
            ax.set_ylabel(names.axis_label(metric))
        if facet_keys:
            ax.set_title(facet_title(facet_keys, fkey))
    figure_title(fig, title or f"Final {names.label(metric)} against {names.short(x)}",
           seeds_note(done, [x, *facet_keys], "error bars: 95% t interval"))
    add_legend(fig, colors, order)
    return save(fig, out_dir, name or f"{metric}_vs_{x.replace('.', '_')}")


def plot_batch_size(rs: RunSet, out_dir: Path, colors: dict[str, str],
                    metric: str | None = None) -> list[Path]:
    """Final test error (%) against batch size on a log-2 axis, as in the GN paper's Figure 1.

    Language models plot test bits per character instead (lower is better, as for error).
    """
    if metric is None:
        # the lower-is-better form of the runs' metric: error for accuracy
        metric = "final_test_error" if rs.primary_metric == "acc" else f"final_test_{rs.primary_metric}"
    title = f"Batch-size sensitivity: final {names.label(metric)} against batch size"
    return plot_sweep(rs, out_dir, colors, "batch_size", metric, name="batch_size",
                      title=title)


def error_bars(mean, lo, hi) -> np.ndarray:
    """Asymmetric error-bar lengths; zero where the interval is undefined (one seed)."""
    mean, lo, hi = (np.asarray(v, dtype=float) for v in (mean, lo, hi))
    return np.vstack([np.where(np.isfinite(lo), mean - lo, 0.0),
                      np.where(np.isfinite(hi), hi - mean, 0.0)])
