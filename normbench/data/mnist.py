"""MNIST (LeCun et al. 1998) from its four IDX files on disk: 60,000/10,000 28x28 grey digits.

``dataset.root`` is a directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or gzipped (``.gz``), as
distributed by Yann LeCun's site and its mirrors; torchvision's layout (``ROOT/MNIST/raw``) is
found too. With ``dataset.download=true`` missing files are fetched by torchvision into
``ROOT/MNIST/raw``; nothing is downloaded otherwise.

Images become ``(N, 1, 28, 28)`` float32, scaled to [0, 1] and standardized by the training
set's mean and standard deviation. An LSTM reads them pixel by pixel (sequential MNIST, 784
steps) or row by row; ``dataset.permute=true`` gives permuted MNIST.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from normbench.data.base import TensorData, find_on_disk, finish, standardize
from normbench.errors import ConfigError

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (raw, or gzip when the name ends in ``.gz``) as a numpy array.

    The format: two zero bytes, a type byte (0x08 unsigned byte, ...), a byte giving the number
    of dimensions, each dimension as a big-endian int32, then the data in C order.
    """
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ConfigError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ConfigError(f"{path} is truncated or corrupt: its header promises {shape} "
                          f"({expected} bytes of data), the file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def find_files(root: Path) -> dict[str, Path] | None:
    """The four files under ``root`` (or ``root/MNIST/raw``), raw or gzipped; None if any is missing."""
    for directory in (root, root / "MNIST" / "raw"):
        found = {}
        for key, name in FILES.items():
            for candidate in (directory / name, directory / f"{name}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(FILES):
            return found
    return None


def _fetch(root: Path) -> None:
    from torchvision.datasets import MNIST

    MNIST(str(root), train=True, download=True)


def load(cfg) -> TensorData:
    files = find_on_disk(cfg, "mnist", f"MNIST's files ({', '.join(FILES.values())}, raw or .gz)", find_files,
                         _fetch)
    root = Path(str(cfg.root)).expanduser()
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ConfigError(f"MNIST {split} files in {root} disagree: images {x.shape}, labels {y.shape}")
    limits = {"train": cfg.get("train_samples"), "test": cfg.get("test_samples")}
    x_train, y_train = arrays["x_train"][: limits["train"]], arrays["y_train"][: limits["train"]]
    x_test, y_test = arrays["x_test"][: limits["test"]], arrays["y_test"][: limits["test"]]
    x_train = x_train.astype(np.float32)[:, None] / 255.0
    x_test = x_test.astype(np.float32)[:, None] / 255.0
    x_train, x_test = standardize(x_train, x_test)
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    return finish("mnist", "image", x_train, y_train, x_test, y_test, 10, cfg)
