"""What a run resumes from, and when a finished run may be skipped: the run directory as
untrusted input.

A run directory may come from a colleague, a shared cluster file system or a crashed job. So a
checkpoint is loaded without running code from it (``weights_only=True``), only after its bytes
matched their digest (:func:`normbench.records.verified_checkpoint`), and a ``completed``
summary lets a relaunch skip the run only when the verified checkpoint and the metrics history
stand behind it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from normbench import records
from normbench.errors import ConfigError
from normbench.sweeps import nuisance_keys

# A run may resume under other values of the keys that do not change what it computes, and
# with another step budget (to extend a finished run).
BUDGET_KEYS = ("trainer.max_steps", "trainer.epochs")
RESUMABLE_KEYS = (*nuisance_keys(), *BUDGET_KEYS)


def config_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain data, without Hydra's own node."""
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("hydra", None)
    return data


def without(data: dict, dotted_keys) -> dict:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for key in dotted_keys:
        node, *rest = key.split(".")
        if rest and isinstance(data.get(node), dict):
            data[node].pop(rest[0], None)
        elif not rest:
            data.pop(node, None)
    return data


def read_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``, loaded without running code from it.

    A run directory is untrusted input (a colleague's, a shared cluster file system): a pickle
    can carry any callable, so only tensors and plain containers are accepted
    (``weights_only=True``), which is all a checkpoint normbench writes holds.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise ConfigError(f"{path} holds code{what}, not only tensors and plain data, so normbench refuses to "
                          "load it; move it away to train this run from the start") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read as a checkpoint ({type(exc).__name__}); it is damaged or "
                          "truncated: move it away to train this run from the start") from None


def previous_summary(run_dir: Path) -> dict:
    try:
        return records.read_summary(run_dir)
    except (OSError, ValueError):
        return {}


def finished_summary(cfg: DictConfig, run_dir: str | Path) -> dict | None:
    """The summary of the run in ``run_dir`` if it already finished with this config, else None.

    Cheap (reads the small files and hashes the checkpoint, builds nothing), so a relaunched
    sweep skips finished runs quickly. Finished means completed within the config's step budget,
    or diverged. A ``completed`` summary counts only if a verified checkpoint and the metrics
    history stand behind it (same final step, same final test metric): a forged or stale
    summary is not skipped, and the run is resumed and summarized again from what verifies.
    """
    run_dir = Path(run_dir)
    previous = previous_summary(run_dir)
    if previous.get("status") not in ("completed", "diverged"):
        return None
    try:
        recorded = OmegaConf.to_container(OmegaConf.load(run_dir / records.CONFIG_FILE), resolve=True)
    except Exception:  # missing, or not YAML (yaml's errors are not ValueErrors): not skipped
        return None
    if without(recorded, RESUMABLE_KEYS) != without(config_dict(cfg), RESUMABLE_KEYS):
        return None  # Trainer says why
    if previous["status"] == "completed":
        t = cfg.trainer
        done = (previous.get("steps", 0) >= t.max_steps if t.max_steps
                else previous.get("epochs", 0) >= t.epochs - 1e-9)
        if not done or not record_backs(previous, run_dir):
            return None
    return previous


def record_backs(summary: dict, run_dir: Path) -> bool:
    """Whether the verified checkpoint and the metrics history stand behind ``summary``."""
    path, digest, _ = records.verified_checkpoint(run_dir)
    try:
        history = records.read_metrics(run_dir, strict=True)
    except ValueError:
        return False
    if path is None or digest.get("step") != summary.get("steps") or not history:
        return False
    if [r.get("step") for r in history] != digest.get("evaluated_steps"):
        return False
    m = summary.get("primary_metric", "acc")
    return history[-1].get(f"test_{m}") == (summary.get("final") or {}).get(f"test_{m}")
