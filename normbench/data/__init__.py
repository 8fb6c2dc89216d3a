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
    """A dataset: its ``dataset=`` name, one line for ``normbench list``, the kind of data it gives
    (``TensorData.kind``, known before loading, so that a model that cannot read it is refused
    before any file is read or any set generated), and its loader."""

    name: str
    description: str
    kind: str
    load: Callable


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("mnist1d", "MNIST-1D: 4000/1000 signals of length 40, 10 classes, generated offline (default)", "signal",
            mnist1d.load),
    Dataset("digits", "scikit-learn digits: 1437/360 grey 8x8 images, 10 classes, ships offline", "image", digits.load),
    Dataset("mnist", "MNIST from its IDX files in dataset.root: 60000/10000 28x28 digits (sequential/permuted with "
            "model=lstm)", "image", mnist.load),
    Dataset("cifar10", "CIFAR-10 from its pickled batches in dataset.root: 50000/10000 32x32 RGB images, crop+flip on "
            "the device", "image", cifar10.load),
    Dataset("imagenet", "ImageNet image folders (dataset.root/train, val): DataLoader with workers, 224 crops", "image",
            imagenet.load),
    Dataset("text", "character-level text for language modelling (bits per character): a file, Penn Treebank's char "
            "files in dataset.root, or Python's documentation topics (default, offline)", "text", text.load),
    Dataset("clevr_like", "a CLEVR-like VQA set (rendered scenes, CLEVR's 5 question types, balanced answers), "
            "generated offline and cached; default for model=film", "vqa", clevr_like.load),
    Dataset("sort_of_clevr", "a Sort-of-CLEVR VQA set (6 uniquely coloured objects, non-relational and relational "
            "questions, balanced answers), generated offline in seconds; FiLM's small-scale proxy", "vqa",
            sort_of_clevr.load),
    Dataset("clevr", "CLEVR v1.0 from dataset.root (images/, questions/; val serves as test), pixels or ResNet-101 "
            "features", "vqa", clevr.load),
)}


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


__all__ = ["DATASETS", "Dataset", "FolderData", "TensorData", "load_dataset"]
