"""Datasets: each is one loader module, one line in :data:`DATASETS` and one YAML in
``configs/dataset/``. A loader turns its config group into a :class:`TensorData` (or, for image
folders, a :class:`FolderData`); :func:`~normbench.data.base.find_on_disk` is the shared
"``dataset.root`` required, download only when asked" step of the datasets read from disk.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import OmegaConf

from normbench.data.base import DRAW_KEYS, VALIDATION_SEED, TensorData, draw_seed
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


def _loader(module: str) -> Callable:
    """``normbench.data.<module>.load``, imported when a run loads the dataset: the generator modules
    run as programs (``python -m normbench.data.clevr_like``), which an import here would make run twice."""
    return lambda cfg: importlib.import_module(f"normbench.data.{module}").load(cfg)


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("mnist1d", "signal", _loader("mnist1d")),
    Dataset("digits", "image", _loader("digits")),
    Dataset("mnist", "image", _loader("mnist")),
    Dataset("cifar10", "image", _loader("cifar10")),
    Dataset("imagenet", "image", _loader("imagenet")),
    Dataset("text", "text", _loader("text")),
    Dataset("clevr_like", "vqa", _loader("clevr_like")),
    Dataset("sort_of_clevr", "vqa", _loader("sort_of_clevr")),
    Dataset("clevr", "vqa", _loader("clevr")),
)}


def register_dataset(dataset: Dataset) -> Dataset:
    """Add ``dataset`` to :data:`DATASETS` (a user's module: see ``plugins`` and ``examples/``)."""
    DATASETS[dataset.name] = dataset
    return dataset


def load_dataset(cfg, seed: int = 0) -> TensorData | FolderData:
    """The dataset named by ``cfg.name`` for a run of seed ``seed``, with ``permute`` and
    ``label_noise`` applied and ``val_fraction`` of the training samples held out for validation.

    The draw: with ``dataset.draw=fixed`` (the default) every run gets the same data; with
    ``dataset.draw=seed`` the keys that seed the data (:data:`~normbench.data.base.DRAW_KEYS`: a
    generated set's ``generator_seed``, a shipped set's ``split_seed``) and the validation split
    follow ``seed``, so that seeds sample the data too and an interval over seeds covers it.

    Small datasets come as :class:`TensorData` (held on the device); image folders (ImageNet) as
    :class:`~normbench.data.imagenet.FolderData`, read by a DataLoader.
    """
    name = cfg.name
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'; known datasets: {', '.join(DATASETS)}")
    noise = float(cfg.get("label_noise", 0.0))
    if not 0.0 <= noise <= 1.0:
        raise ConfigError(f"dataset.label_noise={noise} is not a fraction; use a value in [0, 1]")
    follow = cfg.get("draw", "fixed") == "seed"
    if follow:
        keys = [k for k in DRAW_KEYS if k in cfg]
        if not keys:
            raise ConfigError(f"dataset.draw=seed: dataset={name} has no key that seeds its draw "
                              f"({' or '.join(DRAW_KEYS)}); use dataset.draw=fixed")
        cfg = OmegaConf.merge(cfg, {k: draw_seed(cfg[k], seed) for k in keys})
    data = DATASETS[name].load(cfg)
    return data.hold_out(float(cfg.get("val_fraction", 0.0)), draw_seed(VALIDATION_SEED, seed if follow else None))


__all__ = ["DATASETS", "Dataset", "FolderData", "TensorData", "load_dataset", "register_dataset"]
