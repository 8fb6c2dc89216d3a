"""Batch sources: where the training loop's batches and evaluations come from.

The loop asks its source for the batches of an epoch from a position on (``batches(epoch,
position)``), tells it when an epoch ends, and asks it to evaluate; it never branches on the
kind of data. Two sources:

- :class:`TensorSource` for datasets held as tensors on the training device (MNIST-1D, digits,
  MNIST, CIFAR-10, text): each epoch is one permutation (one gather), a step is a contiguous
  slice, and augmentation (CIFAR's crop and flip) runs batched on the device. The permutation
  generator's state is checkpointed and the augmentation is seeded by the step, so a resumed
  run is bit for bit the uninterrupted one (on CPU).
- :class:`LoaderSource` for image folders (ImageNet): a ``DataLoader`` with worker processes,
  pinned memory and persistent workers; each epoch's order is a permutation seeded by
  ``(seed, epoch)``, so a resumed run restarts its epoch at the batch it had reached (skipping
  the consumed indices without loading them). The workers' random crops come from their own
  seeds and are not reproduced exactly across a resume.

Under data parallelism (``world`` processes) every rank draws the same epoch permutation and
takes its own shard ``perm[rank::world]``: the ranks see disjoint samples and the same number
of steps per epoch. ``batch_size`` is per rank.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from normbench.data.augment import DeviceAugment
from normbench.data.base import fixed_subset
from normbench.training.tasks import slices


class TensorSource:
    """Batches sliced from a :class:`~normbench.data.TensorData` that lives on the device."""

    def __init__(self, data, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.data, self.batch_size, self.seed, self.rank, self.world = data, batch_size, seed, rank, world
        self.num_train = len(data.x_train)
        self.shard_size = self.num_train // world
        self.steps_per_epoch = self.shard_size // batch_size  # the last partial batch is dropped
        self.shuffle = torch.Generator().manual_seed(seed)
        self.perm: torch.Tensor | None = None
        aug = data.augment
        self.augment = DeviceAugment(aug.get("pad", 0), aug.get("flip", False), seed, rank) if aug else None

    def _epoch_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.perm is None:
            self.perm = torch.randperm(self.num_train, generator=self.shuffle)
        perm = self.perm
        if self.world > 1:
            perm = perm[self.rank::self.world][: self.shard_size]
        perm = perm.to(self.data.x_train.device)
        return self.data.x_train[perm], self.data.y_train[perm]

    def batches(self, epoch: int, position: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch ``epoch`` from batch ``position`` on (lazily: nothing runs until the first)."""
        xs, ys = self._epoch_tensors()
        B = self.batch_size
        for i in range(position, self.steps_per_epoch):
            x, y = xs[i * B:(i + 1) * B], ys[i * B:(i + 1) * B]
            if self.augment is not None:
                x = self.augment(x, epoch * self.steps_per_epoch + i)
            yield x, y

    def end_epoch(self) -> None:
        self.perm = None

    def first_batch(self) -> torch.Tensor:
        """The first training batch of the current epoch, unaugmented (weight norm's data init)."""
        xs, _ = self._epoch_tensors()
        return xs[: self.batch_size]

    def state_dict(self) -> dict:
        return {"shuffle_rng": self.shuffle.get_state(), "perm": self.perm}

    def load_state_dict(self, state: dict) -> None:
        self.shuffle.set_state(state["shuffle_rng"])
        self.perm = state["perm"]

    def test_inputs(self, n: int) -> torch.Tensor:
        """The first ``n`` test inputs (the probe's fixed batch)."""
        return self.data.x_test[:n]

    def population_batches(self, n: int | None, batch_size: int, complete: bool = False) -> Iterator[torch.Tensor]:
        """Training inputs for population statistics: ``n`` fixed samples (all when None),
        unaugmented, in batches of ``batch_size``. A train-mode pass leaves out a last batch of
        one sample (a batch statistic needs two); ``complete`` keeps every sample (an eval-mode
        pass, whose statistics must not depend on how the samples are cut into batches)."""
        idx = fixed_subset(self.num_train, n).to(self.data.x_train.device)
        for start in range(0, len(idx), batch_size):
            if complete or len(idx) - start > 1:
                yield self.data.x_train[idx[start:start + batch_size]]

    def test_examples(self, task, model, eval_batch_size: int, forward) -> dict:
        """The task's per-example record of the test set (:meth:`Classification.examples`)."""
        return task.examples(model, slices(self.data.x_test, self.data.y_test, eval_batch_size), forward)

    def evaluate(self, task, model, eval_batch_size: int, train_eval_samples: int, forward) -> dict:
        """``{"train": (loss, metric), "val": ... (when the data has a validation split), "test": ...,
        <extra label>: ...}`` in eval mode.

        Training accuracy is scored on a fixed random subset of ``train_eval_samples`` training
        samples, not the first ones: a dataset stored in some order (by class, or balanced only
        as a whole) would give a biased slice.
        """
        d = self.data
        idx = fixed_subset(len(d.x_train), train_eval_samples).to(d.x_train.device)
        out = {"train": task.evaluate(model, d.x_train[idx], d.y_train[idx], eval_batch_size, forward)}
        if d.x_val is not None:
            out["val"] = task.evaluate(model, d.x_val, d.y_val, eval_batch_size, forward)
        if d.test_groups:  # the parts of the test set from the same pass
            out["test"], parts = task.evaluate_groups(model, d.x_test, d.y_test, d.test_groups, eval_batch_size,
                                                      forward)
            out.update(parts)
        else:
            out["test"] = task.evaluate(model, d.x_test, d.y_test, eval_batch_size, forward)
        for label, (x, y) in d.extra_tests.items():
            out[label] = task.evaluate(model, x, y, eval_batch_size, forward)
        return out


