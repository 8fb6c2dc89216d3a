"""Packed training: runs that differ only in ``seed`` trained as M members of one stacked model.

Tiny models are bound by per-operation overhead, not arithmetic: five separate runs pay it five
times. A pack builds each member exactly as its own run would (its :class:`~normbench.training.
trainer.Trainer`: the same seed before the data and the model, so the same initial weights bit
for bit, its own batch source, evaluator, checkpoints and run directory), then stacks the
members' parameters and buffers into one tensor per name, ``(M, *shape)``, and trains them with
``torch.func.vmap`` over ``functional_call``: one call per operation for all members.

- Each member's tensors are re-pointed to views of the stacked storage, so the member modules
  always hold the current weights: evaluation, exact population statistics, weight norm's data
  init and checkpoints use them unchanged, with no copies.
- Batch norm under vmap keeps per-member batch statistics and running averages (its batching
  rule folds the members into channels); the running buffers are stacked contiguously, since a
  non-contiguous one silently loses its update.
- Gradient clipping is per member (each member's own global norm); the optimizer's update is
  elementwise (SGD, Adam, RMSprop), so one optimizer over the stacked tensors is M optimizers.
- Each member has its own divergence check: a member whose loss turns non-finite is recorded as
  diverged and leaves the loss; the others go on.
- Each checkpoint a member writes is the one its unpacked run would write (its slice of the
  optimizer state), so every member directory also resumes alone.

What cannot pack is found when the pack is built (:func:`unpackable`), and those runs train
one after the other with a line saying why.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call, vmap

from normbench import records
from normbench.data.base import Inputs
from normbench.models.gru import LoopGRU
from normbench.training import cache, distributed, folding
from normbench.training.optim import build_optimizer, build_schedule
from normbench.training.preemption import Interrupted, StopRequest
from normbench.training.progress import make_progress
from normbench.training.trainer import Clock, Diverged, Trainer, fit_run, prepare, validate


def unpackable(trainer) -> str | None:
    """Why ``trainer``'s run cannot train in a pack, or None when it can."""
    if not hasattr(trainer.source, "data") or not hasattr(trainer.source.data, "x_train"):
        return "its data loads through a DataLoader (image folders), not from tensors on the device"
    if trainer.ctx.enabled:
        return "it runs under torchrun (data parallel)"
    if trainer.forward.channels_last:
        return "trainer.channels_last=true has no meaning for a member's slice under vmap"
    if trainer.cfg.trainer.get("compile", False):
        return "trainer.compile=true compiles one model, not a pack"
    for module in trainer.model.modules():
        if isinstance(module, (nn.LSTM, nn.RNN)) or (isinstance(module, nn.GRU) and not LoopGRU.can_replace(module)):
            return f"{type(module).__name__}'s fused kernel has no batching rule under torch.func.vmap"
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats \
                and module.momentum is None:
            return "batch norm with momentum=None (a cumulative average) cannot run under torch.func.vmap"
    return None


def _template(model: nn.Module) -> nn.Module:
    """A storage-free copy of ``model`` that ``functional_call`` runs with a member's tensors:
    layers without a batching rule replaced by equivalents that have one (nn.GRU)."""
    template = copy.deepcopy(model).to("meta")
    for name, module in list(template.named_modules()):
        if isinstance(module, nn.GRU):
            parent, _, leaf = name.rpartition(".")
            setattr(template.get_submodule(parent) if parent else template, leaf, LoopGRU.like(module))
    return template


def _repoint(module: nn.Module, name: str, tensor: torch.Tensor, parameter: bool) -> None:
    owner, _, leaf = name.rpartition(".")
    owner_module = module.get_submodule(owner) if owner else module
    if parameter:
        old = owner_module._parameters[leaf]
        owner_module._parameters[leaf] = nn.Parameter(tensor, requires_grad=old.requires_grad)
    else:
        owner_module._buffers[leaf] = tensor


