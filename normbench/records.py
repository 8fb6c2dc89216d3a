"""Run directory I/O: the one record of a run.

A run directory holds

- ``config.yaml``: the resolved config;
- ``metrics.jsonl``: one JSON object per evaluation (``step``, ``epoch``, ``samples_seen``,
  ``wall_time_s``, ``train_time_s``, ``train_loss``, ``test_loss``, ``lr`` and either
  ``train_acc``/``test_acc`` or, for language models, ``train_bpc``/``test_bpc``);
- ``summary.json``: the run's outcome (see :func:`summarize`), rewritten atomically at every
  checkpoint and at the end;
- ``checkpoint.pt``: what the same command resumes from, and ``checkpoint.prev.pt`` the one
  before it; each has a ``.sha256`` file (its SHA-256 digest and step), checked before a resume;
- ``test_examples.npz``: the final evaluation per test example (:func:`write_examples`), with
  its ``.sha256`` file, for paired comparisons of runs scored on the same examples.

The summary and the checkpoint carry ``record_version`` (:data:`RECORD_VERSION`); a record written
by an earlier normbench is brought to this version by :func:`upgrade`, the one place that knows
what earlier versions wrote.

This module imports neither torch nor training code, so the reporter can read a cluster's
outputs on a laptop.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from normbench import metrics

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
EXAMPLES_FILE = "test_examples.npz"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"
DIGEST_SUFFIX = ".sha256"
LOCK_FILE = ".normbench.lock"
LOG_FILE = "run.log"  # everything the run printed (normbench.cli.hydra_app.logged)
OUTCOME_FILE = "sweep_outcome.json"  # in a sweep directory: its runs counted by status

STATUSES = ("running", "completed", "failed", "diverged")

#: The version of the records this normbench writes. 1: no ``record_version`` key (main before
#: 2026-12); 2: ``record_version`` in summary.json and the checkpoint; 3: the summary's
#: ``ended_at``, and its ``env`` the git commit (``git``) and ``started_at``.
RECORD_VERSION = 3
RECORD_KINDS = ("summary", "checkpoint", "config")

# What version 1 did not record, as version 1's built-in norms had it: whether the norm makes a
# sample's output depend on its batch (version 2 configs carry norm.batch_dependent).
_V1_BATCH_DEPENDENT = {"batch": True, "group": False, "layer": False, "instance": False, "none": False}

# Dataset keys added after runs were recorded, with the values that compute those runs: runs
# before the validation split trained on all the training data, with one draw (None: every
# dataset), and MNIST-1D's standard test set.
_ADDED_DATASET_KEYS = {None: {"val_fraction": 0.0, "draw": "fixed"}, "mnist1d": {"num_test": None}}

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


def build_summary(cfg, status: str, error: str | None = None, *, state=None, env: dict | None = None,
                  num_params: int | None = None, lr: float | None = None, metric: str = "acc",
                  extra: dict | None = None) -> dict:
    """The summary.json dict, the one builder of it: the run's identity (from ``cfg``, the composed
    config), then what its evaluation history and loop state say (``state``: ``history``, ``step``,
    ``wall_time_s``, ``train_time_s``; None for a job that failed before it trained), then ``extra``
    (what the trainer adds: the statistics that score the run, the dataset's reference values).

    The metric keys follow the task: ``train_acc``/``val_acc``/``test_acc``/``best_val_acc``/
    ``selected_test_acc``/``target_acc`` for classification, the same with ``bpc`` (lower is
    better) for language modelling. ``selected_step`` is the evaluation with the best validation
    score (the first, on a tie) and ``selected_test_<metric>`` its test score; ``final`` also holds the extra test sets' values
    (``test_bpc_len200``, ...).
    """
    spec, m = metrics.metric(metric), metric
    history = list(state.history) if state is not None else []
    steps = state.step if state is not None else 0
    wall, train_time = (state.wall_time_s, state.train_time_s) if state is not None else (0.0, 0.0)
    last = history[-1] if history else {}
    final = {k: last.get(k) for k in ("train_loss", f"train_{m}", "val_loss", f"val_{m}", "test_loss", f"test_{m}",
                                      "step_loss")}
    final.update({k: v for k, v in last.items() if k.startswith(("test_loss_", f"test_{m}_"))})
    # Selection reads validation only: the best validation score, and the test score at its step
    # (the test set is reported, never selected on).
    scored = [r for r in history if r.get(f"val_{m}") is not None]
    best_val = spec.best([r[f"val_{m}"] for r in scored])
    at_best = next((r for r in scored if r[f"val_{m}"] == best_val), None)
    trainer = cfg.get("trainer") or {}
    target = trainer.get(spec.target_key)
    reached = next((r for r in history if spec.reached(r.get(f"test_{m}"), target)), None)
    gap = None
    if final[f"train_{m}"] is not None and final[f"test_{m}"] is not None:
        gap = spec.gap(final[f"train_{m}"], final[f"test_{m}"])
    batch_size = cfg.get("batch_size")
    samples = steps * batch_size if isinstance(batch_size, int) else 0
    group = lambda name: (cfg.get(name) or {}).get("name")  # noqa: E731
    return {
        "record_version": RECORD_VERSION,
        "status": status,
        "dataset": group("dataset"),
        "model": group("model"),
        "norm": group("norm"),
        "batch_size": batch_size,
        "seed": cfg.get("seed"),
        "optimizer": group("optim"),
        "lr": lr,
        "steps": steps,
        "epochs": last.get("epoch", 0.0),
        "samples_seen": samples,
        "primary_metric": m,
        "higher_is_better": spec.higher_is_better,
        "final": final,
        f"best_val_{m}": best_val,
        "selected_step": at_best["step"] if at_best else None,
        f"selected_test_{m}": at_best.get(f"test_{m}") if at_best else None,
        spec.target_key: target,
        "steps_to_target": reached["step"] if reached else None,
        "time_to_target_s": reached["train_time_s"] if reached else None,
        "generalization_gap": gap,
        "wall_time_s": wall,
        "train_time_s": train_time,
        "samples_per_s": samples / train_time if train_time > 0 else None,
        "num_params": num_params,
        "error": error,
        "env": env or {},
        "ended_at": now() if status in ("completed", "diverged", "failed") else None,
        **(extra or {}),
    }


def now() -> str:
    """The time, to the second, in UTC (ISO 8601): what records say a run started and ended at."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def record_failure(run_dir: Path, config: dict, message: str) -> None:
    """Record a job that failed before it trained (a refused config in a sweep, a job that died at
    start-up): its config and a ``failed`` summary with ``message``, unless it has a summary."""
    if (Path(run_dir) / SUMMARY_FILE).exists():
        return
    write_config(run_dir, config)
    write_summary(run_dir, build_summary(config, "failed", message))


def upgrade(kind: str, record: dict) -> dict:
    """``record`` (a ``summary``, a ``checkpoint``, or a ``config`` as plain data) as this normbench
    writes it: a record of an earlier version gains what that version did not record. A summary or
    checkpoint of a later version raises ``ValueError`` (a newer normbench wrote it).

    ``config.yaml`` is the resolved config and carries no version of its own (a key there would
    change the run's identity): what version 1 lacked is filled in wherever it is missing.
    """
    if kind == "config":
        dataset = record.get("dataset")
        if isinstance(dataset, dict):
            added = {**_ADDED_DATASET_KEYS[None], **_ADDED_DATASET_KEYS.get(dataset.get("name"), {})}
            record = {**record, "dataset": {**added, **dataset}}
        norm = record.get("norm")
        if not isinstance(norm, dict) or "batch_dependent" in norm:
            return record
        known = _V1_BATCH_DEPENDENT.get(norm.get("name"))
        if norm.get("name") == "weight":  # mean-only batch norm after weight norm takes the batch mean
            known = bool(norm.get("mean_only", False))
        return record if known is None else {**record, "norm": {**norm, "batch_dependent": known}}
    if kind not in RECORD_KINDS:
        raise ValueError(f"no record kind {kind!r}; one of {', '.join(RECORD_KINDS)}")
    version = record.get("record_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= RECORD_VERSION:
        raise ValueError(f"its record_version {version!r} is not one this normbench reads (1 to {RECORD_VERSION}); "
                         "a newer normbench wrote it, or it was edited")
    if version == RECORD_VERSION:
        return record
    record = dict(record)
    if kind == "summary" and version < 2:  # version 1's records of failed jobs named no metric
        record.setdefault("primary_metric", metrics.primary_of(record.get("final") or {}))
        m = record["primary_metric"]
        record.setdefault("higher_is_better", metrics.metric(m).higher_is_better if m in metrics.PRIMARY else True)
    if kind == "summary":  # before version 3: no end time, no git commit or start time recorded
        record.setdefault("ended_at", None)
        record["env"] = {"git": None, "started_at": None, **(record.get("env") or {})}
    elif "source" not in record and "shuffle_rng" in record:  # a checkpoint before batch sources had state
        record["source"] = {"shuffle_rng": record["shuffle_rng"], "perm": (record.get("state") or {}).get("perm")}
    record["record_version"] = RECORD_VERSION
    return record


def read_summary(run_dir: Path) -> dict:
    """The run's summary, upgraded to this version; raises ``FileNotFoundError`` or ``ValueError``
    (corrupt JSON, or a record version this normbench does not read)."""
    with open(Path(run_dir) / SUMMARY_FILE, encoding="utf-8") as f:
        summary = json.load(f)
    if not isinstance(summary, dict):
        raise ValueError(f"{run_dir / SUMMARY_FILE} does not hold a JSON object")
    try:
        return upgrade("summary", summary)
    except ValueError as exc:
        raise ValueError(f"{run_dir / SUMMARY_FILE}: {exc}") from None


def write_config(run_dir: Path, config: dict) -> None:
    """Write the resolved config (plain data) as ``config.yaml``, atomically."""
    from omegaconf import OmegaConf

    atomic_write_text(Path(run_dir) / CONFIG_FILE, OmegaConf.to_yaml(config))


def read_config(run_dir: Path) -> dict:
    """The run's resolved config as plain data, upgraded to this version ({} when there is none).

    Read with ``yaml.safe_load``: a ``!!python`` tag in an untrusted directory never runs. Raises
    ``ValueError`` (or yaml's ``YAMLError``) for a file that does not hold a mapping.
    """
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{CONFIG_FILE} does not hold a mapping")
    return upgrade("config", data)


def write_metrics(run_dir: Path, records: Iterable[dict]) -> None:
    """Rewrite ``metrics.jsonl`` atomically with ``records`` (used when a run resumes)."""
    text = "".join(json.dumps(_json_safe(r)) + "\n" for r in records)
    atomic_write_text(Path(run_dir) / METRICS_FILE, text)


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(_json_safe(record)) + "\n")
        f.flush()


def read_metrics(run_dir: Path, strict: bool = False) -> list[dict]:
    """The evaluation records of ``metrics.jsonl``.

    A torn last line (a writer killed mid-line: no newline at its end) is skipped. Any other line
    that is not a JSON object is skipped too, unless ``strict``: then it raises ``ValueError``
    naming the line, because the history a run resumes from must not lose evaluations silently.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    records = []
    # The text after the last newline is "" or a torn line: left out.
    for number, line in enumerate(text.split("\n")[:-1], 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif strict:
            raise ValueError(f"{path} line {number} is not an evaluation record (damaged or edited)")
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
    config) is removed again, with the parents it created, so a refused run leaves nothing behind.
    Under torchrun only rank 0 writes the run directory, so only rank 0 takes the lock.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None
        self.created: list[Path] = []  # the directories the lock made, deepest first

    def __enter__(self) -> RunLock:
        import fcntl
        import socket

        self.created = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
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
            for path in self.created:  # a parent another run has written into stays
                try:
                    path.rmdir()
                except OSError:
                    break
        os.close(self.fd)  # releases the lock
        self.fd = None


def remove_stale_temporaries(run_dir: Path) -> list[str]:
    """Remove the temporary files of writes that a killed process left half done; return their
    names. Call it only while holding the :class:`RunLock`: then no write is in progress."""
    ours = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE, EXAMPLES_FILE)
    removed = []
    for path in Path(run_dir).glob(".*.tmp"):
        if path.is_file() and path.name[1:].startswith(ours):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def write_checkpoint(run_dir: Path, data: bytes, step: int, evaluated_steps: list[int] | None = None) -> None:
    """Write a checkpoint's bytes with their digest, keeping the previous checkpoint.

    The order makes every crash point recoverable, and ``checkpoint.pt`` always exists once
    written: the current checkpoint and its digest are copied to the previous ones (a hard link
    where the file system has them), the new digest is written, then the new bytes, each write
    atomic. A checkpoint is trusted only if its bytes hash to a recorded digest
    (:func:`verified_checkpoint`), so a torn or flipped file is never used, and the previous one
    is there to resume from.
    """
    current, previous = Path(run_dir) / CHECKPOINT_FILE, Path(run_dir) / PREVIOUS_CHECKPOINT_FILE
    if current.exists():
        tmp = previous.with_name(f".{previous.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(current, tmp)
        except OSError:
            shutil.copyfile(current, tmp)
        os.replace(tmp, previous)
        if _digest_path(current).exists():
            atomic_write_bytes(_digest_path(previous), _digest_path(current).read_bytes())
    digest = {"sha256": hashlib.sha256(data).hexdigest(), "step": step, "evaluated_steps": evaluated_steps}
    atomic_write_text(_digest_path(current), json.dumps(digest) + "\n")
    atomic_write_bytes(current, data)


def write_examples(run_dir: Path, arrays: dict, step: int) -> None:
    """Write the final evaluation per test example: ``arrays`` maps a name to a 1-D array with one
    entry per test example, in the test set's order (classification: ``correct``, stored as packed
    bits, and ``loss`` in nats; language modelling: each test segment's ``loss``, its mean nats per
    character). Its digest (SHA-256 and ``step``) is written first, then the bytes, each atomic."""
    import io

    import numpy as np

    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    stored = {k: (np.packbits(v.astype(bool)) if k == "correct" else v.astype(np.float32)) for k, v in arrays.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, count=np.int64(len(next(iter(arrays.values())))), **stored)
    data = buffer.getvalue()
    path = Path(run_dir) / EXAMPLES_FILE
    atomic_write_text(_digest_path(path), json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "step": step}) + "\n")
    atomic_write_bytes(path, data)


def read_examples(run_dir: Path, step: int | None = None) -> dict | None:
    """The per-example arrays :func:`write_examples` wrote (``correct`` as booleans), or None when
    the file is missing, its bytes do not match its digest, or it was written at another step than
    ``step`` (the run's final step). Never unpickles: ``allow_pickle=False``."""
    import numpy as np

    path = Path(run_dir) / EXAMPLES_FILE
    try:
        digest = json.loads(_digest_path(path).read_text(encoding="utf-8"))
        if _file_sha256(path) != digest["sha256"] or (step is not None and digest.get("step") != step):
            return None
        with np.load(path, allow_pickle=False) as f:
            count = int(f["count"])
            out = {k: f[k] for k in f.files if k != "count"}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if "correct" in out:
        out["correct"] = np.unpackbits(out["correct"])[:count].astype(bool)
    return out if all(len(v) == count for v in out.values()) else None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_checkpoint(run_dir: Path, max_step: int | None = None) -> tuple[Path | None, dict | None, list[str]]:
    """The newest checkpoint whose bytes match a recorded digest: ``(path, digest, rejected)``;
    the digest record holds the checkpoint's ``step`` and the ``evaluated_steps`` before it.

    ``rejected`` names the checkpoint files present that match no digest (damaged, modified, or
    written by a normbench that kept no digests); ``path`` is None when none verifies.
    ``max_step``: only a checkpoint of that step or earlier (a pack's members resume at one step).
    """
    run_dir = Path(run_dir)
    names = (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE)
    digests = {}
    for name in names:
        try:
            digest = json.loads(_digest_path(run_dir / name).read_text(encoding="utf-8"))
            digests[str(digest["sha256"])] = digest
        except (OSError, ValueError, KeyError, TypeError):
            continue
    rejected = []
    for name in names:
        path = run_dir / name
        if path.exists():
            digest = digests.get(_file_sha256(path))
            if digest is not None and max_step is not None and not digest.get("step", 0) <= max_step:
                continue
            if digest is not None:
                return path, digest, rejected
            rejected.append(name)
    return None, None, rejected


def write_sweep_outcome(sweep_dir: Path, counts: dict[str, int]) -> None:
    atomic_write_text(Path(sweep_dir) / OUTCOME_FILE, json.dumps(counts) + "\n")


def read_sweep_outcome(sweep_dir: Path) -> dict[str, int] | None:
    """The counts the sweep wrote at its end; None if it wrote none (it did not get there)."""
    try:
        counts = json.loads((Path(sweep_dir) / OUTCOME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return counts if isinstance(counts, dict) else None


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