class EpochSampler(torch.utils.data.Sampler):
    """Indices of one epoch: a permutation seeded by ``(seed, epoch)``, this rank's shard, from a position on."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.shard_size = n // world
        self.steps_per_epoch = self.shard_size // batch_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, position: int = 0) -> None:
        self.epoch, self.skip = epoch, position * self.batch_size

    def indices(self) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=gen)[self.rank::self.world][: self.shard_size]
        return perm[self.skip: self.steps_per_epoch * self.batch_size].tolist()

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return self.steps_per_epoch * self.batch_size - self.skip


class LoaderSource:
    """Batches from a DataLoader over a :class:`~normbench.data.imagenet.FolderData`."""

    def __init__(self, data, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1):
        self.data, self.batch_size, self.seed, self.device = data, batch_size, seed, device
        self.num_train = len(data.train)
        self.sampler = EpochSampler(self.num_train, batch_size, seed, rank, world)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.workers = data.workers
        self.pin = device.type == "cuda"
        self.loader_rng = torch.Generator()
        self.loader = torch.utils.data.DataLoader(
            data.train, batch_size=batch_size, sampler=self.sampler, num_workers=self.workers,
            pin_memory=self.pin, drop_last=True, persistent_workers=self.workers > 0,
            prefetch_factor=4 if self.workers > 0 else None, generator=self.loader_rng)

    def _to_device(self, x, y):
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def batches(self, epoch: int, position: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch, position)
        self.loader_rng.manual_seed(self.seed * 1_000_003 + epoch)  # seeds workers when they (re)start
        for x, y in self.loader:
            yield self._to_device(x, y)

    def end_epoch(self) -> None:
        pass

    def first_batch(self) -> torch.Tensor:
        self.sampler.set_epoch(0, 0)
        x, _ = next(iter(torch.utils.data.DataLoader(self.data.train, batch_size=self.batch_size,
                                                      sampler=self.sampler.indices()[: self.batch_size])))
        return x.to(self.device)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def test_inputs(self, n: int) -> torch.Tensor:
        """The first ``n`` test images on the device (the probe's fixed batch)."""
        x, _ = next(iter(torch.utils.data.DataLoader(self.data.test, batch_size=n)))
        return x.to(self.device)

    def _evaluate(self, task, dataset, model, batch_size: int, forward) -> tuple[float, float]:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=self.workers,
                                             pin_memory=self.pin)
        return task.evaluate_batches(model, (self._to_device(x, y) for x, y in loader), forward)

    def population_batches(self, n: int | None, batch_size: int, complete: bool = False) -> Iterator[torch.Tensor]:
        """Training images with the evaluation transform (``train_eval``) for population
        statistics: ``n`` fixed samples (all when None), in batches of ``batch_size`` (a last,
        partial batch only when ``complete``)."""
        subset = torch.utils.data.Subset(self.data.train_eval, fixed_subset(len(self.data.train_eval), n).tolist())
        loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=self.workers,
                                             pin_memory=self.pin, drop_last=not complete)
        for x, y in loader:
            yield self._to_device(x, y)[0]

    def test_examples(self, task, model, eval_batch_size: int, forward) -> dict:
        """The task's per-example record of the test images, in the test set's order."""
        loader = torch.utils.data.DataLoader(self.data.test, batch_size=eval_batch_size, num_workers=self.workers,
                                             pin_memory=self.pin)
        return task.examples(model, (self._to_device(x, y) for x, y in loader), forward)

    def evaluate(self, task, model, eval_batch_size: int, train_eval_samples: int, forward) -> dict:
        train_eval = self.data.train_eval
        if len(train_eval) > train_eval_samples:
            train_eval = torch.utils.data.Subset(train_eval, fixed_subset(len(train_eval), train_eval_samples).tolist())
        out = {"train": self._evaluate(task, train_eval, model, eval_batch_size, forward)}
        if self.data.val is not None:
            out["val"] = self._evaluate(task, self.data.val, model, eval_batch_size, forward)
        out["test"] = self._evaluate(task, self.data.test, model, eval_batch_size, forward)
        return out


def make_source(data, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1):
    """The batch source for ``data``: tensors on the device, or a DataLoader over image folders."""
    if hasattr(data, "x_train"):
        return TensorSource(data, batch_size, seed, rank, world)
    return LoaderSource(data, batch_size, seed, device, rank, world)