class Pack:
    """M models of one architecture as stacked tensors; the members' own tensors become views.

    Args:
        models: the members, built each as its unpacked run builds it.
        fold: train them folded into the channels (:mod:`normbench.training.folding`) where every
            layer can be, and the folded outputs agree with vmap's on the first batch; False: vmap.

    ``params``: ``{name: (M, *shape)}`` leaves the optimizer updates; ``buffers``: the same for
    buffers (running statistics). :meth:`losses` is one forward pass of every member's batch;
    ``path`` says how it runs (``fold`` or ``vmap``; None until the first batch decides).
    """

    def __init__(self, models: Sequence[nn.Module], fold: bool = True):
        self.models, self.M = list(models), len(models)
        self.template = _template(self.models[0])
        names = [n for n, _ in self.models[0].named_parameters()]
        buffer_names = [n for n, b in self.models[0].named_buffers() if b is not None]
        with torch.no_grad():
            self.params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in self.models])
                           .contiguous().requires_grad_() for n in names}
            self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in self.models]).contiguous()
                            for n in buffer_names}
        for i, model in enumerate(self.models):
            for n, stacked in self.params.items():
                _repoint(model, n, stacked.detach()[i], parameter=True)
            for n, stacked in self.buffers.items():
                _repoint(model, n, stacked[i], parameter=False)
        self._leaf_of = {id(p): self.params[n] for n, p in self.models[0].named_parameters()}
        # The members folded into the channels where every layer has a folded form (one call per
        # layer, without vmap's overhead); trusted once it agrees with vmap on the first batch.
        self.folded = folding.fold(self.models[0], {**self.params, **self.buffers}, self.M) if fold else None
        self.path = "vmap" if self.folded is None else None  # None: not yet checked

    def leaf(self, member_parameter: nn.Parameter) -> torch.Tensor:
        """The stacked leaf of a parameter of the first member."""
        return self._leaf_of[id(member_parameter)]

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)
        if self.folded is not None:
            self.folded.train(mode)
        for model in self.models:
            model.train(mode)

    def losses(self, task, forward, x, y) -> torch.Tensor:
        """Every member's training loss on its own batch: ``x`` and ``y`` are stacked ``(M, B, ...)``
        (``x`` may be an Inputs of stacked fields); returns ``(M,)``."""
        if self.path is None:
            self.path = "fold" if torch.is_tensor(x) and self._fold_agrees(forward, x) else "vmap"
        if self.path == "fold":
            out = folding.unfold_outputs(forward(self.folded, folding.fold_inputs(x)), self.M)
            return vmap(task.loss)(out.float(), y)
        shared = x.shared if isinstance(x, Inputs) else None

        def member_loss(params, buffers, xs, ys):
            return task.loss(self._member(forward, params, buffers, xs, shared).float(), ys)

        return vmap(member_loss, randomness="different")(self.params, self.buffers,
                                                         x.fields if isinstance(x, Inputs) else x, y)

    def _member(self, forward, params, buffers, xs, shared=None):
        """One member's output under vmap (``xs``: its inputs, or an Inputs' fields)."""
        inputs = Inputs(xs, shared) if isinstance(xs, dict) else xs
        return forward(lambda inp: functional_call(self.template, (params, buffers), (inp,)), inputs)

    @torch.no_grad()
    def _fold_agrees(self, forward, x: torch.Tensor) -> bool:
        """Whether the folded model gives vmap's outputs and running statistics on batch ``x``
        (the model's own forward code runs on folded activations: a reshape that assumes C
        channels would not). Both run on copies of the buffers: the check changes nothing."""
        copies = [{n: b.clone() for n, b in self.buffers.items()} for _ in range(2)]
        reference = vmap(lambda p, b, xs: self._member(forward, p, b, xs), randomness="different")(
            self.params, copies[0], x)
        try:
            folded = folding.fold(self.models[0], {**self.params, **copies[1]}, self.M)
            folded.train(self.folded.training)
            out = folding.unfold_outputs(forward(folded, folding.fold_inputs(x)), self.M)
        except (RuntimeError, ValueError, IndexError):
            return False
        return out.shape == reference.shape and torch.allclose(out, reference, rtol=1e-4, atol=1e-5) and all(
            torch.allclose(copies[1][n].double(), v.double(), rtol=1e-4, atol=1e-6) for n, v in copies[0].items())

    @torch.no_grad()
    def clip_(self, max_norm: float) -> None:
        """Scale each member's gradients to a global norm of at most ``max_norm``, as
        ``nn.utils.clip_grad_norm_`` does for one model."""
        grads = [p.grad.view(self.M, -1) for p in self.params.values() if p.grad is not None]
        if not grads:
            return
        norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dim=1) for g in grads], 1), dim=1)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, 1))


class MemberOptimizer:
    """One member's view of the pack's optimizer: what its checkpoint saves (the state its unpacked
    run's optimizer would have), and the learning rate its record shows."""

    def __init__(self, optimizer: torch.optim.Optimizer, index: int, shapes: list[torch.Size], members: int):
        self.optimizer, self.index, self.shapes, self.members = optimizer, index, shapes, members

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def state_dict(self) -> dict:
        packed = self.optimizer.state_dict()
        state = {}
        for k, entry in packed["state"].items():
            shape = self.shapes[k]
            state[k] = {key: (v.view(self.members, *shape)[self.index].clone()
                              if torch.is_tensor(v) and v.dim() > 0 and v.numel() == self.members * shape.numel()
                              else v) for key, v in entry.items()}
        return {"state": state, "param_groups": packed["param_groups"]}


