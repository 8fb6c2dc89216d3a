"""The generalization figures: train against test per run with the gap per norm, and train and
test against the label-noise fraction (Zhang et al. 2017). Drawn as :mod:`normbench.report.plots`
draws (no pyplot; PNG and SVG; the report's colours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from normbench.metrics import metric
from normbench.report import names
from normbench.report.load import RunSet
from normbench.report.plots import (
    add_legend,
    error_bars,
    facet_grid,
    facet_groups,
    facet_title,
    figure_title,
    label_order,
    marker_for,
    new_figure,
    save,
    seeds_note,
    styled,
)
from normbench.report.stats import aggregate


def _columns(rs: RunSet) -> tuple[str, str, float, str]:
    """The final train and test columns of the runs' own metric, its display scale and its name."""
    spec = metric(rs.primary_metric)
    return (f"final_train_{spec.name}", f"final_test_{spec.name}", 100.0 if spec.percent else 1.0,
            spec.label)

@styled
def plot_generalization(rs: RunSet, out_dir: Path, colors: dict[str, str]) -> list[Path]:
    """Train against test performance per run, and the generalization gap per norm.

    Left: every completed run as a point (final train metric, final test metric), per-norm means
    as large markers, and the diagonal where test equals train. Right: the mean gap per norm
    with its 95% t interval, grouped by the other swept setting (e.g. batch size).
    """
    tr, te, scale, what = _columns(rs)
    done = rs.runs[rs.runs["status"] == "completed"]
    if done.empty or tr not in done or te not in done:
        return []
    done = done.copy()
    if "generalization_gap" not in done or done["generalization_gap"].isna().all():
        done["generalization_gap"] = metric(rs.primary_metric).gap(done[tr], done[te])
    order = label_order(done["label"])
    fig = new_figure(2, 1, width=3.7, height=3.0)
    ax, bx = fig.axes
    facet_keys = facet_grid(rs, exclude=())
    _train_against_test(ax, done, facet_keys, order, colors, tr, te, scale)
    _gap_bars(bx, done, facet_keys, order, colors, scale, what)
    figure_title(fig, f"Generalization: train against test {what}", seeds_note(done, facet_keys, "error bars: 95% t interval"))
    add_legend(fig, colors, order, markers=False)  # colour: the norm; markers: the settings
    return save(fig, out_dir, "generalization")


SETTING_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _train_against_test(ax, done, facet_keys, order, colors, tr, te, scale) -> None:
    # One point per run (faint) and one per norm and setting (mean ± 95% CI both ways): a
    # mean pooled over batch sizes would mix settings. Colour: the norm; marker: the setting.
    agg = aggregate(done, [tr, te], ["label", *facet_keys])
    settings = sorted({tuple(row) for row in agg[facet_keys].itertuples(index=False)}, key=str) if facet_keys else [()]
    marker = {setting: SETTING_MARKERS[i % len(SETTING_MARKERS)] for i, setting in enumerate(settings)}
    for lab in order:
        d = done[done["label"] == lab]
        ax.scatter(d[tr] * scale, d[te] * scale, s=10, color=colors[lab], alpha=0.35,
                   linewidths=0)
        for _, a in agg[agg["label"] == lab].iterrows():
            setting = tuple(a[k] for k in facet_keys)
            mx, my = a[f"{tr}_mean"] * scale, a[f"{te}_mean"] * scale
            xerr = error_bars([mx], [a[f"{tr}_ci_lo"] * scale], [a[f"{tr}_ci_hi"] * scale])
            yerr = error_bars([my], [a[f"{te}_ci_lo"] * scale], [a[f"{te}_ci_hi"] * scale])
            ax.errorbar([mx], [my], xerr=xerr, yerr=yerr, linestyle="none", color=colors[lab],
                        marker=marker.get(setting, marker_for(lab)), markersize=5, markeredgecolor="black",
                        markeredgewidth=0.5, elinewidth=0.8, capsize=1.5, zorder=3)
    if len(settings) > 1:  # which marker is which setting
        for setting in settings:
            ax.plot([], [], linestyle="none", marker=marker[setting], color="grey", markeredgecolor="black",
                    label=facet_title(facet_keys, setting))
    lo = np.nanmin(done[[tr, te]].to_numpy()) * scale
    hi = np.nanmax(done[[tr, te]].to_numpy()) * scale
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=0.8,
            linestyle=":", label="test = train")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(names.axis_label(tr, direction=False))
    ax.set_ylabel(names.axis_label(te, direction=False))
    ax.set_title("Final train vs test, per setting")
    ax.legend(loc="upper left", frameon=False, fontsize=7)


