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


def index_command(dirs: Sequence[Path], out: Path | None = None, console: Console | None = None) -> int:
    """``normbench runs``: the index of every run under ``dirs`` as a terminal table (paths
    relative to the working directory), and as CSV at ``out`` when given; 2 when none is found."""
    import os

    from normbench.report.load import load_runs

    console = console or Console()
    missing = [d for d in dirs if not Path(d).exists()]
    if missing:
        print(f"normbench: error: {missing[0]} does not exist; give run or sweep directories", file=sys.stderr)
        return 2
    rs = load_runs(dirs)
    index = tables.run_index(rs)
    if index.empty:
        print(f"normbench: error: no run directories under {', '.join(map(str, dirs))}", file=sys.stderr)
        return 2
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        tables.write_csv(index, Path(out))
    # In the terminal: each run by its path below the inputs' common root, short heads.
    names = dict(zip(rs.runs.get("run_dir", []), rs.runs.get("run_id", []), strict=True))
    shown = index.assign(directory=index["directory"].map(lambda d: names.get(d) or os.path.relpath(Path(d).resolve())))
    heads = {"directory": "run", f"final_test_{rs.primary_metric}": "test", f"final_val_{rs.primary_metric}": "val",
             f"selected_test_{rs.primary_metric}": "test at val best", "wall_time_s": "wall s"}
    table = Table(title=f"normbench: {len(index)} run directories", header_style="bold",
                  caption=f"test, val: final {rs.primary_metric}" + (" (%)" if rs.primary_metric == "acc" else ""))
    for col in shown.columns:
        table.add_column(heads.get(col, str(col)), justify="left" if col in ("directory", "status") else "right",
                         overflow="fold")
    for _, row in shown.iterrows():
        cells = [tables.fmt(v, str(col)) if str(col).startswith(("final_", "selected_")) else
                 f"{v:.1f}" if col == "wall_time_s" and pd.notna(v) else tables.format_key(v) for col, v in row.items()]
        table.add_row(*cells, style=None if row["status"] == "completed" else "yellow")
    console.print(table)
    if out is not None:
        console.print(f"wrote {out}", highlight=False)
    return 0
