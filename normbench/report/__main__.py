"""``python -m normbench.report DIR... [-o OUT] [--x KEY] [--metric NAME] [--plot NAME]``.

The same as ``normbench report``; bad input (a missing directory, an unknown metric) prints one
line on stderr and exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from normbench.report.api import PLOT_ALIASES, PLOTS, ReportError, build_report

EXIT_USAGE = 2


def default_out_dir(dirs: Sequence[Path]) -> Path:
    """``DIR/report`` for one input directory (next to its runs), ``./report`` otherwise."""
    return dirs[0] / "report" if len(dirs) == 1 else Path("report")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m normbench.report",
        description="Read run and sweep directories and write tables, plots and report.md.",
        epilog="example: python -m normbench.report multirun/2026-11-25/10-00-00 -o reports/gn")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="run or sweep directories (searched recursively)")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output directory (default: DIR/report for one DIR, else ./report)")
    p.add_argument("--x", default=None, metavar="KEY",
                   help="config key for the x axis of a sweep plot, e.g. batch_size, optim.lr")
    p.add_argument("--metric", default=None, metavar="NAME",
                   help="metric to compare, e.g. test_acc, test_error, best_test_acc, test_bpc")
    p.add_argument("--plot", action="append", default=None, metavar="NAME",
                   help=f"plot to draw (repeatable): {', '.join([*PLOTS, *PLOT_ALIASES])}; "
                        "default: chosen from what varies")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary table")
    return p


def report_command(dirs: Sequence[Path], out: Path | None = None, x: str | None = None,
                   metric: str | None = None, plots: Sequence[str] | None = None, quiet: bool = False) -> int:
    """Write the report and print the summary table; returns the exit code (0, or 2 for bad input)."""
    out = out or default_out_dir(dirs)
    try:
        report = build_report(dirs, out, x=x, metric=metric, plots=plots)
    except ReportError as exc:
        print(f"normbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not quiet:
        from rich.console import Console

        from normbench.report.terminal import print_summary

        console = Console()
        print_summary(report.runs, console)
        for note in report.notes:
            console.print(f"note: {note}", highlight=False)
        console.print(f"report: {report.path}", highlight=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0, or 2 for bad input)."""
    args = parser().parse_args(argv)
    return report_command(args.dirs, args.out, args.x, args.metric, args.plot, args.quiet)


if __name__ == "__main__":
    sys.exit(main())
