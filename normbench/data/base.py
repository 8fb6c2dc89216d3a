"""The in-memory form every small dataset takes, and the transforms every dataset accepts."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from normbench.errors import ConfigError

T = TypeVar("T")


class Inputs:
    """Several input tensors per sample, indexed together, plus shared tables they refer to.

    For models with more than one input (a FiLM model reads an image and a question): every
    tensor in ``fields`` has the samples along dim 0 and is indexed, sliced and shuffled
    together; ``shared`` tensors (e.g. the images, which several questions refer to by index)
    are carried along unchanged. It supports what the trainer does with a single input
    tensor (``len(x)``, ``x[index]``, ``x[a:b]``, ``x.to(device)``, ``x.device``), so the loop
    needs no branch; the model's ``forward`` receives an ``Inputs`` and reads ``x["name"]``.
    """

    def __init__(self, fields: dict[str, torch.Tensor], shared: dict[str, torch.Tensor] | None = None,
                 group: str | None = None):
        sizes = {name: len(t) for name, t in fields.items()}
        if not fields or len(set(sizes.values())) != 1:
            raise ValueError(f"Inputs needs one or more fields with the same number of samples, got {sizes}")
        if group is not None and group not in fields:
            raise ValueError(f"Inputs: group={group!r} is not one of its fields ({', '.join(fields)})")
        self.fields = dict(fields)
        self.shared = dict(shared or {})
        # The field whose values tie samples together (the questions about one image): a
        # validation split holds out whole groups, so that no image is in both splits.
        self.group = group

    def __len__(self) -> int:
        return len(next(iter(self.fields.values())))

    def __getitem__(self, index) -> Inputs | torch.Tensor:
        if isinstance(index, str):
            return self.fields[index] if index in self.fields else self.shared[index]
        return Inputs({k: t[index] for k, t in self.fields.items()}, self.shared, self.group)

    def to(self, device) -> Inputs:
        return Inputs({k: t.to(device) for k, t in self.fields.items()},
                      {k: t.to(device) for k, t in self.shared.items()}, self.group)

    @property
    def device(self) -> torch.device:
        return next(iter(self.fields.values())).device

    @property
    def sample_shape(self) -> dict[str, tuple[int, ...]]:
        """The shape of one sample of each field (without dim 0), and of one row of each shared table."""
        return {k: tuple(t.shape[1:]) for k, t in {**self.fields, **self.shared}.items()}

    def __repr__(self) -> str:
        parts = [f"{k}={tuple(t.shape)}" for k, t in self.fields.items()]
        parts += [f"shared {k}={tuple(t.shape)}" for k, t in self.shared.items()]
        return f"Inputs({len(self)} samples: {', '.join(parts)})"



def cache_dir() -> Path:
    """Where generated and decoded datasets are cached: ``$NORMBENCH_CACHE`` or ``~/.cache/normbench``."""
    return Path(os.environ.get("NORMBENCH_CACHE", Path.home() / ".cache" / "normbench"))

@dataclass(frozen=True)
class TensorData:
    """A classification dataset held as four tensors, on one device for the whole run.

    ``x_*`` are float32 with the layout a model consumes: ``(N, C, L)`` for 1-D signals
    (``kind="signal"``) and ``(N, C, H, W)`` for images (``kind="image"``); ``y_*`` are int64
    class indices. For text (``kind="text"``, a language-modelling task) ``x_*`` and ``y_*`` are
    int64 ``(N, L)`` segments of character indices, ``y`` being ``x`` shifted by one character,
    and ``num_classes`` is the vocabulary size.

    ``extra_tests`` maps a label (``"len200"``) to further ``(x, y)`` test sets, evaluated next
    to the main one and recorded as ``test_<metric>_<label>`` (text: longer test segments).
    ``test_groups`` maps a label to the indices of a part of the test set itself (VQA: the
    questions of one type), scored from the same pass over the test set and recorded alike.

    A model with several inputs gets ``x_*`` as :class:`Inputs` (``kind="vqa"``: image and
    question). ``info`` holds what such a model needs to know beyond shapes (vocabulary size,
    answer names); ``reference`` holds values the run records in its summary next to its own
    (e.g. the question-only prior's test accuracy).
    """

    name: str
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    # The validation split, carved from the training data by load_dataset (dataset.val_fraction);
    # None: none. Model selection reads it; the test set is reported, never selected on.
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    extra_tests: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    test_groups: dict[str, torch.Tensor] = field(default_factory=dict)
    source: str = ""  # where the data came from, when it is worth recording (files, corpus hash)
    # Batched on-device training augmentation (see normbench.data.augment.DeviceAugment):
    # e.g. {"pad": 4, "flip": True} for CIFAR's random crop and horizontal flip; None: none.
    augment: dict | None = None
    info: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
        if isinstance(self.x_train, Inputs):
            return self.x_train.sample_shape
        return tuple(self.x_train.shape[1:])

    def hold_out(self, fraction: float, seed: int) -> TensorData:
        """This data with a ``fraction`` of its training samples moved to the validation split
        (unchanged when its loader set a validation split of its own: Penn Treebank's)."""
        if fraction <= 0 or self.x_val is not None:
            return self
        group = getattr(self.x_train, "group", None)
        if group is None:
            train, val = validation_indices(len(self.x_train), fraction, seed)
        else:  # whole groups (all questions about an image) go to one split
            keys = self.x_train[group]
            unique = keys.unique()
            held = torch.isin(keys, unique[validation_indices(len(unique), fraction, seed)[1]])
            train, val = (~held).nonzero().squeeze(1), held.nonzero().squeeze(1)
        return replace(self, x_train=self.x_train[train], y_train=self.y_train[train],
                       x_val=self.x_train[val], y_val=self.y_train[val])

    def to(self, device: torch.device | str) -> TensorData:
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            x_val=None if self.x_val is None else self.x_val.to(device),
            y_val=None if self.y_val is None else self.y_val.to(device),
            extra_tests={k: (x.to(device), y.to(device)) for k, (x, y) in self.extra_tests.items()},
            test_groups={k: index.to(device) for k, index in self.test_groups.items()},
        )


def standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift and scale both splits by the training set's mean and standard deviation."""
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, (x_test - mean) / std


def permute_positions(x_train: np.ndarray, x_test: np.ndarray, seed: int):
    """Apply one fixed random permutation to the input positions of every sample.

    As in permuted MNIST: the same permutation for every sample and both splits, so the task
    is as learnable by a permutation-invariant model, while locality is destroyed.
    """
    positions = int(np.prod(x_train.shape[2:]))
    perm = np.random.default_rng(seed).permutation(positions)

    def apply(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(x.shape[0], x.shape[1], positions)
        return flat[:, :, perm].reshape(x.shape)

    return apply(x_train), apply(x_test)


def corrupt_labels(y: np.ndarray, fraction: float, num_classes: int, seed: int) -> np.ndarray:
    """Replace a ``fraction`` of the labels by uniformly random classes (Zhang et al. 2017).

    Each label is chosen for corruption with probability ``fraction``, and a chosen label is
    drawn uniformly from all classes (so it may by chance stay correct); ``fraction=1`` gives
    fully random labels.
    """
    if fraction <= 0:
        return y
    rng = np.random.default_rng(seed)
    corrupt = rng.random(len(y)) < fraction
    y = y.copy()
    y[corrupt] = rng.integers(0, num_classes, int(corrupt.sum()))
    return y


def finish(name, kind, x_train, y_train, x_test, y_test, num_classes, cfg) -> TensorData:
    """Apply the options every dataset takes (``permute``, ``label_noise``) and make tensors."""
    if cfg.get("permute", False):
        x_train, x_test = permute_positions(x_train, x_test, seed=cfg.get("permute_seed", 0))
    y_train = corrupt_labels(y_train, float(cfg.get("label_noise", 0.0)), num_classes, seed=cfg.get("seed", 0))
    return TensorData(
        name=name,
        kind=kind,
        x_train=torch.as_tensor(x_train, dtype=torch.float32),
        y_train=torch.as_tensor(y_train, dtype=torch.int64),
        x_test=torch.as_tensor(x_test, dtype=torch.float32),
        y_test=torch.as_tensor(y_test, dtype=torch.int64),
        num_classes=num_classes,
    )


def find_on_disk(cfg, name: str, what: str, find: Callable[[Path], T | None],
                 fetch: Callable[[Path], None] | None = None) -> T:
    """The files of dataset ``name`` under ``dataset.root``, as ``find(root)`` returns them (None:
    missing). ``dataset.root`` is required; only with ``dataset.download=true``, and only when they
    are missing, ``fetch(root)`` downloads them (the one network access). ``what`` names the
    files, for the one-line errors."""
    root = cfg.get("root")
    fetchable = ", and add dataset.download=true to fetch them" if fetch else ""
    if root is None:
        raise ConfigError(f"dataset={name} reads {what} from disk; set dataset.root=DIR{fetchable}")
    root = Path(str(root)).expanduser()
    found = find(root)
    if found is None and fetch is not None and cfg.get("download", False):
        fetch(root)
        found = find(root)
    if found is None:
        raise ConfigError(f"dataset.root={root} lacks {what}; put them there"
                          + (" or add dataset.download=true" if fetch else ""))
    return found


FIXED_SUBSET_SEED = 20_240_601


def fixed_subset(total: int, n: int | None) -> torch.Tensor:
    """``min(n, total)`` indices of a fixed permutation of ``range(total)`` (all when ``n`` is None).

    The same for every run and seed (its own generator, so no training randomness is used):
    runs are scored on the same samples, and a dataset stored in some order gives no biased slice.
    """
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(FIXED_SUBSET_SEED))
    return perm if n is None else perm[:n]


#: The keys of a dataset's config that seed its draw (the generated samples, or the split of a
#: shipped set): with ``dataset.draw=seed`` they follow the run's seed.
DRAW_KEYS = ("generator_seed", "split_seed")


def draw_seed(base: int, seed: int | None) -> int:
    """The seed of a data draw: ``base`` itself for the fixed draw (``seed`` None), else a seed
    mixed from ``base`` and the run's ``seed`` (numpy's SeedSequence: distinct streams for
    distinct pairs, and none equal to the fixed draw's by construction of the mixing)."""
    if seed is None:
        return int(base)
    return int(np.random.SeedSequence([int(base), int(seed)]).generate_state(1)[0])


def validation_indices(total: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)``: indices of ``range(total)`` with ``round(fraction * total)`` of them held
    out for validation, drawn by ``seed`` (fixed per data draw), each part in ascending order."""
    n_val = round(fraction * total)
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


#: The base seed of the validation split (mixed with the run's seed when the draw follows it).
VALIDATION_SEED = 20_241_204
