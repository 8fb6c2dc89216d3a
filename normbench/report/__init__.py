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

import importlib

# Where each public name lives; loaded on first use (PEP 562), so that importing a submodule
# (the end-of-sweep callback, in every run's process) does not load pandas and matplotlib.
_PUBLIC = {"PLOTS": "api", "Report": "api", "ReportError": "api", "build_report": "api", "make_report": "api",
           "RunSet": "load", "load_runs": "load", "print_summary": "terminal", "summary_rich_table": "terminal"}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"normbench.report.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'normbench.report' has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
