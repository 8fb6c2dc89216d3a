"""``normbench report`` in the terminal: the report written, and one rich table of the
statistics over seeds."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from normbench.metrics import primary_of
from normbench.report import tables
from normbench.report.api import ReportError, build_report
from normbench.report.load import RunSet


def _as_runset(runs: RunSet | pd.DataFrame) -> RunSet:
    """Accept a bare run table (``runs.csv``) as well as a loaded :class:`RunSet`."""
    if isinstance(runs, RunSet):
        return runs
    df = runs.copy()
    if "label" not in df:
        df["label"] = df["norm"].astype(str)
    keys = [k for k in ("dataset", "model", "norm", "batch_size") if k in df]
    keys += [c for c in df.columns if "." in c]
    family = primary_of({c.removeprefix("final_") for c in df.columns})
    return RunSet(runs=df, curves=pd.DataFrame(columns=["run_id"]), setting_keys=keys,
                  primary_metric=family)


def summary_rich_table(runs: RunSet | pd.DataFrame, title: str | None = None) -> Table:
    """The summary over seeds as a :class:`rich.table.Table` (same numbers as report.md)."""
    rs = _as_runset(runs)
    df = tables.summary_table(rs)
    counts = rs.runs["status"].value_counts() if "status" in rs.runs else pd.Series(dtype=int)
    caption = ", ".join(f"{int(v)} {k}" for k, v in counts.items())
    if rs.skipped:
        caption += f"; {len(rs.skipped)} skipped (unreadable)"
    table = Table(title=title or "normbench: final metrics over seeds "
                  "(mean ± std [95% CI])", caption=caption or None, header_style="bold")
    for col in df.columns:
        numeric = col not in ("norm", "runs") and not col.startswith(("dataset", "model"))
        table.add_column(str(col), justify="right" if numeric else "left",
                         style="bold" if col == "norm" else None)
    for row in df.itertuples(index=False, name=None):
        cells = [str(v) for v in row]
        style = "yellow" if any(w in cells[list(df.columns).index("runs")]
                                for w in ("failed", "diverged", "running")) else None
        table.add_row(*cells, style=style)
    return table


def print_summary(runs: RunSet | pd.DataFrame, console: Console | None = None) -> None:
    """Print the summary table (and any skipped directories) to ``console`` (stdout)."""
    console = console or Console()
    rs = _as_runset(runs)
    if rs.runs.empty:
        console.print("no runs")
        return
    console.print(summary_rich_table(rs))
    for path, why in rs.skipped:
        console.print(f"[yellow]skipped[/yellow] {path}: {why}", highlight=False)


def default_out_dir(dirs: Sequence[Path]) -> Path:
    """``DIR/report`` for one input directory (next to its runs), ``./report`` otherwise."""
    return dirs[0] / "report" if len(dirs) == 1 else Path("report")


def report_command(dirs: Sequence[Path], out: Path | None = None, x: str | None = None,
                   metric: str | None = None, plots: Sequence[str] | None = None, quiet: bool = False,
                   seed_lines: bool = False) -> int:
    """Write the report and print the summary table; returns the exit code (0, or 2 for bad input)."""
    out = out or default_out_dir(dirs)
    try:
        report = build_report(dirs, out, x=x, metric=metric, plots=plots, seed_lines=seed_lines)
    except ReportError as exc:
        print(f"normbench: error: {exc}", file=sys.stderr)
        return 2
    if not quiet:
        console = Console()
        print_summary(report.runs, console)
        for note in report.notes:
            console.print(f"note: {note}", highlight=False)
        console.print(f"report: {report.path}", highlight=False)
    return 0
