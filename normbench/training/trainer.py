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
from omegaconf import DictConfig
from torch import nn

from normbench import records
from normbench.config.identity import config_dict
from normbench.config.validation import check_rules, import_plugins
from normbench.data import DATASETS, TensorData, load_dataset
from normbench.errors import ConfigError
from normbench.models import build_model, check_model_options, check_model_reads, norm_options
from normbench.norms import get_norm
from normbench.training import cache, distributed
from normbench.training.batches import make_source
from normbench.training.checkpoints import (
    Checkpoints,
    LoopState,
    finished_summary,
    previous_summary,
)
from normbench.training.environment import environment, resolve_device, set_threads
from normbench.training.evaluation import Evaluator
from normbench.training.loggers import make_logger
from normbench.training.optim import build_optimizer, build_schedule
from normbench.training.population import batch_statistics_layers, values_per_statistic
from normbench.training.preemption import Interrupted, StopRequest
from normbench.training.progress import make_progress
from normbench.training.tasks import task_for


class Diverged(Exception):
    """The training loss became NaN or infinite."""


class Forward:
    """``forward(model, x)``: the model's call with the run's bf16 autocast (``trainer.amp``) and
    memory format (``trainer.channels_last``), the same in training and evaluation."""

    def __init__(self, device: torch.device, amp: bool = False, channels_last: bool = False):
        self.device, self.amp, self.channels_last = device, amp, channels_last

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return model(self.prepare(x))


