"""Datasets: each is one loader module, one line in :data:`DATASETS` and one YAML in
``configs/dataset/``. A loader turns its config group into a :class:`TensorData` (or, for image
folders, a :class:`FolderData`); :func:`~normbench.data.base.find_on_disk` is the shared
"``dataset.root`` required, download only when asked" step of the datasets read from disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from normbench.data import (
    cifar10,
    clevr,
    clevr_like,
    digits,
    imagenet,
    mnist,
    mnist1d,
    sort_of_clevr,
    text,
)
from normbench.data.base import TensorData
from normbench.data.imagenet import FolderData
from normbench.errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    """A dataset: its ``dataset=`` name, the kind of data it gives (``TensorData.kind``, known
    before loading, so that a model that cannot read it is refused before any file is read or any
    set generated), and its loader. Its one line for ``normbench list`` is its YAML's
    ``description``."""

    name: str
    kind: str
    load: Callable


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("mnist1d", "signal", mnist1d.load),
    Dataset("digits", "image", digits.load),
    Dataset("mnist", "image", mnist.load),
    Dataset("cifar10", "image", cifar10.load),
    Dataset("imagenet", "image", imagenet.load),
    Dataset("text", "text", text.load),
    Dataset("clevr_like", "vqa", clevr_like.load),
    Dataset("sort_of_clevr", "vqa", sort_of_clevr.load),
    Dataset("clevr", "vqa", clevr.load),
)}


def register_dataset(dataset: Dataset) -> Dataset:
    """Add ``dataset`` to :data:`DATASETS` (a user's module: see ``plugins`` and ``examples/``)."""
    DATASETS[dataset.name] = dataset
    return dataset


def load_dataset(cfg) -> TensorData | FolderData:
    """The dataset named by ``cfg.name``, with ``permute`` and ``label_noise`` applied.

    Small datasets come as :class:`TensorData` (held on the device); image folders (ImageNet) as
    :class:`~normbench.data.imagenet.FolderData`, read by a DataLoader.
    """
    name = cfg.name
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'; known datasets: {', '.join(DATASETS)}")
    noise = float(cfg.get("label_noise", 0.0))
    if not 0.0 <= noise <= 1.0:
        raise ConfigError(f"dataset.label_noise={noise} is not a fraction; use a value in [0, 1]")
    return DATASETS[name].load(cfg)


__all__ = ["DATASETS", "Dataset", "FolderData", "TensorData", "load_dataset", "register_dataset"]
