"""The run cache: a completed run is reused, not trained again, by any run that computes the same.

A run's identity is the SHA-256 of its resolved config without the keys that do not change what
it computes (:func:`normbench.config.identity.nuisance_keys`), plus the normbench version that
trains it. When a run completes, the index (``$NORMBENCH_RUN_INDEX``, by default
``~/.cache/normbench/runs``; ``none`` turns it off) maps its identity to its run directory. A new
run (an empty directory) with the same identity, in any sweep or claim, copies that run's records
instead of training, once they verify: the source's recorded config has the identity, its summary
says completed, and its checkpoint's digest and metrics history stand behind the summary
(:func:`~normbench.training.checkpoints.record_backs`). An index entry is only a hint: a moved,
edited or forged source is never served. ``trainer.reuse=false`` trains anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig

import normbench
from normbench import records
from normbench.config.identity import config_dict, nuisance_keys, without

#: What a reused run's summary adds: the directory its records were copied from.
REUSED_KEY = "reused_from"
_COPIED = (records.METRICS_FILE, records.CHECKPOINT_FILE, records.CHECKPOINT_FILE + records.DIGEST_SUFFIX)
_COPIED_IF_PRESENT = (records.EXAMPLES_FILE, records.EXAMPLES_FILE + records.DIGEST_SUFFIX)


def index_dir() -> Path | None:
    """The index directory, or None when the cache is off (``NORMBENCH_RUN_INDEX=none``)."""
    value = os.environ.get("NORMBENCH_RUN_INDEX")
    if value is not None and value.strip().lower() in ("", "none", "off"):
        return None
    if value:
        return Path(value)
    from normbench.data.base import cache_dir

    return cache_dir() / "runs"


def identity(config: dict) -> str:
    """The identity of a resolved config (plain data, as config.yaml holds it)."""
    what = without(config, nuisance_keys())
    text = json.dumps({"normbench": normbench.__version__, "config": what}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _entry(digest: str) -> Path | None:
    root = index_dir()
    return root / f"{digest}.json" if root is not None else None


def remember(cfg: DictConfig, run_dir: Path, summary: dict) -> None:
    """Index a completed run (best effort: a cache that cannot be written costs only time)."""
    if summary.get("status") != "completed" or not cfg.trainer.get("reuse", True):
        return
    digest = identity(config_dict(cfg))
    entry = _entry(digest)
    if entry is None:
        return
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        records.atomic_write_text(entry, json.dumps({"identity": digest, "run_dir": str(Path(run_dir).absolute())}))
    except OSError:
        pass


def source_of(cfg: DictConfig, run_dir: Path | None = None) -> tuple[Path, dict] | None:
    """The verified completed run with ``cfg``'s identity and its summary, or None."""
    from normbench.training.checkpoints import record_backs

    digest = identity(config_dict(cfg))
    entry = _entry(digest)
    if entry is None or not cfg.trainer.get("reuse", True):
        return None
    try:
        source = Path(json.loads(entry.read_text(encoding="utf-8"))["run_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if run_dir is not None and source.absolute() == Path(run_dir).absolute():
        return None
    try:
        if any((source / name).is_symlink() or not (source / name).is_file()
               for name in (*_COPIED, records.CONFIG_FILE, records.SUMMARY_FILE)):
            return None
        if identity(records.read_config(source)) != digest:
            return None
        summary = records.read_summary(source)
    except Exception:  # unreadable, not YAML, not JSON: not served
        return None
    if summary.get("status") != "completed" or not record_backs(summary, source):
        return None
    return source, summary


def reuse(cfg: DictConfig, run_dir: Path) -> dict | None:
    """Fill the new run directory ``run_dir`` from a verified identical run, and return its summary;
    None (and nothing written) when there is none, or ``run_dir`` already holds records."""
    run_dir = Path(run_dir)
    if any((run_dir / name).exists() for name in (records.CONFIG_FILE, records.SUMMARY_FILE, records.CHECKPOINT_FILE)):
        return None
    found = source_of(cfg, run_dir)
    if found is None:
        return None
    source, summary = found
    run_dir.mkdir(parents=True, exist_ok=True)
    present = [name for name in _COPIED_IF_PRESENT
               if (source / name).is_file() and not (source / name).is_symlink()]
    for name in (*_COPIED, *present):
        tmp = run_dir / f".{name}.tmp"
        shutil.copyfile(source / name, tmp)
        os.replace(tmp, run_dir / name)
    records.write_config(run_dir, config_dict(cfg))
    summary = {**summary, REUSED_KEY: str(source.absolute())}
    records.write_summary(run_dir, summary)
    print(f"reused: the same run completed in {source} (trainer.reuse=false trains it again)", flush=True)
    return summary