class Trainer:
    """One run: data, model and optimizer built from ``cfg`` (validated: :func:`validate`),
    recorded into ``run_dir``.

    Its collaborators do the rest: the batch source gives the batches, the :class:`Evaluator`
    scores the model, the :class:`Checkpoints` save and restore the run, and
    :func:`normbench.records.build_summary` shapes its summary.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, ctx: distributed.Context | None = None,
                 max_step: int | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.ctx = ctx or distributed.Context()
        self.device = resolve_device(cfg.trainer.device, self.ctx)
        self.forward = self._configure_kernels()
        torch.manual_seed(cfg.seed)  # before the data and the model: both may draw from it
        data = self._load_data()
        self.model, eval_statistics, values = self._build_model(data)
        self.total_steps = cfg.trainer.max_steps or cfg.trainer.epochs * self.source.steps_per_epoch
        self.optimizer, lr = build_optimizer(cfg.optim, self.model, cfg.batch_size)
        self.scheduler = build_schedule(cfg.optim, self.optimizer, self.total_steps, self.source.steps_per_epoch)
        num_params = sum(p.numel() for p in self.model.parameters())
        threads_from = set_threads(cfg.trainer.get("threads", "auto"), self.device, num_params)
        env = {**environment(self.device, cfg, self.ctx), "threads_from": threads_from}
        if data.source:
            env["dataset_source"] = data.source
        # What every summary of this run says besides its loop state.
        self.identity = {"env": env, "num_params": num_params, "lr": lr, "metric": self.task.metric, "extra": {
            "eval_statistics": eval_statistics,
            "values_per_batch_statistic": values,
            "sequence_length": getattr(self.model, "max_steps", None),  # recurrent models
            **data.reference,  # the dataset's reference values (CLEVR: the question-only prior)
        }}
        self.evaluator = Evaluator(self.source, self.task, self.forward, eval_statistics, cfg)
        config = config_dict(cfg)
        self.checkpoints = Checkpoints(self.run_dir, config, self.device, writer=self.ctx.main)
        self.logger = make_logger(cfg, self.run_dir, config) if self.ctx.main else _NoLogger()
        restored = self.checkpoints.restore(self._parts(), max_step)
        self.resumed = restored is not None
        self.state = restored or LoopState()
        if self.ctx.rank > 0:  # dropout and noise differ between ranks, as their data does
            torch.manual_seed(cfg.seed * 1_000_003 + self.ctx.rank * 7_919 + self.state.step)

    # -- assembly -----------------------------------------------------------------------------

    def _configure_kernels(self) -> Forward:
        """Determinism, cuDNN autotuning, and the forward pass's memory format and precision."""
        t = self.cfg.trainer
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
        forward = Forward(self.device, bool(t.get("amp", False)), bool(t.get("channels_last", False)))
        if forward.amp and self.device.type == "cpu" and self.ctx.main:
            print("normbench: warning: trainer.amp=true on the CPU: bf16 autocast works there but is slow",
                  file=sys.stderr, flush=True)
        return forward

    def _load_data(self):
        """The dataset (on the device when it fits), its task and the batch source."""
        cfg = self.cfg
        if cfg.dataset.name in DATASETS:  # before loading: reading or generating a set can take a while
            check_model_reads(cfg.model.name, cfg.dataset.name, DATASETS[cfg.dataset.name].kind)
        data = load_dataset(cfg.dataset, cfg.seed)
        data = data.to(self.device) if isinstance(data, TensorData) else data
        self.task = task_for(data)
        self.source = make_source(data, cfg.batch_size, cfg.seed, self.device, self.ctx.rank, self.ctx.world)
        n_train = self.source.num_train // self.ctx.world
        if cfg.batch_size > n_train:
            per = f" per device ({self.ctx.world} devices)" if self.ctx.enabled else ""
            raise ConfigError(f"batch_size={cfg.batch_size} exceeds the {n_train} training samples{per} of "
                              f"dataset={data.name}")
        shape = data.input_shape  # a dict of shapes for several inputs (Inputs)
        if self.forward.channels_last and (isinstance(shape, dict) or len(shape) != 3):
            raise ConfigError(f"trainer.channels_last=true needs image data (N, C, H, W); dataset={data.name} "
                              f"has inputs of shape {shape if isinstance(shape, dict) else tuple(shape)}")
        return data

    def _build_model(self, data) -> tuple[nn.Module, str | None, dict | None]:
        """The model with its norm, checked against the batch; which population statistics score it
        (None when no layer uses batch statistics) and how many values each batch statistic sees."""
        cfg = self.cfg
        model = build_model(cfg.model, cfg.norm, data).to(self.device)
        eval_statistics = cfg.norm.get("population", "running") if batch_statistics_layers(model) else None
        if cfg.batch_size < 2 and (eval_statistics or cfg.norm.get("batch_dependent", False)):
            raise ConfigError(
                f"norm={cfg.norm.name} computes statistics over the batch and needs batch_size>=2, got "
                f"batch_size={cfg.batch_size}; use a larger batch or norm=group, layer or instance"
            )
        if self.ctx.enabled and cfg.norm.get("sync", False):
            if self.device.type != "cuda":
                raise ConfigError("norm.sync=true (SyncBatchNorm) needs CUDA devices; on the CPU use norm.sync=false "
                                  "(per-device batch statistics)")
            if eval_statistics == "precise":
                raise ConfigError("norm.population=precise with norm.sync=true is not supported (rank 0 computes the "
                                  "statistics alone in train mode, and SyncBatchNorm would wait for the other "
                                  "ranks); use norm.population=exact, running, or norm.sync=false")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if self.forward.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # The mechanism behind BN's small-batch penalty, for the record (one eval-mode pass).
        values = values_per_statistic(model, self.source.first_batch(), self.forward) if eval_statistics else None
        return model, eval_statistics, values

    def _parts(self) -> dict:
        """What a checkpoint holds besides the RNGs and the loop state."""
        # The plain module: no "module." or "_orig_mod." prefixes from DDP or torch.compile.
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "source": self.source}

    def summary(self, status: str, error: str | None = None) -> dict:
        return records.build_summary(self.cfg, status, error, state=self.state, **self.identity)

    # -- the loop ---------------------------------------------------------------------------

    def _record(self, progress) -> None:
        """Evaluate, record and checkpoint (rank 0; the other ranks wait and learn whether it diverged)."""
        train_loss = None
        if self.ctx.main:
            final = self.state.step == self.total_steps
            record, examples = self.evaluator.record(self.model, self.state, self.optimizer.param_groups[0]["lr"],
                                                     examples=final)
            self.state.history.append(record)
            records.append_metrics(self.run_dir, record)
            if examples is not None:  # the final evaluation, per test example (paired comparisons)
                records.write_examples(self.run_dir, {k: v.numpy() for k, v in examples.items()}, self.state.step)
            self.logger.log(record)
            progress.evaluation(record)
            train_loss = record["train_loss"]
        train_loss = distributed.broadcast_object(self.ctx, train_loss)
        if not math.isfinite(train_loss):
            raise Diverged(f"training-set loss became {train_loss} at step {self.state.step}")
        if self.ctx.main:
            self.checkpoints.save(self.state, self._parts())
            records.write_summary(self.run_dir, self.summary("running"))
        distributed.barrier(self.ctx)

    def _wrap_model(self) -> nn.Module:
        """The module the training steps call: DDP across processes, then torch.compile."""
        model = self.model
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)  # broadcasts rank 0's weights
        if self.cfg.trainer.get("compile", False):
            mode = self.cfg.trainer.get("compile_mode", "default")
            model = torch.compile(model, mode=None if mode == "default" else mode)
        return model

    def fit(self) -> dict:
        """Train to the step budget and return the summary; raises Diverged on a NaN loss."""
        cfg, s = self.cfg, self.state
        self._start()
        model = self._wrap_model()
        progress = make_progress(cfg.trainer.progress if self.ctx.main else "none", self.total_steps, s.step,
                                 cfg.batch_size)
        self.model.train()
        clock = Clock(s)
        eval_every = cfg.trainer.eval_every or self.source.steps_per_epoch
        with progress, StopRequest() as stop:
            if not self.resumed:
                self._record(progress)
            batches = self.source.batches(s.epoch, s.position)
            loss_sum = torch.full((), s.pending_loss, device=self.device)
            clip = cfg.optim.grad_clip_norm
            optimizer, scheduler, task, forward = self.optimizer, self.scheduler, self.task, self.forward
            clock.segment()
            while s.step < self.total_steps:
                x, y = next(batches)
                loss = task.loss(forward(model, x).float(), y)
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
                if s.position == self.source.steps_per_epoch:
                    s.epoch, s.position = s.epoch + 1, 0
                    self.source.end_epoch()
                    batches = self.source.batches(s.epoch, 0)
                evaluating = s.step % eval_every == 0 or s.step == self.total_steps
                if evaluating or s.step % cfg.trainer.log_every == 0:
                    self._log(loss_sum, progress, evaluating, clock)
                # A Python flag: no sync. Across processes the ranks could see it at different
                # steps, so there the run relies on its evaluation checkpoints instead.
                if stop.signum is not None and s.step < self.total_steps and not self.ctx.enabled:
                    self._stop(stop, loss_sum, clock)
        return self.summary("completed")

    def _start(self) -> None:
        """Write the config (rank 0, once every rank has read the run directory); then either the
        norm's data-dependent init (a new run) or the line saying where the run resumes."""
        distributed.barrier(self.ctx)
        if self.ctx.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            records.write_config(self.run_dir, self.checkpoints.config)
        if not self.resumed:
            if self.ctx.main:
                records.write_metrics(self.run_dir, [])
            norm = get_norm(self.cfg.norm.name)
            if norm.data_init is not None:  # e.g. weight norm's data-dependent init
                with self.forward.autocast():
                    norm.data_init(self.model, self.forward.prepare(self.source.first_batch()),
                                   norm_options(self.cfg.norm))
        elif self.ctx.main:
            print(f"resuming from step {self.state.step} of {self.total_steps} ({self.run_dir})", flush=True)

    def _log(self, loss_sum: torch.Tensor, progress, evaluating: bool, clock: Clock) -> None:
        """The one sync per interval (and, across processes, the mean over ranks): the interval's
        mean loss, the divergence check, the clocks, and the evaluation when one is due."""
        raw = distributed.mean(self.ctx, loss_sum).item()
        loss_sum.zero_()
        self.interval(raw, progress, evaluating, clock)

    def interval(self, raw: float, progress, evaluating: bool, clock: Clock) -> None:
        """The end of a logging interval whose step losses summed to ``raw`` (read from the device):
        the loop state, the divergence check, the progress line, the evaluation when one is due."""
        s = self.state
        mean_loss = raw / (s.step - s.logged_at)
        s.interval_loss += raw
        s.interval_steps += s.step - s.logged_at
        s.logged_at = s.step
        s.pending_loss = 0.0
        clock.tick()
        if not math.isfinite(mean_loss):
            raise Diverged(f"training loss became {mean_loss} by step {s.step}")
        progress.step(s.step, mean_loss)
        if evaluating:
            self._record(progress)
            clock.wall()
        clock.segment()

    def _stop(self, stop: StopRequest, loss_sum: torch.Tensor, clock: Clock) -> None:
        """Checkpoint the current step on a stop signal and raise :class:`Interrupted`."""
        self.save_pending(float(loss_sum), clock)
        raise Interrupted(stop.signum, self.state.step, stop.previous_handler())

    def save_pending(self, pending_loss: float, clock: Clock) -> None:
        """Checkpoint the current step between evaluations (``pending_loss``: the steps' loss sum
        not yet logged), with a ``running`` summary."""
        clock.tick()
        self.state.pending_loss = pending_loss
        self.checkpoints.save(self.state, self._parts())
        records.write_summary(self.run_dir, self.summary("running"))

    def diverged(self, exc: Diverged) -> dict:
        """The summary of a run that diverged: the last finite evaluation, and where it diverged."""
        summary = self.summary("diverged", str(exc))
        summary["diverged_at_step"] = self.state.step
        return summary


