"""CIFAR-10 (Krizhevsky 2009) from its pickled Python batches on disk: 50,000/10,000 32x32 RGB images.

``dataset.root`` is a directory holding ``cifar-10-batches-py/`` (or that directory itself) with
``data_batch_1`` ... ``data_batch_5`` and ``test_batch``: pickled dicts with ``b'data'``, uint8
``(N, 3072)`` rows (1024 red, 1024 green, 1024 blue values, each plane row-major 32x32) and
``b'labels'``, a list of class indices. They are read here, not through torchvision's
``CIFAR10`` class (which checks md5 sums of the full files), so any files in the real format
work. ``dataset.download=true`` fetches and unpacks the archive with torchvision's downloader
(checked by its md5) when the files are missing; nothing is downloaded otherwise.

Images become ``(N, 3, 32, 32)`` float32 in [0, 1], normalized per channel by the training
set's mean and standard deviation (``dataset.normalize``), and live on the training device for
the whole run. Training batches are augmented there (``dataset.augment``: a random crop of the
image padded by ``dataset.pad``=4 pixels, and a horizontal flip with probability 1/2, as in He et
al. 2016), batched, without a Python loop over samples.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np

from normbench.data.base import TensorData, find_on_disk, finish
from normbench.errors import ConfigError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as ``(images (N, 3, 32, 32) uint8, labels (N,) int64)``."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
        data = np.asarray(entry[b"data"], dtype=np.uint8)
        labels = np.asarray(entry.get(b"labels", entry.get(b"fine_labels")), dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{path} is not a CIFAR-10 batch (a pickled dict with b'data' and b'labels'): {exc}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ConfigError(f"{path}: expected b'data' of shape (N, 3072) and N labels, got {data.shape} and {len(labels)}")
    return data.reshape(-1, 3, 32, 32), labels


def find_folder(root: Path) -> Path | None:
    for folder in (root / FOLDER, root):
        if all((folder / name).is_file() for name in TRAIN_FILES + TEST_FILES):
            return folder
    return None


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images ``(N, C, H, W)``, in [0, 1] units."""
    x = x.astype(np.float64) / 255.0
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))


def _fetch(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(URL, str(root), filename="cifar-10-python.tar.gz", md5=MD5)


def load(cfg) -> TensorData:
    folder = find_on_disk(cfg, "cifar10", f"CIFAR-10's files, pickled batches ({FOLDER}/data_batch_1..5 and test_batch)",
                          find_folder, _fetch)
    train = [read_batch(folder / name) for name in TRAIN_FILES]
    x_train, y_train = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
    x_test, y_test = read_batch(folder / TEST_FILES[0])
    n_train, n_test = cfg.get("train_samples"), cfg.get("test_samples")
    x_train, y_train, x_test, y_test = x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test]
    mean, std = channel_stats(x_train)
    if cfg.get("normalize", True):
        shift, scale = mean.reshape(1, 3, 1, 1), std.reshape(1, 3, 1, 1)
    else:
        shift, scale = np.zeros((1, 3, 1, 1)), np.ones((1, 3, 1, 1))
    x_train = ((x_train.astype(np.float32) / 255.0 - shift) / scale).astype(np.float32)
    x_test = ((x_test.astype(np.float32) / 255.0 - shift) / scale).astype(np.float32)
    data = finish("cifar10", "image", x_train, y_train, x_test, y_test, 10, cfg)
    augment = {"pad": int(cfg.get("pad", 4)), "flip": True} if cfg.get("augment", True) else None
    return replace(data, augment=augment,
                   source=f"{folder}: {len(x_train)} train, {len(x_test)} test; channel mean "
                          f"{np.round(mean, 4).tolist()}, std {np.round(std, 4).tolist()}")
