"""The reporter: run and sweep directories in; tables, plots and report.md out.

It reads only run directories (see :mod:`normbench.records`) and never imports torch or
training code, so a report can be made on a laptop from a cluster's outputs::

    from normbench.report import make_report, load_runs, print_summary
    path = make_report(["multirun/2026-11-25/10-00-00"], "reports/gn")
    print_summary(load_runs(["multirun/2026-11-25/10-00-00"]))

Modules: ``load`` (directories -> tidy tables), ``stats`` (statistics over seeds, t
intervals, the batch-norm threshold), ``plots`` (figures), ``tables`` (display tables),
``markdown`` (report.md), ``terminal`` (rich summary), ``api`` (``make_report``),
``callback`` (end-of-sweep Hydra callback), ``__main__`` (``python -m normbench.report``).
"""

from normbench.report.api import PLOTS, Report, ReportError, build_report, make_report
from normbench.report.load import RunSet, load_runs
from normbench.report.terminal import print_summary, summary_rich_table

__all__ = ["PLOTS", "Report", "ReportError", "RunSet", "build_report", "load_runs",
           "make_report", "print_summary", "summary_rich_table"]
