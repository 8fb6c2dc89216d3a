"""What a run resumes from, and when a finished run may be skipped: the run directory as
untrusted input.

A run directory may come from a colleague, a shared cluster file system or a crashed job. So a
checkpoint is loaded without running code from it (``weights_only=True``), only after its bytes
matched their digest (:func:`normbench.records.verified_checkpoint`), and a ``completed``
summary lets a relaunch skip the run only when the verified checkpoint and the metrics history
stand behind it.
"""

from __future__ import annotations

import io
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from normbench import records
from normbench.cli.sweeps import nuisance_keys
from normbench.errors import ConfigError

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


@dataclass
class LoopState:
    """Where the loop stands; with the model and optimizer, all a checkpoint needs."""

    step: int = 0
    epoch: int = 0          # completed epochs
    position: int = 0       # batches taken from the current epoch's permutation
    wall_time_s: float = 0.0
    train_time_s: float = 0.0
    # Training (train-mode) loss since the last evaluation: the sum of the logged intervals, and
    # the not yet logged sum and the step it starts after (so a resumed run continues exactly).
    interval_loss: float = 0.0
    interval_steps: int = 0
    pending_loss: float = 0.0
    logged_at: int = 0
    history: list = field(default_factory=list)

    def checkpoint(self) -> dict:
        state = {k: getattr(self, k) for k in ("step", "epoch", "position", "wall_time_s", "train_time_s",
                                                "interval_loss", "interval_steps", "pending_loss", "logged_at")}
        state["evaluated_steps"] = [r["step"] for r in self.history]  # what the metrics file must hold
        return state


# -- a trainer's checkpoint: what it resumes from and what it saves ------------------------


def load_checkpoint(self) -> int | None:
    """Resume the trainer ``self`` from the newest verified checkpoint of its run directory, if
    it has one; return its step.

    A checkpoint whose bytes do not match their SHA-256 digest is never used: the previous
    one is, which replays to the same result (training is deterministic), or the run is
    refused with advice when none verifies.
    """
    path, _, rejected = records.verified_checkpoint(self.run_dir)
    if path is None and rejected:
        raise ConfigError(f"{self.run_dir}: {' and '.join(rejected)} fail their SHA-256 check (damaged, modified, "
                          "or written without a digest), so normbench will not resume from them; move them away "
                          "to train this run from the start")
    if path is None:
        return None
    if rejected and self.ctx.main:
        print(f"normbench: warning: {' and '.join(rejected)} fails its SHA-256 check; resuming from {path.name}",
              file=sys.stderr, flush=True)
    ckpt = read_checkpoint(path)
    if without(ckpt["config"], RESUMABLE_KEYS) != without(self.config, RESUMABLE_KEYS):
        raise ConfigError(
            f"{self.run_dir} holds a run with another config; resume it with the same overrides "
            f"or choose a new directory (hydra.run.dir=...)"
        )
    self.model.load_state_dict(ckpt["model"])
    self.optimizer.load_state_dict(ckpt["optimizer"])
    if self.scheduler is not None:
        self.scheduler.load_state_dict(ckpt["scheduler"])
    s = ckpt["state"]
    source_state = ckpt["source"] if "source" in ckpt else {"shuffle_rng": ckpt["shuffle_rng"], "perm": s.get("perm")}
    self.source.load_state_dict(source_state)
    torch.set_rng_state(ckpt["torch_rng"])
    if self.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
    self.state = LoopState(**{k: v for k, v in s.items() if k in LoopState.__dataclass_fields__})
    self.state.history = verified_history(self, s.get("evaluated_steps"))
    if self.ctx.main:
        records.write_metrics(self.run_dir, self.state.history)
    return self.state.step

def verified_history(self, evaluated_steps: list | None) -> list[dict]:
    """The metrics history up to the checkpoint, checked against the evaluations it made.

    Evaluations made after the checkpoint are dropped (they will be made again). A lost or
    damaged evaluation before it cannot be recomputed (the weights of that step are gone), and
    best_test_acc and steps_to_target would then be computed from what is left: such a run is
    refused, not resumed into a record that silently differs.
    """
    path = self.run_dir / records.METRICS_FILE
    try:
        history = records.read_metrics(self.run_dir, strict=True)
    except ValueError as exc:
        raise ConfigError(f"{exc}; the evaluations cannot be recomputed, so normbench will not resume this "
                          "run: move its directory away to train it again") from None
    history = [r for r in history if isinstance(r.get("step"), int) and r["step"] <= self.state.step]
    if evaluated_steps is not None and [r["step"] for r in history] != list(evaluated_steps):
        raise ConfigError(f"{path} holds {len(history)} of the {len(evaluated_steps)} evaluations made up to step "
                          f"{self.state.step} (missing, truncated or edited); they cannot be recomputed, so "
                          "normbench will not resume this run: move its directory away to train it again")
    return history

def save_checkpoint(self) -> None:
    """Checkpoint the trainer ``self`` (rank 0): weights, optimizer, schedule, batch order, RNGs, loop state."""
    if not self.ctx.main:
        return
    s = self.state
    ckpt = {
        "config": self.config,
        "model": self.model.state_dict(),  # the plain module: no "module." or "_orig_mod." prefixes
        "optimizer": self.optimizer.state_dict(),
        "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        "source": self.source.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        "state": s.checkpoint(),
    }
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    records.write_checkpoint(self.run_dir, buffer.getvalue(), s.step, ckpt["state"]["evaluated_steps"])