class Clock:
    """The loop's two clocks in its state: ``wall_time_s`` since the run started (across resumes)
    and ``train_time_s``, the training segments between logs (evaluation and checkpoints excluded)."""

    def __init__(self, state: LoopState):
        self.state = state
        self.start = time.perf_counter() - state.wall_time_s
        self.segment_start = time.perf_counter()

    def segment(self) -> None:
        """A training segment starts now."""
        self.segment_start = time.perf_counter()

    def tick(self) -> None:
        """Add the segment since the last log to ``train_time_s``; update ``wall_time_s``."""
        now = time.perf_counter()
        self.state.train_time_s += now - self.segment_start
        self.state.wall_time_s = now - self.start

    def wall(self) -> None:
        """``wall_time_s`` now (after an evaluation)."""
        self.state.wall_time_s = time.perf_counter() - self.start


class _NoLogger:
    """Ranks other than 0 log nothing."""

    def log(self, record: dict) -> None:
        pass

    def finish(self, summary: dict, interrupted: bool = False) -> None:
        pass


def validate(cfg: DictConfig) -> None:
    """Import the run's ``plugins``, then check ``cfg`` against :mod:`normbench.config.schema`, the
    model's options against its class, and the norm's own check (e.g. ghost batch norm's virtual
    batch against the batch size); raise :class:`ConfigError` naming the first bad value."""
    import_plugins(cfg.get("plugins") or [])
    check_rules(cfg)
    check_model_options(cfg.model)
    norm = get_norm(cfg.norm.name)
    if norm.check is not None:
        norm.check(norm_options(cfg.norm), cfg.batch_size)


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
    validate(cfg)  # once per run, before the lock makes the run directory: bad input leaves nothing behind
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
    finished, trainer = prepare(cfg, run_dir, ctx)
    if finished is not None:
        return finished
    return fit_run(trainer, ctx)


