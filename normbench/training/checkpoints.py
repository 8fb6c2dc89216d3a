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
from omegaconf import DictConfig

from normbench import records
from normbench.config.identity import config_dict, differences, same_run
from normbench.errors import ConfigError


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
        recorded = records.read_config(run_dir)
    except Exception:  # missing, or not YAML (yaml's errors are not ValueErrors): not skipped
        return None
    if not same_run(recorded, config_dict(cfg)):
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


# -- a run's checkpoints: what it saves, verifies and restores -------------------------------


class Checkpoints:
    """The checkpoints of one run directory: what a run resumes from and what it saves.

    A checkpoint holds the run's config, the state of each of its ``parts`` (anything with
    ``state_dict``/``load_state_dict``: the model, optimizer, schedule and batch source), the
    RNGs and the loop state. It is saved with its SHA-256 digest and restored only after its
    bytes match it (:func:`normbench.records.verified_checkpoint`); the metrics history it
    resumes with is checked against the evaluations it made. ``writer``: whether this process
    writes the run directory (rank 0 under torchrun); the others only restore.
    """

    def __init__(self, run_dir: Path, config: dict, device: torch.device, writer: bool = True):
        self.run_dir, self.config, self.device, self.writer = Path(run_dir), config, device, writer

    def restore(self, parts: dict, max_step: int | None = None) -> LoopState | None:
        """Load the newest verified checkpoint into ``parts`` and the RNGs; return its loop state
        with the verified history, or None when the directory holds no checkpoint (a new run).

        A checkpoint whose bytes do not match their SHA-256 digest is never used: the previous
        one is, which replays to the same result (training is deterministic), or the run is
        refused with advice when none verifies. ``max_step``: the newest of that step or earlier.
        """
        path, _, rejected = records.verified_checkpoint(self.run_dir, max_step)
        if path is None and rejected:
            raise ConfigError(f"{self.run_dir}: {' and '.join(rejected)} fail their SHA-256 check (damaged, modified, "
                              "or written without a digest), so normbench will not resume from them; move them away "
                              "to train this run from the start")
        if path is None:
            return None
        if rejected and self.writer:
            print(f"normbench: warning: {' and '.join(rejected)} fails its SHA-256 check; resuming from {path.name}",
                  file=sys.stderr, flush=True)
        ckpt = read_checkpoint(path)
        try:
            ckpt = records.upgrade("checkpoint", ckpt)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}; move it away to train this run from the start") from None
        recorded = records.upgrade("config", ckpt["config"])
        if not same_run(recorded, self.config):
            found = "; ".join(differences(recorded, self.config)) or "its resolved config differs"
            raise ConfigError(
                f"{self.run_dir} holds a run with another config ({found}); resume it with the same overrides "
                f"or choose a new directory (hydra.run.dir=...)"
            )
        for name, part in parts.items():
            if part is not None:
                part.load_state_dict(ckpt[name])
        torch.set_rng_state(ckpt["torch_rng"])
        if self.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        s = ckpt["state"]
        state = LoopState(**{k: v for k, v in s.items() if k in LoopState.__dataclass_fields__})
        state.history = self._verified_history(state.step, s.get("evaluated_steps"))
        if self.writer:
            records.write_metrics(self.run_dir, state.history)
        return state

    def _verified_history(self, step: int, evaluated_steps: list | None) -> list[dict]:
        """The metrics history up to the checkpoint's ``step``, checked against the evaluations it made.

        Evaluations made after the checkpoint are dropped (they will be made again). A lost or
        damaged evaluation before it cannot be recomputed (the weights of that step are gone), and
        best_val_acc, selected_test_acc and steps_to_target would then be computed from what is left: such a run is
        refused, not resumed into a record that silently differs.
        """
        path = self.run_dir / records.METRICS_FILE
        try:
            history = records.read_metrics(self.run_dir, strict=True)
        except ValueError as exc:
            raise ConfigError(f"{exc}; the evaluations cannot be recomputed, so normbench will not resume this "
                              "run: move its directory away to train it again") from None
        history = [r for r in history if isinstance(r.get("step"), int) and r["step"] <= step]
        if evaluated_steps is not None and [r["step"] for r in history] != list(evaluated_steps):
            raise ConfigError(f"{path} holds {len(history)} of the {len(evaluated_steps)} evaluations made up to step "
                              f"{step} (missing, truncated or edited); they cannot be recomputed, so "
                              "normbench will not resume this run: move its directory away to train it again")
        return history

    def save(self, state: LoopState, parts: dict) -> None:
        """Checkpoint ``parts`` (their ``state_dict``; None stays None), the RNGs and the loop state."""
        if not self.writer:
            return
        ckpt = {
            "record_version": records.RECORD_VERSION,
            "config": self.config,
            **{name: part.state_dict() if part is not None else None for name, part in parts.items()},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "state": state.checkpoint(),
        }
        buffer = io.BytesIO()
        torch.save(ckpt, buffer)
        records.write_checkpoint(self.run_dir, buffer.getvalue(), state.step, ckpt["state"]["evaluated_steps"])
