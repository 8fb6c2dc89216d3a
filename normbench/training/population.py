"""Population statistics for every batch-statistics layer, recomputed before an evaluation.

Batch norm is trained with batch statistics and evaluated with population statistics. PyTorch's
convention estimates the latter as an exponential moving average of the batch statistics seen in
training (``norm.population=running``). That average lags the weights: it mixes statistics of
models that no longer exist, and when the weights move fast (a recurrent model, a high learning
rate) the evaluation scores a network that was never trained. Two estimators compute them anew
before each evaluation, with the current weights, over a fixed set of training samples (a fixed
permutation of the training set, cut to ``norm.population_samples``):

- ``norm.population=exact`` (:func:`exact_statistics`) goes stage by stage in forward order with
  the model in eval mode. A stage is one batch-statistics layer, or one time step of the
  BN-LSTM's (Cooijmans et al. 2016 keep statistics per step); its statistics are those of all
  its inputs over the population, with every earlier stage already normalizing with its own
  fresh statistics: exactly what the stage sees at evaluation. The result does not depend on the
  batches the pass is cut into (up to float rounding). Cost: one pass when the population fits
  one batch of ``trainer.eval_batch_size``; otherwise one pass per layer, each cut short at its
  layer, or, for a BN-LSTM (a stage per time step), every batch at once in lockstep threads.
- ``norm.population=precise`` (:func:`precise_statistics`; Wu & Johnson 2021's PreciseBN, as in
  fvcore) runs one pass in train mode and pools every layer's inputs over it. Each later layer
  then sees features normalized by the pass's own batches, not what it sees at evaluation, so
  the estimate depends on the pass's batch: the same final BN-LSTM weights on permuted 8x8
  digits scored 0.26 / 0.36 / 0.75 / 0.85 / 0.83 test accuracy at pass batches 10 / 100 / 500 /
  1000 / 1437.

Both pool the values: each layer's population mean is :math:`\\sum x / n` and its variance
:math:`(\\sum x^2 - n \\mu^2) / (n - 1)` (unbiased, as PyTorch stores ``running_var``), per
channel (and per time step for the BN-LSTM), summed in float64. An average of per-batch
variances would miss the variance between batches, which matters when some channels are almost
constant within a batch (the first pixels of a permuted digit).

The running buffers, and the random number generators (dropout, the LSTM's noise on ``h_0``),
are restored after the evaluation, so training never sees these statistics: the final weights
are bit-identical with and without them, and checkpoints keep the running averages.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable

import torch
from torch import nn

from normbench.norms import RecurrentBatchNorm
from normbench.norms.registry import population_layer_types


def batch_statistics_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model`` that keep population statistics for evaluation: those of the types
    the norms' registry entries name (:attr:`~normbench.norms.Norm.population_layers`; conditional
    BN and the ResNets' BN are ``nn.BatchNorm2d`` inside the model whatever the run's norm), with
    running statistics."""
    kinds = population_layer_types()
    return [m for m in model.modules() if isinstance(m, kinds) and getattr(m, "running_mean", None) is not None]


class _Sums:
    """Sums of x and x² and the count per channel (per time step and channel for the BN-LSTM)."""

    def __init__(self, layer: nn.Module):
        shape = tuple(layer.running_mean.shape)
        device = layer.running_mean.device
        self.recurrent = isinstance(layer, RecurrentBatchNorm)
        self.sum = torch.zeros(shape, dtype=torch.float64, device=device)
        self.sumsq = torch.zeros(shape, dtype=torch.float64, device=device)
        self.count = torch.zeros(shape[:1] if self.recurrent else (), dtype=torch.float64, device=device)

    def add(self, args, kwargs) -> None:
        """Add the values of one call of the layer (its positional and keyword arguments)."""
        x = args[0].detach().double()
        if self.recurrent:  # x is (N, C) for step t, or (N, T, C) for steps t .. t+T-1
            steps = x.view(x.shape[0], -1, x.shape[-1])
            t = _step(args, kwargs)
            rows = slice(t, t + steps.shape[1])
            self.sum[rows] += steps.sum(0)
            self.sumsq[rows] += steps.square().sum(0)
            self.count[rows] += steps.shape[0]
            return
        dims = [d for d in range(x.dim()) if d != 1]
        self.sum += x.sum(dims)
        self.sumsq += x.square().sum(dims)
        self.count += x.numel() / x.shape[1]

    def __call__(self, _layer, args, kwargs) -> None:  # as a forward pre-hook
        self.add(args, kwargs)

    @torch.no_grad()
    def store(self, layer: nn.Module) -> None:
        """Write the mean and unbiased variance into the layer's running buffers (rows with data)."""
        n = self.count.unsqueeze(-1) if self.recurrent else self.count
        mean = self.sum / n.clamp(min=1)
        var = (self.sumsq - n * mean.square()).clamp(min=0) / (n - 1).clamp(min=1)
        if self.recurrent:  # time steps the pass never reached keep their statistics
            seen = (n > 0).expand_as(mean)
            mean = torch.where(seen, mean, layer.running_mean.double())
            var = torch.where(seen, var, layer.running_var.double())
            # evaluation reads the statistics of steps up to steps_tracked (later steps reuse the
            # last): count the steps estimated here, as a model before its first step has none
            reached = int(torch.nonzero(self.count > 0).max()) + 1 if bool((self.count > 0).any()) else 0
            layer.steps_tracked.clamp_(min=reached)
        layer.running_mean.copy_(mean)
        if getattr(layer, "running_var", None) is not None:
            layer.running_var.copy_(var)


