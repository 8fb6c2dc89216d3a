"""Datasets: each loader turns its config group into a :class:`TensorData`."""

from __future__ import annotations

from normbench.data import cifar10, clevr, clevr_like, digits, imagenet, mnist, mnist1d, text
from normbench.data.base import TensorData
from normbench.data.imagenet import FolderData
from normbench.errors import ConfigError

DATASET_DESCRIPTIONS = {
    "mnist1d": "MNIST-1D: 4000/1000 signals of length 40, 10 classes, generated offline (default)",
    "digits": "scikit-learn digits: 1437/360 grey 8x8 images, 10 classes, ships offline",
    "mnist": "MNIST from its IDX files in dataset.root: 60000/10000 28x28 digits (sequential/permuted with model=lstm)",
    "cifar10": "CIFAR-10 from its pickled batches in dataset.root: 50000/10000 32x32 RGB images, crop+flip on the device",
    "imagenet": "ImageNet image folders (dataset.root/train, val): DataLoader with workers, 224 crops",
    "text": "character-level text for language modelling (bits per character): a file, Penn Treebank's "
            "char files in dataset.root, or Python's documentation topics (default, offline)",
    "clevr_like": "a CLEVR-like VQA set (rendered scenes, CLEVR's 5 question types, balanced answers), generated "
                  "offline and cached; default for model=film",
    "clevr": "CLEVR v1.0 from dataset.root (images/, questions/; val serves as test), pixels or ResNet-101 features",
}
# The kind of data each dataset gives (TensorData.kind), known before loading it, so that a model
# that cannot read it is refused before any file is read or any set is generated.
DATASET_KINDS = {"mnist1d": "signal", "digits": "image", "mnist": "image", "text": "text", "cifar10": "image",
                 "imagenet": "image", "clevr_like": "vqa", "clevr": "vqa"}
_LOADERS = {"mnist1d": mnist1d.load, "digits": digits.load, "mnist": mnist.load, "text": text.load,
            "cifar10": cifar10.load, "imagenet": imagenet.load, "clevr_like": clevr_like.load, "clevr": clevr.load}


def load_dataset(cfg) -> TensorData | FolderData:
    """The dataset named by ``cfg.name``, with ``permute`` and ``label_noise`` applied.

    Small datasets come as :class:`TensorData` (held on the device); image folders (ImageNet) as
    :class:`~normbench.data.imagenet.FolderData`, read by a DataLoader.
    """
    name = cfg.name
    if name not in _LOADERS:
        raise ConfigError(f"unknown dataset '{name}'; known datasets: {', '.join(_LOADERS)}")
    noise = float(cfg.get("label_noise", 0.0))
    if not 0.0 <= noise <= 1.0:
        raise ConfigError(f"dataset.label_noise={noise} is not a fraction; use a value in [0, 1]")
    return _LOADERS[name](cfg)


__all__ = ["DATASET_KINDS", "DATASET_DESCRIPTIONS", "FolderData", "TensorData", "load_dataset"]
