"""The training loop: steps, evaluation, checkpoint and resume, divergence.

``train(cfg, run_dir)`` is the Python entry point: it takes a composed config (the one
``normbench run`` composes, or ``compose_config``'s) and returns the run's summary dict.

Speed: small datasets live on the training device; each epoch shuffles them once with one
gather, a step takes a contiguous slice (a view), and augmentation runs batched on the device;
image folders (ImageNet) come through a DataLoader with workers (see :mod:`normbench.training.batches`).
The loop makes no host-device synchronisation per step: losses are summed on the device and
read every ``trainer.log_every`` steps, where the divergence check happens too.

GPU options: ``trainer.amp`` (bf16 autocast), ``trainer.channels_last``, ``trainer.compile``
(``torch.compile``; checkpoints hold the plain module's weights). Under ``torchrun`` the model is
wrapped in DistributedDataParallel (:mod:`normbench.training.distributed`); rank 0 alone evaluates and
writes the run directory.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from normbench import records
from normbench.config.validation import validate
from normbench.data import DATASETS, TensorData, load_dataset
from normbench.errors import ConfigError
from normbench.models import build_model, check_model_reads, norm_options
from normbench.norms import get_norm
from normbench.training import distributed
from normbench.training.batches import make_source
from normbench.training.checkpoints import (
    LoopState,
    config_dict,
    finished_summary,
    load_checkpoint,
    previous_summary,
    save_checkpoint,
)
from normbench.training.environment import environment, resolve_device, set_threads
from normbench.training.evaluation import evaluate
from normbench.training.loggers import make_logger
from normbench.training.optim import build_optimizer, build_schedule
from normbench.training.population import batch_statistics_layers, values_per_statistic
from normbench.training.preemption import Interrupted, StopRequest
from normbench.training.progress import make_progress
from normbench.training.tasks import task_for


class Diverged(Exception):
    """The training loss became NaN or infinite."""


class Trainer:
    """One run: data, model and optimizer built from ``cfg``, recorded into ``run_dir``."""

    def __init__(self, cfg: DictConfig, run_dir: Path, ctx: distributed.Context | None = None):
        validate(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.ctx = ctx or distributed.Context()
        self.device = resolve_device(cfg.trainer.device, self.ctx)
        self._configure_kernels()
        torch.manual_seed(cfg.seed)  # before the data and the model: both may draw from it
        self._load_data()
        self._build_model()
        self.steps_per_epoch = self.source.steps_per_epoch
        self.total_steps = cfg.trainer.max_steps or cfg.trainer.epochs * self.steps_per_epoch
        self.eval_every = cfg.trainer.eval_every or self.steps_per_epoch
        self.optimizer, self.lr = build_optimizer(cfg.optim, self.model, cfg.batch_size)
        self.scheduler = build_schedule(cfg.optim, self.optimizer, self.total_steps, self.steps_per_epoch)
        self.state = LoopState()
        self.num_params = sum(p.numel() for p in self.model.parameters())
        threads_from = set_threads(cfg.trainer.get("threads", "auto"), self.device, self.num_params)
        self.env = {**environment(self.device, cfg, self.ctx), "threads_from": threads_from}
        if self.data.source:
            self.env["dataset_source"] = self.data.source
        self.config = config_dict(cfg)
        self.logger = make_logger(cfg, self.run_dir, self.config) if self.ctx.main else _NoLogger()
        self.train_model: nn.Module = self.model  # DDP- and compile-wrapped in fit()
        self.resumed_from = load_checkpoint(self)
        if self.ctx.rank > 0:  # dropout and noise differ between ranks, as their data does
            torch.manual_seed(cfg.seed * 1_000_003 + self.ctx.rank * 7_919 + self.state.step)

    # -- assembly -----------------------------------------------------------------------------

    def _configure_kernels(self) -> None:
        """Determinism, cuDNN autotuning and the memory format and precision options."""
        t = self.cfg.trainer
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

    def _load_data(self) -> None:
        """The dataset (on the device when it fits), its task and the batch source."""
        cfg = self.cfg
        if cfg.dataset.name in DATASETS:  # before loading: reading or generating a set can take a while
            check_model_reads(cfg.model.name, cfg.dataset.name, DATASETS[cfg.dataset.name].kind)
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

    def _build_model(self) -> None:
        """The model with its norm, checked against the batch; which statistics score it."""
        cfg = self.cfg
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

    # -- the loop -----------------------------------------------------------------------------

    def summary(self, status: str, error: str | None = None) -> dict:
        summary = records.summarize(self.cfg, self.state, status, self.env, self.num_params, self.lr, error,
                                    self.task.metric)
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

    def _record(self, progress) -> None:
        """Evaluate, record and checkpoint (rank 0; the other ranks wait and learn whether it diverged)."""
        train_loss = None
        if self.ctx.main:
            record = evaluate(self)
            self.state.history.append(record)
            records.append_metrics(self.run_dir, record)
            self.logger.log(record)
            progress.evaluation(record)
            train_loss = record["train_loss"]
        train_loss = distributed.broadcast_object(self.ctx, train_loss)
        if not math.isfinite(train_loss):
            raise Diverged(f"training-set loss became {train_loss} at step {self.state.step}")
        if self.ctx.main:
            save_checkpoint(self)
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
        cfg, s = self.cfg, self.state
        self._start()
        self._wrap_model()
        progress = make_progress(cfg.trainer.progress if self.ctx.main else "none", self.total_steps, s.step,
                                 cfg.batch_size)
        self.model.train()
        self._start_wall = time.perf_counter() - s.wall_time_s
        with progress, StopRequest() as stop:
            if self.resumed_from is None:
                self._record(progress)
            batches = self.source.batches(s.epoch, s.position)
            loss_sum = torch.full((), s.pending_loss, device=self.device)
            clip = cfg.optim.grad_clip_norm
            model, optimizer, scheduler, task = self.train_model, self.optimizer, self.scheduler, self.task
            self._segment_start = time.perf_counter()
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
                evaluating = s.step % self.eval_every == 0 or s.step == self.total_steps
                if evaluating or s.step % cfg.trainer.log_every == 0:
                    self._log(loss_sum, progress, evaluating)
                # A Python flag: no sync. Across processes the ranks could see it at different
                # steps, so there the run relies on its evaluation checkpoints instead.
                if stop.signum is not None and s.step < self.total_steps and not self.ctx.enabled:
                    self._stop(stop, loss_sum)
        return self.summary("completed")

    def _start(self) -> None:
        """Write the config (rank 0, once every rank has read the run directory); then either the
        norm's data-dependent init (a new run) or the line saying where the run resumes."""
        distributed.barrier(self.ctx)
        if self.ctx.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            records.atomic_write_text(self.run_dir / records.CONFIG_FILE, OmegaConf.to_yaml(self.config))
        if self.resumed_from is None:
            if self.ctx.main:
                records.write_metrics(self.run_dir, [])
            if self.norm.data_init is not None:  # e.g. weight norm's data-dependent init
                with self._autocast():
                    self.norm.data_init(self.model, self._prepare(self.source.first_batch()),
                                        norm_options(self.cfg.norm))
        elif self.ctx.main:
            print(f"resuming from step {self.state.step} of {self.total_steps} ({self.run_dir})", flush=True)

    def _log(self, loss_sum: torch.Tensor, progress, evaluating: bool) -> None:
        """The one sync per interval (and, across processes, the mean over ranks): the interval's
        mean loss, the divergence check, the clocks, and the evaluation when one is due."""
        s = self.state
        raw = distributed.mean(self.ctx, loss_sum).item()
        mean_loss = raw / (s.step - s.logged_at)
        s.interval_loss += raw
        s.interval_steps += s.step - s.logged_at
        loss_sum.zero_()
        s.logged_at = s.step
        s.pending_loss = 0.0
        self._clock()
        if not math.isfinite(mean_loss):
            raise Diverged(f"training loss became {mean_loss} by step {s.step}")
        progress.step(s.step, mean_loss)
        if evaluating:
            self._record(progress)
            s.wall_time_s = time.perf_counter() - self._start_wall
        self._segment_start = time.perf_counter()

    def _clock(self) -> None:
        """Add the training segment since the last log to ``train_time_s``; update ``wall_time_s``."""
        now = time.perf_counter()
        self.state.train_time_s += now - self._segment_start
        self.state.wall_time_s = now - self._start_wall

    def _stop(self, stop: StopRequest, loss_sum: torch.Tensor) -> None:
        """Checkpoint the current step on a stop signal and raise :class:`Interrupted`."""
        s = self.state
        self._clock()
        s.pending_loss = float(loss_sum)
        save_checkpoint(self)
        records.write_summary(self.run_dir, self.summary("running"))
        raise Interrupted(stop.signum, s.step, stop.previous_handler())


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
    validate(cfg)  # before the lock makes the run directory: bad input leaves nothing behind
    if not ctx.enabled:
        with records.RunLock(run_dir):  # one writer per run directory
            return _train(cfg, Path(run_dir), ctx)
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
