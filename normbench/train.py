"""The training loop: steps, evaluation, checkpoint and resume, divergence.

``train(cfg, run_dir)`` is the Python entry point: it takes a composed config (the one
``normbench run`` composes, or ``compose_config``'s) and returns the run's summary dict.

Speed: small datasets live on the training device; each epoch shuffles them once with one
gather, a step takes a contiguous slice (a view), and augmentation runs batched on the device;
image folders (ImageNet) come through a DataLoader with workers (see :mod:`normbench.batches`).
The loop makes no host-device synchronisation per step: losses are summed on the device and
read every ``trainer.log_every`` steps, where the divergence check happens too.

GPU options: ``trainer.amp`` (bf16 autocast), ``trainer.channels_last``, ``trainer.compile``
(``torch.compile``; checkpoints hold the plain module's weights). Under ``torchrun`` the model is
wrapped in DistributedDataParallel (:mod:`normbench.distributed`); rank 0 alone evaluates and
writes the run directory.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import normbench
from normbench import distributed, records
from normbench.batches import make_source
from normbench.data import DATASET_KINDS, TensorData, load_dataset
from normbench.errors import ConfigError
from normbench.loggers import make_logger
from normbench.models import build_model, check_model_reads, norm_options
from normbench.norms import get_norm
from normbench.optim import build_optimizer, build_schedule
from normbench.population import MODES as POPULATION_MODES
from normbench.population import batch_statistics_layers, exact_statistics, values_per_statistic
from normbench.preemption import Interrupted, StopRequest
from normbench.progress import make_progress
from normbench.resume import (
    RESUMABLE_KEYS,
    config_dict,
    finished_summary,
    previous_summary,
    read_checkpoint,
    without,
)
from normbench.tasks import Classification, LanguageModelling, task_for


class Diverged(Exception):
    """The training loss became NaN or infinite."""


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


def resolve_device(name: str, ctx: distributed.Context | None = None) -> torch.device:
    """The device of ``trainer.device``; under torchrun, CUDA means this process's ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is available; use trainer.device=cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"trainer.device={name!r} is not a device; use auto, cpu or cuda")
    if name == "cuda" and ctx is not None and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return torch.device(name)


def validate(cfg: DictConfig) -> None:
    """Check the values that need no data or model; raise ConfigError naming the first bad one."""

    def positive_int(key, value, allow_none=False):
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}={value} must be a positive integer")

    positive_int("batch_size", cfg.batch_size)
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise ConfigError(f"seed={cfg.seed} must be an integer")
    t = cfg.trainer
    positive_int("trainer.max_steps", t.max_steps, allow_none=True)
    positive_int("trainer.epochs", t.epochs)
    positive_int("trainer.eval_every", t.eval_every, allow_none=True)
    positive_int("trainer.eval_batch_size", t.eval_batch_size)
    positive_int("trainer.train_eval_samples", t.train_eval_samples)
    positive_int("trainer.log_every", t.log_every)
    if t.target_acc is not None and not 0 <= t.target_acc <= 1:
        raise ConfigError(f"trainer.target_acc={t.target_acc} is not a fraction; use a value in [0, 1]")
    target_bpc = t.get("target_bpc")
    if target_bpc is not None and (isinstance(target_bpc, bool) or not isinstance(target_bpc, (int, float))
                                   or not target_bpc > 0):
        raise ConfigError(f"trainer.target_bpc={target_bpc} must be a positive number of bits per character")
    for key in ("amp", "channels_last", "compile", "deterministic"):
        if not isinstance(t.get(key, False), bool):
            raise ConfigError(f"trainer.{key}={t.get(key)} must be true or false")
    modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if t.get("compile_mode", "default") not in modes:
        raise ConfigError(f"trainer.compile_mode={t.get('compile_mode')} is not one of {', '.join(modes)}")
    population = cfg.norm.get("population", "running")
    if population not in POPULATION_MODES:
        raise ConfigError(f"norm.population={population} is not one of {', '.join(POPULATION_MODES)} (the statistics "
                          "batch norm uses at evaluation)")
    positive_int("norm.population_samples", cfg.norm.get("population_samples"), allow_none=True)
    if not isinstance(cfg.norm.get("also_exact", False), bool):
        raise ConfigError(f"norm.also_exact={cfg.norm.get('also_exact')} must be true or false")
    norm = get_norm(cfg.norm.name)
    if norm.check is not None:
        norm.check(norm_options(cfg.norm), cfg.batch_size)
    if t.progress not in ("auto", "bar", "lines", "none"):
        raise ConfigError(f"trainer.progress={t.progress} is not one of auto, bar, lines, none")
    for key in ("lr", "grad_clip_norm"):
        value = cfg.optim.get(key)
        if value is None and key == "grad_clip_norm":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"optim.{key}={value} must be a positive number")