def stacked_optimizer_state(states: Sequence[dict], shapes: list[torch.Size]) -> dict:
    """The pack's optimizer state from its members' (unpacked) optimizer states."""
    first = states[0]
    packed = {}
    for k, entry in first["state"].items():
        packed[k] = {}
        for key, v in entry.items():
            if torch.is_tensor(v) and v.dim() > 0 and v.shape == shapes[k]:
                packed[k][key] = torch.stack([s["state"][k][key] for s in states])
            else:
                packed[k][key] = v
    return {"state": packed, "param_groups": first["param_groups"]}


class PackedLoop:
    """The training loop of several restored :class:`Trainer` s at the same step, as one pack.

    Each member keeps its own collaborators (batch source, evaluator, checkpoints, logger, loop
    state); the pack owns the stacked tensors, the one optimizer and schedule over them, and the
    steps. Every ``log_every`` steps one read of the members' loss sums gives each its interval.
    """

    def __init__(self, trainers: Sequence[Trainer]):
        self.trainers = list(trainers)
        lead = self.trainers[0]
        self.cfg, self.device, self.task, self.forward = lead.cfg, lead.device, lead.task, lead.forward
        self.total_steps = lead.total_steps
        self.pack = Pack([t.model for t in self.trainers])
        cfg = self.cfg
        self.optimizer, _ = build_optimizer(cfg.optim, lead.model, cfg.batch_size, leaf=self.pack.leaf)
        shapes = [p.shape[1:] for g in self.optimizer.param_groups for p in g["params"]]
        if any(t.optimizer.state for t in self.trainers):  # resumed: the members' own optimizer states
            self.optimizer.load_state_dict(stacked_optimizer_state([t.optimizer.state_dict() for t in self.trainers],
                                                                   shapes))
        self.scheduler = build_schedule(cfg.optim, self.optimizer, self.total_steps, lead.source.steps_per_epoch)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(lead.scheduler.state_dict())
        for i, t in enumerate(self.trainers):  # what each member's checkpoint and record read
            t.optimizer = MemberOptimizer(self.optimizer, i, shapes, len(self.trainers))
            t.scheduler = self.scheduler
        self.active = list(self.trainers)
        self.summaries: dict[int, dict] = {}

    def _drop(self, i: int, exc: Diverged) -> None:
        """Member ``i`` diverged: record it as its run would be, and train the others on."""
        t = self.trainers[i]
        summary = t.diverged(exc)
        records.write_summary(t.run_dir, summary)
        t.logger.finish(summary)
        self.summaries[i] = summary
        self.active = [a for a in self.active if a is not t]
        print(f"normbench: seed {t.cfg.seed} diverged ({exc}); the pack's other members go on", flush=True)

    def _each(self, fn) -> None:
        """``fn(trainer)`` for every active member; a member whose ``fn`` raises Diverged drops out."""
        for t in list(self.active):
            try:
                fn(t)
            except Diverged as exc:
                self._drop(self.trainers.index(t), exc)

    def fit(self) -> list[dict]:
        """Train every member to the budget; returns each member's summary (completed or diverged)."""
        cfg, trainers, M = self.cfg, self.trainers, len(self.trainers)
        lead = trainers[0]
        for t in trainers:
            t._start()
        progress = make_progress(cfg.trainer.progress, self.total_steps, lead.state.step, cfg.batch_size * M)
        self.pack.train()
        clocks = {id(t): Clock(t.state) for t in trainers}
        eval_every = cfg.trainer.eval_every or lead.source.steps_per_epoch
        with progress, StopRequest() as stop:
            if not lead.resumed:
                self._each(lambda t: t._record(progress))
            s = lead.state
            epoch, position = s.epoch, s.position
            batches = [t.source.batches(epoch, position) for t in trainers]
            loss_sum = torch.tensor([t.state.pending_loss for t in trainers], device=self.device)
            keep = torch.ones(M, dtype=torch.bool, device=self.device)
            clip = cfg.optim.grad_clip_norm
            optimizer, scheduler, pack = self.optimizer, self.scheduler, self.pack
            step = s.step
            for clock in clocks.values():
                clock.segment()
            while step < self.total_steps and self.active:
                x, y = _stack([next(b) for b in batches])
                losses = pack.losses(self.task, self.forward, x, y)
                optimizer.zero_grad(set_to_none=True)
                torch.where(keep, losses, 0.0).sum().backward()
                if clip:
                    pack.clip_(clip)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += losses.detach()
                step += 1
                position += 1
                if position == lead.source.steps_per_epoch:
                    epoch, position = epoch + 1, 0
                    for t in trainers:
                        t.source.end_epoch()
                    batches = [t.source.batches(epoch, 0) for t in trainers]
                for t in trainers:
                    t.state.step, t.state.epoch, t.state.position = step, epoch, position
                evaluating = step % eval_every == 0 or step == self.total_steps
                if evaluating or step % cfg.trainer.log_every == 0:
                    raw = loss_sum.tolist()  # the one read per interval, for every member
                    loss_sum.zero_()
                    self._each(lambda t, raw=raw, evaluating=evaluating: t.interval(
                        raw[trainers.index(t)], progress, evaluating, clocks[id(t)]))
                    keep = torch.tensor([t in self.active for t in trainers], device=self.device)
                if stop.signum is not None and step < self.total_steps:
                    pending = loss_sum.tolist()
                    for t in self.active:
                        t.save_pending(pending[trainers.index(t)], clocks[id(t)])
                    raise Interrupted(stop.signum, step, stop.previous_handler())
        for i, t in enumerate(trainers):
            if i not in self.summaries:
                self.summaries[i] = t.summary("completed")
        return [self.summaries[i] for i in range(M)]


