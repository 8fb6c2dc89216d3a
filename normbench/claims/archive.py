"""A claim's runs archived beside its verdict, so that every check can be recomputed from the
committed files alone.

``<out>/<claim>/runs/<sweep>/<job>/`` holds each run's records: its resolved config, summary,
metrics history (what the curves, medians, plateaus and steps-to-target read) and per-example
test records with their digest (what the intervals over test examples read), but not its
checkpoints. ``<sweep>`` is the sweep directory's name: ``sweep<i>-<hash>`` for the verdict's
runs, ``pilot<i>-<hash>`` and ``pilot-longer<i>-<hash>`` for its pilot's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from normbench import records
from normbench.report.load import discover

ARCHIVE_DIR = "runs"
_FILES = (records.CONFIG_FILE, records.SUMMARY_FILE, records.METRICS_FILE, records.EXAMPLES_FILE,
          records.EXAMPLES_FILE + records.DIGEST_SUFFIX)
#: The names a pilot's sweep directories start with, at the spec's budget and at the longer one.
PILOT_PREFIX, PILOT_LONGER_PREFIX = "pilot", "pilot-longer"


def archive_runs(sweep_dirs: Iterable[Path], out_dir: Path) -> Path:
    """Copy the records of every run under ``sweep_dirs`` into ``out_dir/runs/`` (replacing an
    older archive) and return that directory."""
    root = Path(out_dir) / ARCHIVE_DIR
    shutil.rmtree(root, ignore_errors=True)
    for sweep in (Path(d) for d in sweep_dirs):
        for run_dir in discover([sweep]):
            dest = root / sweep.name / run_dir.relative_to(sweep.resolve())
            dest.mkdir(parents=True, exist_ok=True)
            for name in _FILES:  # a symlink is not a record: it could point anywhere on this machine
                if (run_dir / name).is_file() and not (run_dir / name).is_symlink():
                    shutil.copy2(run_dir / name, dest / name)
    return root


def archived(out_dir: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """The archived sweep directories of a claim: the verdict's, the pilot's at the spec's budget,
    and the pilot's at the longer one."""
    root = Path(out_dir) / ARCHIVE_DIR
    dirs = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    longer = [d for d in dirs if d.name.startswith(PILOT_LONGER_PREFIX)]
    base = [d for d in dirs if d.name.startswith(PILOT_PREFIX) and d not in longer]
    return [d for d in dirs if not d.name.startswith(PILOT_PREFIX)], base, longer