def environment(device: torch.device, cfg: DictConfig, ctx: distributed.Context | None = None) -> dict:
    env = {
        "normbench": normbench.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "amp": "bf16" if cfg.trainer.get("amp") else None,
        "channels_last": bool(cfg.trainer.get("channels_last")),
        "compile": bool(cfg.trainer.get("compile")),
        "compile_mode": cfg.trainer.get("compile_mode", "default") if cfg.trainer.get("compile") else None,
        "world_size": ctx.world if ctx else 1,
        "distributed_backend": ("nccl" if device.type == "cuda" else "gloo") if ctx and ctx.enabled else None,
        "sync_batch_norm": bool(ctx and ctx.enabled and cfg.norm.get("sync", False)),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
    return env


def summarize(cfg: DictConfig, state: LoopState, status: str, env: dict, num_params: int,
              lr: float, error: str | None = None,
              task: Classification | LanguageModelling | None = None) -> dict:
    """The summary.json dict, derived from the evaluation history and the loop state.

    The metric keys follow the task: ``train_acc``/``test_acc``/``best_test_acc``/``target_acc``
    for classification, ``train_bpc``/``test_bpc``/``best_test_bpc``/``target_bpc`` (lower is
    better) for language modelling; ``final`` also holds the extra test sets' values
    (``test_bpc_len200``, ...).
    """
    task = task or Classification()
    m = task.metric
    last = state.history[-1] if state.history else {}
    final = {k: last.get(k) for k in ("train_loss", f"train_{m}", "test_loss", f"test_{m}", "step_loss")}
    final.update({k: v for k, v in last.items() if k.startswith(("test_loss_", f"test_{m}_"))})
    tests = [r[f"test_{m}"] for r in state.history if r.get(f"test_{m}") is not None]
    best = (max if task.higher_is_better else min)(tests) if tests else None
    target = cfg.trainer.get(task.target_key)
    reached = next((r for r in state.history if task.reached(r.get(f"test_{m}"), target)), None)
    gap = None
    if final[f"train_{m}"] is not None and final[f"test_{m}"] is not None:
        gap = task.gap(final[f"train_{m}"], final[f"test_{m}"])
    samples = state.step * cfg.batch_size
    return {
        "status": status,
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "norm": cfg.norm.name,
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "optimizer": cfg.optim.name,
        "lr": lr,
        "steps": state.step,
        "epochs": last.get("epoch", 0.0),
        "samples_seen": samples,
        "primary_metric": m,
        "higher_is_better": task.higher_is_better,
        "final": final,
        f"best_test_{m}": best,
        task.target_key: target,
        "steps_to_target": reached["step"] if reached else None,
        "time_to_target_s": reached["train_time_s"] if reached else None,
        "generalization_gap": gap,
        "wall_time_s": state.wall_time_s,
        "train_time_s": state.train_time_s,
        "samples_per_s": samples / state.train_time_s if state.train_time_s > 0 else None,
        "num_params": num_params,
        "error": error,
        "env": env,
    }


class Trainer:
    """One run: data, model and optimizer built from ``cfg``, recorded into ``run_dir``."""

    def __init__(self, cfg: DictConfig, run_dir: Path, ctx: distributed.Context | None = None):
        validate(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.ctx = ctx or distributed.Context()
        self.device = resolve_device(cfg.trainer.device, self.ctx)
        t = cfg.trainer
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
        self.amp = bool(t.get("amp", False))
        self.channels_last = bool(t.get("channels_last", False))
        if self.amp and self.device.type == "cpu" and self.ctx.main:
            print("normbench: warning: trainer.amp=true on the CPU: bf16 autocast works there but is slow",
                  file=sys.stderr, flush=True)
        torch.manual_seed(cfg.seed)
        if cfg.dataset.name in DATASET_KINDS:  # before loading: reading or generating a set can take a while
            check_model_reads(cfg.model.name, cfg.dataset.name, DATASET_KINDS[cfg.dataset.name])
        data = load_dataset(cfg.dataset)
        self.data = data.to(self.device) if isinstance(data, TensorData) else data
        self.task = task_for(self.data)
        self.source = make_source(self.data, cfg.batch_size, cfg.seed, self.device, self.ctx.rank, self.ctx.world)
        n_train = self.source.num_train // self.ctx.world
        if cfg.batch_size > n_train:
            per = f" per device ({self.ctx.world} devices)" if self.ctx.enabled else ""
            raise ConfigError(f"batch_size={cfg.batch_size} exceeds the {n_train} training samples{per} of "
                              f"dataset={self.data.name}")
        shape = self.data.input_shape  # a dict of shapes for several inputs (Inputs)
        if self.channels_last and (isinstance(shape, dict) or len(shape) != 3):
            raise ConfigError(f"trainer.channels_last=true needs image data (N, C, H, W); dataset={self.data.name} "
                              f"has inputs of shape {shape if isinstance(shape, dict) else tuple(shape)}")
        self.model = build_model(cfg.model, cfg.norm, self.data).to(self.device)
        # Which statistics score the run: None when no layer uses batch statistics.
        self.eval_statistics = cfg.norm.get("population", "running") if batch_statistics_layers(self.model) else None
        self.norm = get_norm(cfg.norm.name)
        if cfg.batch_size < 2 and (self.eval_statistics or cfg.norm.get("batch_dependent", False)):
            raise ConfigError(
                f"norm={cfg.norm.name} computes statistics over the batch and needs batch_size>=2, got "
                f"batch_size={cfg.batch_size}; use a larger batch or norm=group, layer or instance"
            )
        if self.ctx.enabled and cfg.norm.get("sync", False):
            if self.device.type != "cuda":
                raise ConfigError("norm.sync=true (SyncBatchNorm) needs CUDA devices; on the CPU use norm.sync=false "
                                  "(per-device batch statistics)")
            if self.eval_statistics == "exact":
                raise ConfigError("norm.population=exact with norm.sync=true is not supported (rank 0 computes the "
                                  "statistics alone, and SyncBatchNorm would wait for the other ranks); use "
                                  "norm.population=running or norm.sync=false")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # The mechanism behind BN's small-batch penalty, for the record (one eval-mode pass).
        self.values_per_statistic = (values_per_statistic(self.model, self.source.first_batch(), self.forward)
                                     if self.eval_statistics else None)
        self.steps_per_epoch = self.source.steps_per_epoch
        self.total_steps = cfg.trainer.max_steps or cfg.trainer.epochs * self.steps_per_epoch
        self.eval_every = cfg.trainer.eval_every or self.steps_per_epoch
        self.optimizer, self.lr = build_optimizer(cfg.optim, self.model, cfg.batch_size)
        self.scheduler = build_schedule(cfg.optim, self.optimizer, self.total_steps, self.steps_per_epoch)
        self.state = LoopState()
        self.env = environment(self.device, cfg, self.ctx)
        if self.data.source:
            self.env["dataset_source"] = self.data.source
        self.num_params = sum(p.numel() for p in self.model.parameters())
        self.config = config_dict(cfg)
        self.logger = make_logger(cfg, self.run_dir, self.config) if self.ctx.main else _NoLogger()
        self.train_model: nn.Module = self.model  # DDP- and compile-wrapped in fit()
        self.resumed_from = self._load_checkpoint()
        if self.ctx.rank > 0:  # dropout and noise differ between ranks, as their data does
            torch.manual_seed(cfg.seed * 1_000_003 + self.ctx.rank * 7_919 + self.state.step)

    # -- checkpoints ------------------------------------------------------------------------

    def _load_checkpoint(self) -> int | None:
        """Resume from the newest verified checkpoint if the run directory has one; return its step.

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
        self.state.history = self._verified_history(s.get("evaluated_steps"))
        if self.ctx.main:
            records.write_metrics(self.run_dir, self.state.history)
        return self.state.step

    def _verified_history(self, evaluated_steps: list | None) -> list[dict]:
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

    def _save_checkpoint(self) -> None:
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

    def summary(self, status: str, error: str | None = None) -> dict:
        summary = summarize(self.cfg, self.state, status, self.env, self.num_params, self.lr, error, self.task)
        summary["eval_statistics"] = self.eval_statistics
        summary["values_per_batch_statistic"] = self.values_per_statistic
        summary["sequence_length"] = getattr(self.model, "max_steps", None)  # recurrent models
        summary.update(self.data.reference)  # the dataset's reference values (CLEVR: the question-only prior)
        return summary

    # -- the loop ---------------------------------------------------------------------------

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``model(x)`` with the run's autocast and memory format (training and evaluation)."""
        with self._autocast():
            return model(self._prepare(x))

    def _exact_statistics(self):
        """A context in which the model holds exact population statistics (see population.py)."""
        batches = self.source.population_batches(self.cfg.norm.get("population_samples"),
                                                 self.cfg.trainer.eval_batch_size)
        return exact_statistics(self.model, batches, self.forward)

    def _evaluate(self) -> dict:
        t, m = self.cfg.trainer, self.task.metric
        exact = self.eval_statistics == "exact"
        with self._exact_statistics() if exact else contextlib.nullcontext():
            results = self.source.evaluate(self.task, self.model, t.eval_batch_size, t.train_eval_samples,
                                           self.forward)
            probe = self._probe()
        if self.eval_statistics == "running" and self.cfg.norm.get("also_exact", False):
            # The same weights scored both ways: how much of the error is the running estimate.
            with self._exact_statistics():
                # one training sample: only the test score is kept
                results["exact"] = self.source.evaluate(self.task, self.model, t.eval_batch_size, 1,
                                                        self.forward)["test"]
        (train_loss, train_metric), (test_loss, test_metric) = results.pop("train"), results.pop("test")
        extra = {}
        for label, (loss, metric) in results.items():
            extra[f"test_loss_{label}"], extra[f"test_{m}_{label}"] = loss, metric
        extra.update(probe)
        s = self.state
        if s.interval_steps:  # the loss the steps themselves saw (train mode: batch statistics)
            extra["step_loss"] = s.interval_loss / s.interval_steps
            s.interval_loss, s.interval_steps = 0.0, 0
        return {
            "step": s.step,
            "epoch": s.step / self.steps_per_epoch,
            "samples_seen": s.step * self.cfg.batch_size,
            "wall_time_s": s.wall_time_s,
            "train_time_s": s.train_time_s,
            "train_loss": train_loss,
            f"train_{m}": train_metric,
            "test_loss": test_loss,
            f"test_{m}": test_metric,
            **extra,
            "lr": self.optimizer.param_groups[0]["lr"],
        }

    @torch.no_grad()
    def _probe(self) -> dict:
        """The model's optional ``probe(x) -> dict`` on a fixed test batch, in eval mode.

        Models that expose internals worth following over training (the MLP: percentiles of a
        last-layer pre-activation, as in the BN paper's Figure 1) define it; others do not.
        """
        probe = getattr(self.model, "probe", None)
        if not callable(probe):
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            x = self.source.test_inputs(self.cfg.trainer.eval_batch_size)
            return {k: float(v) for k, v in probe(x).items()}
        finally:
            self.model.train(was_training)

    def _record(self, progress) -> None:
        """Evaluate, record and checkpoint (rank 0; the other ranks wait and learn whether it diverged)."""
        train_loss = None
        if self.ctx.main:
            record = self._evaluate()
            self.state.history.append(record)
            records.append_metrics(self.run_dir, record)
            self.logger.log(record)
            progress.evaluation(record)
            train_loss = record["train_loss"]
        train_loss = distributed.broadcast_object(self.ctx, train_loss)
        if not math.isfinite(train_loss):
            raise Diverged(f"training-set loss became {train_loss} at step {self.state.step}")
        if self.ctx.main:
            self._save_checkpoint()
            records.write_summary(self.run_dir, self.summary("running"))
        distributed.barrier(self.ctx)

    def _wrap_model(self) -> None:
        """The module the training steps call: DDP across processes, then torch.compile."""
        model = self.model
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)  # broadcasts rank 0's weights
        if self.cfg.trainer.get("compile", False):
            mode = self.cfg.trainer.get("compile_mode", "default")
            model = torch.compile(model, mode=None if mode == "default" else mode)
        self.train_model = model

    def fit(self) -> dict:
        """Train to the step budget and return the summary; raises Diverged on a NaN loss."""
        cfg, s, main = self.cfg, self.state, self.ctx.main
        distributed.barrier(self.ctx)  # every rank has read the run directory before rank 0 writes it
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            records.atomic_write_text(self.run_dir / records.CONFIG_FILE, OmegaConf.to_yaml(self.config))
        if self.resumed_from is None:
            if main:
                records.write_metrics(self.run_dir, [])
            if self.norm.data_init is not None:  # e.g. weight norm's data-dependent init
                with self._autocast():
                    self.norm.data_init(self.model, self._prepare(self.source.first_batch()), norm_options(cfg.norm))
        elif main:
            print(f"resuming from step {s.step} of {self.total_steps} ({self.run_dir})", flush=True)
        self._wrap_model()
        progress = make_progress(cfg.trainer.progress if main else "none", self.total_steps, s.step, cfg.batch_size)
        self.model.train()
        start_wall = time.perf_counter() - s.wall_time_s
        with progress, StopRequest() as stop:
            if self.resumed_from is None:
                self._record(progress)
            batches = self.source.batches(s.epoch, s.position)
            loss_sum = torch.full((), s.pending_loss, device=self.device)
            logged_at = s.logged_at
            clip = cfg.optim.grad_clip_norm
            model, optimizer, scheduler, task = self.train_model, self.optimizer, self.scheduler, self.task
            segment_start = time.perf_counter()
            while s.step < self.total_steps:
                x, y = next(batches)
                loss = task.loss(self.forward(model, x).float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    nn.utils.clip_grad_norm_(self.model.parameters(), clip)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += loss.detach()
                s.step += 1
                s.position += 1
                if s.position == self.steps_per_epoch:
                    s.epoch, s.position = s.epoch + 1, 0
                    self.source.end_epoch()
                    batches = self.source.batches(s.epoch, 0)
                logging = s.step % cfg.trainer.log_every == 0
                evaluating = s.step % self.eval_every == 0 or s.step == self.total_steps
                if logging or evaluating:
                    # The one sync per interval (and, across processes, the mean over ranks).
                    raw = distributed.mean(self.ctx, loss_sum).item()
                    mean_loss = raw / (s.step - logged_at)
                    s.interval_loss += raw
                    s.interval_steps += s.step - logged_at
                    loss_sum.zero_()
                    logged_at = s.logged_at = s.step
                    s.pending_loss = 0.0
                    now = time.perf_counter()
                    s.train_time_s += now - segment_start
                    s.wall_time_s = now - start_wall
                    if not math.isfinite(mean_loss):
                        raise Diverged(f"training loss became {mean_loss} by step {s.step}")
                    progress.step(s.step, mean_loss)
                    if evaluating:
                        self._record(progress)
                        s.wall_time_s = time.perf_counter() - start_wall
                    segment_start = time.perf_counter()
                # A Python flag: no sync. Across processes the ranks could see it at different
                # steps, so there the run relies on its evaluation checkpoints instead.
                if stop.signum is not None and s.step < self.total_steps and not self.ctx.enabled:
                    now = time.perf_counter()
                    s.train_time_s += now - segment_start
                    s.wall_time_s = now - start_wall
                    s.pending_loss = float(loss_sum)
                    self._save_checkpoint()
                    records.write_summary(self.run_dir, self.summary("running"))
                    raise Interrupted(stop.signum, s.step, stop.previous_handler())
        return self.summary("completed")


class _NoLogger:
    """Ranks other than 0 log nothing."""

    def log(self, record: dict) -> None:
        pass

    def finish(self, summary: dict, interrupted: bool = False) -> None:
        pass


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train from a composed config into ``run_dir`` and return the summary dict.

    Resumes from ``run_dir``'s checkpoint when it has one (the same config is required, the
    step budget may grow); a run that already finished its budget is returned as it is.
    Bad configuration raises :class:`ConfigError` before anything is written. A diverged run
    returns a summary with status ``diverged``; any other failure is recorded with status
    ``failed`` and re-raised.

    On the preemption signal (SIGUSR2, as Slurm sends it through submitit) the run saves a
    checkpoint at the next step boundary, keeps status ``running`` and hands the signal to the
    handler that was there before (submitit's: requeue the job and exit); without one it raises
    :class:`Interrupted`. Running the same config again resumes from that step.
    """
    ctx = distributed.from_env()
    if not ctx.enabled:
        with records.RunLock(run_dir):  # one writer per run directory
            return _train(cfg, Path(run_dir), ctx)
    validate(cfg)
    distributed.init(ctx, resolve_device(cfg.trainer.device, ctx))
    # Every rank reads and resumes rank 0's run directory; only rank 0 writes it (and locks it).
    run_dir = Path(distributed.broadcast_object(ctx, str(run_dir)))
    try:
        with records.RunLock(run_dir) if ctx.main else contextlib.nullcontext():
            return _train(cfg, run_dir, ctx)
    finally:
        distributed.shutdown()


def _train(cfg: DictConfig, run_dir: Path, ctx: distributed.Context) -> dict:
    if ctx.main:  # the lock is ours: a temporary file here is a killed writer's
        records.remove_stale_temporaries(run_dir)
    previous = finished_summary(cfg, run_dir)
    if previous is not None:
        return previous
    trainer = Trainer(cfg, Path(run_dir), ctx)
    if trainer.resumed_from is not None:
        previous = previous_summary(trainer.run_dir)
        if previous.get("status") == "diverged":
            return previous
        if trainer.state.step >= trainer.total_steps:  # finished: record again from what verified
            summary = trainer.summary("completed")
            if ctx.main:
                records.atomic_write_text(trainer.run_dir / records.CONFIG_FILE, OmegaConf.to_yaml(trainer.config))
                records.write_summary(trainer.run_dir, summary)
            return summary
    try:
        summary = trainer.fit()
    except Diverged as exc:  # the record keeps the last finite evaluation, and says where it diverged
        summary = trainer.summary("diverged", str(exc))
        summary["diverged_at_step"] = trainer.state.step
    except Interrupted as exc:
        trainer.logger.finish(trainer.summary("running"), interrupted=True)
        if callable(exc.previous_handler):
            exc.previous_handler(exc.signum, None)  # submitit: requeue this job, then exit
        raise
    except KeyboardInterrupt:  # Ctrl-C outside the loop's handler: the run stays resumable
        trainer.logger.finish(trainer.summary("running"), interrupted=True)
        raise
    except BaseException as exc:
        failed = trainer.summary("failed", f"{type(exc).__name__}: {exc}")
        if ctx.main:
            try:
                records.write_summary(trainer.run_dir, failed)
            except OSError as write_error:  # a full disk: say so, since the record cannot
                print(f"normbench: error: could not record the failure in {trainer.run_dir} ({write_error}); "
                      f"its summary still says 'running'", file=sys.stderr, flush=True)
        trainer.logger.finish(failed)
        raise
    if ctx.main:
        records.write_summary(trainer.run_dir, summary)
    trainer.logger.finish(summary)
    dump = os.environ.get("NORMBENCH_DUMP_RANK_STATE")
    if dump:  # a debugging and test hook: each process's final weights, to compare ranks
        torch.save(trainer.model.state_dict(), f"{dump}{ctx.rank}.pt")
    return summary
