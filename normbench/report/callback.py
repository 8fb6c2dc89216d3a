"""A Hydra callback that writes a report into the sweep directory when a multirun ends.

Wire it in the primary config::

    hydra:
      callbacks:
        report:
          _target_: normbench.report.callback.ReportCallback
          enabled: true        # normbench run -m ... hydra.callbacks.report.enabled=false

The report goes to ``<sweep dir>/report/``. A sweep's results matter more than its report, so
the callback never raises: any problem becomes a logged warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

#: Set to 1 to turn the end-of-sweep report off without touching the config.
DISABLE_ENV = "NORMBENCH_NO_REPORT"


class ReportCallback(Callback):
    """Calls :func:`normbench.report.make_report` on the sweep directory at multirun end."""

    def __init__(self, enabled: bool = True, subdir: str = "report") -> None:
        self.enabled = bool(enabled)
        self.subdir = subdir
        self.last_report: Path | None = None

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if not self.enabled or os.environ.get(DISABLE_ENV, "") not in ("", "0"):
            return
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            from normbench.report.api import make_report

            self.last_report = make_report([sweep_dir], sweep_dir / self.subdir)
            log.info("report written to %s", self.last_report)
        except Exception as exc:  # never let reporting break a finished sweep
            log.warning("normbench: no report for this sweep: %s: %s",
                        type(exc).__name__, " ".join(str(exc).split()))
