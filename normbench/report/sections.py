"""The sections of report.md, one function each, in the order the report shows them.

Each returns a :class:`~normbench.report.markdown.Section`; an empty one is dropped by
:func:`~normbench.report.markdown.render`.
"""

from __future__ import annotations

import pandas as pd

from normbench.report import names, tables
from normbench.report.markdown import Section


def _sorted_values(values) -> list:
    """Numbers in numeric order (2, 4, 16, not 16, 2, 4), anything else as text."""
    try:
        return sorted(values, key=float)
    except (TypeError, ValueError):
        return sorted(values, key=str)


def overview(rs, dirs, metric: str) -> Section:
    """How many runs, from where, what varies, and how they are aggregated."""
    runs = rs.runs
    counts = runs["status"].value_counts()
    status_text = ", ".join(f"{int(counts.get(s, 0))} {s}" for s in
                            ("completed", "failed", "diverged", "running") if counts.get(s, 0))
    others = [s for s in counts.index if s not in ("completed", "failed", "diverged", "running")]
    status_text += "".join(f", {int(counts[s])} {s}" for s in others)
    section = Section("Overview")
    section.text(
        f"**{len(runs)} run{'s' if len(runs) != 1 else ''}** ({status_text}) read from "
        + ", ".join(f"`{d}`" for d in dirs)
        + (f"; **{len(rs.skipped)} "
           f"{'directory' if len(rs.skipped) == 1 else 'directories'} skipped** "
           "(unreadable, listed below)."
           if rs.skipped else "; no directory skipped."))
    ident = []
    for col in ("dataset", "model", "norm", "batch_size", "lr", "seed"):
        vals = runs[col].dropna().unique()
        shown = ", ".join(tables.format_key(v) for v in _sorted_values(vals)[:12])
        ident.append(f"- {col}: {shown}{' …' if len(vals) > 12 else ''}")
    section.text("\n".join(ident))
    section.text("Varying between settings: " + (", ".join(f"`{k}`" for k in rs.swept_keys) or
                                                  "nothing (repeats of one setting)")
                 + ". Runs that differ only in `seed` are aggregated: mean ± standard "
                 "deviation [95% Student-t interval of the mean]; the interval needs at least two "
                 "seeds. Differences use Welch's t interval, which keeps its 5% false-significance "
                 "rate at 3 to 5 seeds where a percentile bootstrap does not (see "
                 "normbench/report/stats.py).")
    direction = "lower is better" if names.lower_is_better(metric) else "higher is better"
    section.text(f"Headline metric: **{names.label(metric)}** ({direction}). Accuracies and "
                 "errors are in percent; statistics use completed runs only.")
    if names.lower_is_better(f"test_{rs.primary_metric}"):
        section.text(f"The runs' own metric is {names.label(f'test_{rs.primary_metric}')}: **lower is better**.")
    return section


def summary(rs) -> Section:
    section = Section("Summary over seeds")
    section.table(tables.summary_table(rs))
    return section


def convergence(rs, figs: dict, out_dir) -> Section:
    section = Section("1. Convergence speed")
    shown = [name for name in ("convergence_steps", "convergence_epochs", "convergence_samples", "convergence_time")
             if name in figs]
    for name in shown:
        section.image(figs[name][0], out_dir, f"Convergence against {name.split('_', 1)[1]}", figs[name][1])
    if shown:
        tt = tables.target_table(rs)
        if not tt.empty:
            target = tt.attrs.get("target")
            what = f"{target * 100:g}% test accuracy" if target else "the target accuracy"
            section.table(tt, f"Steps and time to reach {what}: `reached` counts the finished runs "
                              "(completed or diverged) that got there; the median counts the others as "
                              "infinitely slow (\"not reached\" when fewer than half got there), so no "
                              "slow seed is dropped:")
    return section


def batch_size(rs, figs: dict, out_dir, thresholds, thresh_metric: str) -> Section:
    """The batch-size plot and, per batch size, batch norm against the best batch-independent norm."""
    runs = rs.runs
    section = Section("2. Batch-size sensitivity")
    if "batch_size" in figs:
        section.image(figs["batch_size"][0], out_dir, "Test error against batch size", figs["batch_size"][1])
    if thresholds and ("batch_size" in figs or runs["batch_size"].nunique() > 1):
        section.text(*(t.sentence(names.label(thresh_metric)) for t in thresholds))
        scale = "_acc" if names.is_percent(thresh_metric) else thresh_metric
        rows = []
        for t in thresholds:
            for i, bs in enumerate(t.batch_sizes):
                row = {f"{k}": tables.format_key(v) for k, v in t.setting.items()}
                lo, hi = t.ci_lo[i], t.ci_hi[i]
                row.update({
                    "batch size": bs, "best batch-independent": t.best_other[i],
                    "BN worse by": tables.fmt(t.diff[i], scale),
                    "95% CI": (f"[{tables.fmt(lo, scale)}, {tables.fmt(hi, scale)}]"
                               if lo == lo else "– (fewer than 2 seeds a side)"),
                    "BN behind": "yes" if t.behind[i] else "no"})
                rows.append(row)
        independent = sorted(set(runs.loc[runs["batch_dependent"].eq(False), "norm"].dropna()))
        section.table(pd.DataFrame(rows), f"Batch norm minus the best batch-independent norm "
                                          f"({', '.join(independent)}) at each batch size, "
                                          f"{names.label(thresh_metric)}; positive = BN worse:")
    elif "batch_size" in figs:
        section.text("No batch-norm/batch-independent pair to compare at a common batch size.")
    return section


def generalization(figs: dict, out_dir) -> Section:
    section = Section("3. Generalization")
    if "generalization" in figs:
        section.image(figs["generalization"][0], out_dir, "Train against test", figs["generalization"][1])
    if "label_noise" in figs:
        section.image(figs["label_noise"][0], out_dir, "Accuracy against label noise", figs["label_noise"][1])
    return section


def sweep(figs: dict, out_dir, metric: str, x: str | None) -> Section:
    section = Section(f"{names.label(metric).capitalize()} against {names.label(x or '')}")
    if "sweep" in figs:
        section.image(figs["sweep"][0], out_dir, "Sweep", figs["sweep"][1])
    return section


def differences(diffs: pd.DataFrame, metric: str) -> Section:
    section = Section(f"Differences between norms: {names.label(metric)}")
    if not diffs.empty:
        section.text("Each norm minus the reference norm on the same setting; the interval is the "
                     "95% Welch t interval of the difference of means (the norms' seeds are independent "
                     "samples); 'MDE' is the smallest difference these seeds detect with 80% power"
                     + ("; accuracies in percentage points." if names.is_percent(metric) else "."))
        section.table(diffs)
    return section


def leftovers(rs, notes: list[str]) -> list[Section]:
    """Runs that did not complete, skipped directories, notes, and the files written."""
    bad = Section("Runs that did not complete")
    inc = tables.incomplete_table(rs)
    if not inc.empty:
        bad.text("Counted in the tables above (`runs` column) but left out of the statistics:")
        bad.table(inc)
    skip = Section("Skipped directories")
    if rs.skipped:
        skip.table(tables.skipped_table(rs))
    noted = Section("Notes")
    if notes:
        noted.text("\n".join(f"- {n}" for n in notes))
    files = Section("Files")
    files.text("- `runs.csv`: one row per run (config values that vary, summary metrics)\n"
               "- `summary.csv`: statistics over seeds per setting\n"
               "- `differences.csv`: norm differences with Welch t intervals\n"
               "- `skipped.csv`: unreadable directories\n"
               "- `plots/`: every figure as PNG and SVG")
    return [bad, skip, noted, files]