def prepare(cfg: DictConfig, run_dir: Path, ctx: distributed.Context,
            max_step: int | None = None) -> tuple[dict | None, Trainer | None]:
    """The run's summary when it has nothing left to train (finished, diverged, or reused from an
    identical run: :mod:`normbench.training.cache`), else its Trainer, restored (from the newest
    checkpoint of step ``max_step`` or earlier, when given). The caller holds the run directory's
    lock."""
    if ctx.main:  # the lock is ours: a temporary file here is a killed writer's
        records.remove_stale_temporaries(run_dir)
    previous = finished_summary(cfg, run_dir)
    if previous is not None:
        return previous, None
    if ctx.main and not ctx.enabled:
        reused = cache.reuse(cfg, run_dir)
        if reused is not None:
            return reused, None
    trainer = Trainer(cfg, Path(run_dir), ctx, max_step)
    if trainer.resumed:
        previous = previous_summary(trainer.run_dir)
        if previous.get("status") == "diverged":
            return previous, None
        if trainer.state.step >= trainer.total_steps:  # finished: record again from what verified
            summary = trainer.summary("completed")
            if ctx.main:
                records.write_config(trainer.run_dir, trainer.checkpoints.config)
                records.write_summary(trainer.run_dir, summary)
                cache.remember(cfg, trainer.run_dir, summary)
            return summary, None
    return None, trainer


def fit_run(trainer: Trainer, ctx: distributed.Context) -> dict:
    try:
        summary = trainer.fit()
    except Diverged as exc:  # the record keeps the last finite evaluation, and says where it diverged
        summary = trainer.diverged(exc)
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
        cache.remember(trainer.cfg, trainer.run_dir, summary)
    trainer.logger.finish(summary)
    dump = os.environ.get("NORMBENCH_DUMP_RANK_STATE")
    if dump:  # a debugging and test hook: each process's final weights, to compare ranks
        torch.save(trainer.model.state_dict(), f"{dump}{ctx.rank}.pt")
    return summary