def _gap_bars(bx, done, facet_keys, order, colors, scale, what) -> None:
    groups = list(facet_groups(done, facet_keys))
    width = 0.8 / max(len(order), 1)
    for i, lab in enumerate(order):
        means, errs = [], [[], []]
        for _, frame in groups:
            a = aggregate(frame[frame["label"] == lab], ["generalization_gap"], [])
            m = a["generalization_gap_mean"].iloc[0] * scale if not a.empty else np.nan
            clo = a["generalization_gap_ci_lo"].iloc[0] * scale if not a.empty else np.nan
            chi = a["generalization_gap_ci_hi"].iloc[0] * scale if not a.empty else np.nan
            means.append(m)
            errs[0].append(m - clo if np.isfinite(clo) else 0)
            errs[1].append(chi - m if np.isfinite(chi) else 0)
        pos = np.arange(len(groups)) + (i - (len(order) - 1) / 2) * width
        bx.bar(pos, means, width=width * 0.92, color=colors[lab], yerr=errs, capsize=2,
               error_kw={"elinewidth": 0.9}, label=lab)
    bx.axhline(0, color="black", linewidth=0.6)
    bx.set_xticks(np.arange(len(groups)),
                  [facet_title(facet_keys, k) if facet_keys else "all runs" for k, _ in groups],
                  rotation=30 if len(groups) > 4 else 0)
    bx.set_ylabel(f"how much worse test is ({what}{', points' if scale == 100.0 else ''})")
    bx.set_title("Generalization gap")


@styled
def plot_label_noise(rs: RunSet, out_dir: Path, colors: dict[str, str]) -> list[Path]:
    """Final train (dashed) and test (solid) accuracy against the label-noise fraction.

    As in Zhang et al.: networks keep fitting the (noisy) training labels while test accuracy
    falls; the gap between the two lines is the memorization.
    """
    x = "dataset.label_noise"
    tr, te, scale, what = _columns(rs)
    done = rs.runs[rs.runs["status"] == "completed"]
    if done.empty or x not in done or te not in done:
        return []
    from matplotlib.lines import Line2D

    facet_keys = facet_grid(rs, exclude=(x,))
    facets = list(facet_groups(done, facet_keys))[:8]
    order = label_order(done["label"])
    fig = new_figure(len(facets), 1, width=3.6, height=2.9, sharey=True)
    for ax, (fkey, frame) in zip(fig.axes, facets, strict=False):
        agg = aggregate(frame, [tr, te], ["label", x])
        for lab in order:
            a = agg[agg["label"] == lab].sort_values(x)
            if a.empty:
                continue
            for column, style in ((te, "-"), (tr, "--")):
                if f"{column}_mean" not in a:
                    continue
                mean = a[f"{column}_mean"].to_numpy() * scale
                lo = a[f"{column}_ci_lo"].to_numpy() * scale
                hi = a[f"{column}_ci_hi"].to_numpy() * scale
                yerr = error_bars(mean, lo, hi)
                ax.errorbar(pd.to_numeric(a[x]) * 100, mean, yerr=yerr, color=colors[lab],
                            linestyle=style, marker=marker_for(lab), markersize=4, capsize=2.5,
                            elinewidth=1.0)
        ax.set_xlabel("label noise (% of training labels randomized)")
        if ax is fig.axes[0]:
            ax.set_ylabel(f"final {what}" + (" (%)" if scale == 100.0 else ""))
        if facet_keys:
            ax.set_title(facet_title(facet_keys, fkey))
    extra = [Line2D([], [], color="black", linestyle="-", label="test"),
             Line2D([], [], color="black", linestyle="--", label="train")]
    figure_title(fig, f"Label noise: final train and test {what}", seeds_note(done, [x, *facet_keys],
                                                                       "error bars: 95% t interval"))
    add_legend(fig, colors, order, extra=extra)
    return save(fig, out_dir, "label_noise")