def _step(args, kwargs) -> int:
    """The time step ``t`` of a recurrent norm's call ``norm(x, t)``."""
    return int(args[1] if len(args) > 1 else kwargs.get("t", 0))


@contextlib.contextmanager
def _population_context(model: nn.Module, layers: list[nn.Module]):
    """Restores the layers' buffers, the model's mode and the random number generators on exit."""
    saved = [{k: b.clone() for k, b in layer.named_buffers(recurse=False)} for layer in layers]
    was_training = model.training
    device = layers[0].running_mean.device
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            yield saved
    finally:
        with torch.no_grad():
            for layer, buffers in zip(layers, saved, strict=True):
                for name, value in buffers.items():
                    getattr(layer, name).copy_(value)
        model.train(was_training)


@contextlib.contextmanager
def precise_statistics(model: nn.Module, batches: Iterable, forward: Callable | None = None):
    """Within the block, ``model``'s batch-statistics layers hold population statistics pooled
    over one train-mode pass (``norm.population=precise``; fvcore's PreciseBN).

    Every layer accumulates the sums of its inputs over the pass, but each later layer sees
    features normalized by the pass's own batches, not what it sees at evaluation, so the result
    depends on the pass's batch size. ``batches`` yields model inputs (training samples);
    ``forward(model, x)`` replaces ``model(x)`` (autocast, memory format). On exit the layers'
    buffers, the model's mode and the random number generators are as they were.
    """
    layers = batch_statistics_layers(model)
    if not layers:
        yield model
        return
    was_training = model.training
    with _population_context(model, layers) as saved:
        index = _positions(layers)
        sums = [_Sums(layer) for layer in layers]

        def run():
            model.train()
            for x in batches:
                _call(model, x, forward)

        _hooked(layers, lambda layer, args, kwargs: sums[index[id(layer)]].add(args, kwargs), run)
        for layer, s, buffers in zip(layers, sums, saved, strict=True):
            for name, value in buffers.items():  # the pass moved the running averages: undo
                getattr(layer, name).copy_(value)
            s.store(layer)
        model.train(was_training)
        yield model


class _Reached(Exception):
    """Ends a pass at the stage it estimates: nothing after that stage is needed."""


_END = "the end of the pass"  # the stage a batch's thread reports when its forward pass has ended


@contextlib.contextmanager
def exact_statistics(model: nn.Module, batches: Callable[[], Iterable], forward: Callable | None = None):
    """Within the block, ``model``'s batch-statistics layers hold exact population statistics,
    consistent with evaluation (``norm.population=exact``).

    The statistics are estimated stage by stage in forward order, the model in eval mode: a stage
    is one batch-statistics layer (one time step of it for the BN-LSTM), and its statistics are
    those of all its inputs over the population, computed with every earlier stage already
    normalizing with its own fresh population statistics: what the stage sees at evaluation.
    Nothing depends on how the population is cut into batches (up to float rounding).

    ``batches()`` yields model inputs (training samples; called once per pass);
    ``forward(model, x)`` replaces ``model(x)``. With one batch, a single pass estimates every
    stage in turn. With several, a feed-forward model takes one pass per stage, each cut short at
    the stage it estimates (a pass holds one batch's activations); a model with a BN-LSTM, whose
    stages are its time steps (a pass per stage would cost time steps squared), runs every batch
    at once in lockstep, one thread per batch meeting at each stage (they hold every batch's
    state at once, as one batch of the whole population would). On exit the layers' buffers, the
    model's mode and the random number generators are as they were.
    """
    layers = batch_statistics_layers(model)
    if not layers:
        yield model
        return
    with _population_context(model, layers):
        model.eval()
        index = _positions(layers)
        first, second = _first_two(batches())
        if second is None:
            _one_pass(model, layers, index, first, forward)
        elif any(isinstance(layer, RecurrentBatchNorm) for layer in layers):
            _lockstep(model, layers, index, list(batches()), forward)
        else:
            _pass_per_stage(model, layers, index, batches, forward)
        yield model


def _positions(layers: list[nn.Module]) -> dict[int, int]:
    """Each layer's place in forward order, by its ``id``."""
    return {id(layer): i for i, layer in enumerate(layers)}


