"""Run directory I/O: the one record of a run.

A run directory holds

- ``config.yaml``: the resolved config;
- ``metrics.jsonl``: one JSON object per evaluation (``step``, ``epoch``, ``samples_seen``,
  ``wall_time_s``, ``train_time_s``, ``train_loss``, ``test_loss``, ``lr`` and either
  ``train_acc``/``test_acc`` or, for language models, ``train_bpc``/``test_bpc``);
- ``summary.json``: the run's outcome (see :func:`summarize`), rewritten atomically at every
  checkpoint and at the end;
- ``checkpoint.pt``: what the same command resumes from.

This module imports neither torch nor training code, so the reporter can read a cluster's
outputs on a laptop.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = ".normbench.lock"

STATUSES = ("running", "completed", "failed", "diverged")

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the file is
    renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_safe(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_summary(run_dir: Path, summary: dict) -> None:
    atomic_write_text(Path(run_dir) / SUMMARY_FILE, json.dumps(_json_safe(summary), indent=2) + "\n")


def read_summary(run_dir: Path) -> dict:
    """The run's summary; raises ``FileNotFoundError`` or ``ValueError`` (corrupt JSON)."""
    with open(Path(run_dir) / SUMMARY_FILE, encoding="utf-8") as f:
        summary = json.load(f)
    if not isinstance(summary, dict):
        raise ValueError(f"{run_dir / SUMMARY_FILE} does not hold a JSON object")
    return summary


def write_metrics(run_dir: Path, records: Iterable[dict]) -> None:
    """Rewrite ``metrics.jsonl`` atomically with ``records`` (used when a run resumes)."""
    text = "".join(json.dumps(_json_safe(r)) + "\n" for r in records)
    atomic_write_text(Path(run_dir) / METRICS_FILE, text)


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(_json_safe(record)) + "\n")
        f.flush()


def read_metrics(run_dir: Path) -> list[dict]:
    """Every complete line of ``metrics.jsonl``; a torn last line (killed writer) is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class RunDirBusy(Exception):
    """Another process holds the run directory's lock."""


class RunLock:
    """One writer per run directory: an exclusive ``flock`` on ``<run_dir>/.normbench.lock``.

    The operating system releases the lock when its process dies (SIGKILL, a node that reboots
    and requeues the job), so a stale lock never blocks a resume. The file names the holder
    (PID and host) for the message a second process gets. The file itself is left in place:
    deleting it would let a third process lock a new file while the second still holds the old.
    The exception: a directory the lock itself created and nothing else wrote to (a refused
    config) is removed again, so a refused run leaves nothing behind.
    Under torchrun only rank 0 writes the run directory, so only rank 0 takes the lock.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None
        self.created = False

    def __enter__(self) -> RunLock:
        import fcntl
        import socket

        self.created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "a process"
            os.close(fd)
            raise RunDirBusy(f"{self.path.parent} is in use by another normbench run ({holder}); wait for it to "
                             "finish, or give this run another directory (hydra.run.dir=...)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        if self.created and [p.name for p in self.path.parent.iterdir()] == [LOCK_FILE]:
            self.path.unlink()
            self.path.parent.rmdir()
        os.close(self.fd)  # releases the lock
        self.fd = None


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return (path / SUMMARY_FILE).exists() or (path / CONFIG_FILE).exists()


def find_run_dirs(roots: Iterable[Path]) -> Iterator[Path]:
    """Every run directory at or below each root, in sorted order (a sweep holds many)."""
    for root in roots:
        root = Path(root)
        if is_run_dir(root):
            yield root
            continue
        for path in sorted(root.rglob(CONFIG_FILE)):
            if ".hydra" not in path.parts:
                yield path.parent
