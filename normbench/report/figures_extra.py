"""Figures for single claims that the general report does not draw.

``plot_percentiles``: the BN paper's Figure 1(b, c): the 15th, 50th and 85th percentiles of a
last-layer pre-activation over training (the ``preact_p15/p50/p85`` records a model's probe
writes), without and with batch norm, at the lowest learning rate of the runs, mean over seeds.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from normbench.report.load import RunSet
from normbench.report.plots import save

QUANTILES = (15, 50, 85)


def plot_percentiles(rs: RunSet, out_dir: Path) -> Path | None:
    """Draw the percentile curves into ``out_dir``; None if the runs have no probe records."""
    cols = [f"preact_p{q}" for q in QUANTILES]
    curves = rs.curves
    if curves.empty or not all(c in curves for c in cols):
        return None
    runs = rs.runs[rs.runs["status"] == "completed"]
    if "lr" in runs and runs["lr"].notna().any():
        runs = runs[runs["lr"] == runs["lr"].min()]
    norms = [n for n in ("none", "batch") if n in set(runs["norm"])] or sorted(set(runs["norm"]))
    if not norms:
        return None
    fig = Figure(figsize=(4.2 * len(norms), 3.4), layout="constrained")
    axes = fig.subplots(1, len(norms), sharey=True, squeeze=False)[0]
    for ax, norm in zip(axes, norms, strict=True):
        ids = set(runs.loc[runs["norm"] == norm, "run_id"])
        sel = curves[curves["run_id"].isin(ids)]
        mean = sel.groupby("step")[cols].mean().sort_index()
        for col, style in zip(cols, (":", "-", "--"), strict=True):
            ax.plot(mean.index, mean[col], style, color="C0" if norm == "none" else "C1",
                    label=f"{col[-2:]}th percentile")
        ax.set_title(f"{'without BN' if norm == 'none' else 'with BN' if norm == 'batch' else norm} "
                     f"({len(ids)} seed{'s' if len(ids) != 1 else ''})")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("last-layer pre-activation (unit 0)")
    axes[0].legend(fontsize=8)
    paths = save(fig, Path(out_dir), "preactivation_percentiles")
    return paths[0] if paths else None


__all__ = ["plot_percentiles"]


#: The extra figures a claim's spec may ask for by name (``figures: [percentiles]``).
EXTRA_FIGURES = {"percentiles": plot_percentiles}
