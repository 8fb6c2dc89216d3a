"""Small files in the real on-disk formats of CIFAR-10 (pickled batches) and ImageNet (image folders)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar(root: Path, per_batch: int = 20, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py/data_batch_1..5`` and ``test_batch`` as CIFAR-10 ships them.

    Each is a pickled dict with ``b'data'``, uint8 ``(N, 3072)`` (1024 red, 1024 green, 1024
    blue values, row-major), ``b'labels'`` (a list of ints), ``b'batch_label'`` and
    ``b'filenames'``. Returns the images ``(N, 3, 32, 32)`` and labels of both splits.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", n_test)]:
        labels = rng.integers(0, 10, n)
        # Class-dependent brightness per channel, so a model can learn something.
        images = rng.integers(0, 128, (n, 3, 32, 32)) + (labels[:, None, None, None] * 12)
        images = images.astype(np.uint8)
        entry = {b"batch_label": name.encode(), b"labels": labels.tolist(),
                 b"data": images.reshape(n, 3072), b"filenames": [f"{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        xs.append(images)
        ys.append(labels)
    return {"x_train": np.concatenate(xs[:5]), "y_train": np.concatenate(ys[:5]), "x_test": xs[5], "y_test": ys[5]}


def write_image_folders(root: Path, classes=("n01440764", "n01443537", "n01484850"), per_class_train: int = 6,
                        per_class_val: int = 2, size: int = 40) -> None:
    """``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (JPEG, plus one PNG per class)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class_train), ("val", per_class_val)):
        for c, wnid in enumerate(classes):
            folder = Path(root) / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = size + int(rng.integers(0, 9)), size + int(rng.integers(0, 9))
                pixels = (rng.integers(0, 80, (h, w, 3)) + 60 * c).astype(np.uint8)
                ext = "png" if i == 0 else "JPEG"
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.{ext}")