def _stack(batches: list[tuple]) -> tuple:
    """The members' batches as one: inputs and targets stacked ``(M, B, ...)`` (an Inputs' fields)."""
    xs, ys = zip(*batches, strict=True)
    y = torch.stack(ys)
    if isinstance(xs[0], Inputs):
        return Inputs({k: torch.stack([x.fields[k] for x in xs]) for k in xs[0].fields}, xs[0].shared), y
    return torch.stack(xs), y


def train_pack(cfgs: Sequence[DictConfig], run_dirs: Sequence[str | Path]) -> list[dict]:
    """Train runs that differ only in ``seed`` (``cfgs[i]`` into ``run_dirs[i]``) as one pack, and
    return each run's summary, as :func:`~normbench.training.trainer.train` would one by one.

    Finished members are skipped and identical completed runs reused, as for a single run; the
    rest are restored, and those at the same step train together. A run that cannot pack
    (:func:`unpackable`) trains alone, with a line saying why. Each run directory is locked for
    the whole pack (one writer per directory).
    """
    ctx = distributed.Context()
    for cfg in cfgs:
        validate(cfg)
    summaries: dict[int, dict] = {}
    with contextlib.ExitStack() as locks:
        for run_dir in run_dirs:
            locks.enter_context(records.RunLock(run_dir))
        # A pack killed while its members saved a checkpoint left some a checkpoint ahead: those
        # resume from their previous one, so that the pack goes on as it would have, bit for bit.
        common = min(_newest_step(Path(d)) for d in run_dirs)
        waiting: dict[int, Trainer] = {}
        for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs, strict=True)):
            _, digest, _ = records.verified_checkpoint(Path(run_dir), common)
            at_common = digest is not None and digest.get("step") == common
            finished, trainer = prepare(cfg, Path(run_dir), ctx, common if at_common else None)
            if finished is not None:
                summaries[i] = finished
            else:
                waiting[i] = trainer
        groups: dict[int, list[int]] = {}
        for i, trainer in waiting.items():
            reason = unpackable(trainer)
            if reason is not None and len(waiting) > 1:
                print(f"normbench: seed {trainer.cfg.seed} trains alone, not packed: {reason}", flush=True)
            groups.setdefault(trainer.state.step if reason is None else -1 - i, []).append(i)
        for members in groups.values():
            if len(members) == 1:
                summaries[members[0]] = fit_run(waiting[members[0]], ctx)
            else:
                summaries.update(zip(members, fit_pack([waiting[i] for i in members]), strict=True))
    return [summaries[i] for i in range(len(cfgs))]


def _newest_step(run_dir: Path) -> int:
    """The step of the run's newest verified checkpoint (0 without one)."""
    _, digest, _ = records.verified_checkpoint(run_dir)
    return int(digest.get("step", 0)) if digest else 0


def fit_pack(trainers: list[Trainer]) -> list[dict]:
    """:func:`~normbench.training.trainer._fit` for a pack: the members' records on every outcome."""
    loop = None
    try:
        loop = PackedLoop(trainers)
        results = loop.fit()
    except (Interrupted, KeyboardInterrupt) as exc:
        for t in loop.active if loop else trainers:
            t.logger.finish(t.summary("running"), interrupted=True)
        if isinstance(exc, Interrupted) and callable(exc.previous_handler):
            exc.previous_handler(exc.signum, None)  # submitit: requeue this job, then exit
        raise
    except BaseException as exc:
        for t in loop.active if loop else trainers:
            failed = t.summary("failed", f"{type(exc).__name__}: {exc}")
            try:
                records.write_summary(t.run_dir, failed)
            except OSError:
                pass
            t.logger.finish(failed)
        raise
    for t, summary in zip(trainers, results, strict=True):
        if summary["status"] == "completed":
            records.write_summary(t.run_dir, summary)
            cache.remember(t.cfg, t.run_dir, summary)
            t.logger.finish(summary)
    return results