def _key(index: dict, layer: nn.Module, args, kwargs) -> tuple[int, int]:
    """A stage: the layer's place in forward order, and the time step for a recurrent norm."""
    return index[id(layer)], _step(args, kwargs) if isinstance(layer, RecurrentBatchNorm) else 0


def _hooked(layers: list[nn.Module], hook: Callable, run: Callable) -> None:
    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in layers]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()


def _call(model: nn.Module, x, forward: Callable | None) -> None:
    forward(model, x) if forward else model(x)


def _one_pass(model, layers, index, x, forward) -> None:
    """The whole population is one batch: each stage is estimated, then normalizes with it."""
    done = set()

    def hook(layer, args, kwargs):
        key = _key(index, layer, args, kwargs)
        if key not in done:
            sums = _Sums(layer)
            sums.add(args, kwargs)
            sums.store(layer)
            done.add(key)

    _hooked(layers, hook, lambda: _call(model, x, forward))


def _pass_per_stage(model, layers, index, batches: Callable[[], Iterable], forward) -> None:
    """One pass over the batches per stage, each cut short at the first stage not yet estimated."""
    done = set()
    target: list = [None, None]  # the stage this pass estimates, and its sums

    def hook(layer, args, kwargs):
        key = _key(index, layer, args, kwargs)
        if key in done:
            return
        if target[0] is None:
            target[0], target[1] = key, _Sums(layer)
        elif target[0] != key:
            raise RuntimeError(_diverged(target[0], key))
        target[1].add(args, kwargs)
        raise _Reached

    def run():
        while True:
            target[0] = None
            for x in batches():
                try:
                    _call(model, x, forward)
                except _Reached:
                    pass
            if target[0] is None:  # a whole pass met no stage left to estimate
                return
            stage, sums = target
            sums.store(layers[stage[0]])
            done.add(stage)

    _hooked(layers, hook, run)


def _lockstep(model, layers, index, batches: list, forward) -> None:
    """Every batch's pass in a thread of its own; the threads meet at each stage, whose statistics
    are pooled over all of them (summed in batch order: the result does not depend on which
    thread arrives first) and stored before any goes on."""
    n = len(batches)
    keys: list = [None] * n
    sums: list = [None] * n
    slot = threading.local()

    def meet():  # the barrier's action: runs once, in one thread, when all have arrived
        if all(k is _END for k in keys):
            return
        if any(k != keys[0] for k in keys):
            raise RuntimeError(_diverged(*sorted({str(k) for k in keys})[:2]))
        total = sums[0]
        for other in sums[1:]:
            total.sum += other.sum
            total.sumsq += other.sumsq
            total.count += other.count
        total.store(layers[keys[0][0]])

    barrier = threading.Barrier(n, action=meet)
    errors: list[BaseException] = []

    def hook(layer, args, kwargs):
        i = slot.i
        keys[i], sums[i] = _key(index, layer, args, kwargs), _Sums(layer)
        sums[i].add(args, kwargs)
        barrier.wait()

    def work(i: int, x) -> None:
        slot.i = i
        try:
            with torch.no_grad():  # grad mode is per thread
                _call(model, x, forward)
            keys[i] = _END
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        except BaseException as error:  # noqa: BLE001 (passed to the caller below)
            errors.append(error)
            barrier.abort()

    def run():
        threads = [threading.Thread(target=work, args=(i, x), daemon=True) for i, x in enumerate(batches)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    _hooked(layers, hook, run)


def _diverged(a, b) -> str:
    return (f"the population's batches reached different stages ({a} and {b}); exact statistics need one "
            "path through the model for every batch")


def _first_two(batches: Iterable) -> tuple:
    it = iter(batches)
    return next(it, None), next(it, None)


@torch.no_grad()
def values_per_statistic(model: nn.Module, x, forward: Callable | None = None) -> int | None:
    """The fewest values any batch statistic of ``model`` is taken over for the input batch
    ``x``: the batch size times the positions a channel has at that layer (times nothing for a
    BN-LSTM, whose statistics are per time step). None if no layer uses batch statistics.

    This is the quantity behind BN's small-batch penalty: ResNet-50's last stage has 7x7
    positions, so at batch 2 its statistics still see 98 values; a model with fewer positions
    suffers sooner. Runs one forward pass in eval mode (shapes only; no buffer changes).
    """
    layers = batch_statistics_layers(model)
    if not layers:
        return None
    counts = []

    def hook(layer, args, _kwargs):
        x = args[0]
        # a ghost batch norm takes its statistics over virtual batches of the batch
        batch = min(x.shape[0], getattr(layer, "virtual_batch_size", None) or x.shape[0])
        counts.append(batch if isinstance(layer, RecurrentBatchNorm) else batch * (x.numel() // x.shape[:2].numel()))

    was_training = model.training
    try:
        model.eval()
        _hooked(layers, hook, lambda: _call(model, x, forward))
    finally:
        model.train(was_training)
    return min(counts) if counts else None
