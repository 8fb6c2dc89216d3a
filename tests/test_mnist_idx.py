"""MNIST from IDX files on disk: tiny files in the real format, raw and gzipped."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from normbench.data import load_dataset
from normbench.data.mnist import FILES, read_idx
from normbench.errors import ConfigError


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def write_mnist(root: Path, n_train=20, n_test=10, gz=False, size=28) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, size, size)),
        "y_train": rng.integers(0, 10, n_train),
        "x_test": rng.integers(0, 256, (n_test, size, size)),
        "y_test": rng.integers(0, 10, n_test),
    }
    root.mkdir(parents=True, exist_ok=True)
    for key, name in FILES.items():
        write_idx(root / name, arrays[key], gz=gz)
    return arrays


def mnist_cfg(root, **extra):
    return OmegaConf.create({"name": "mnist", "root": None if root is None else str(root), "download": False, "train_samples": None,
                             "test_samples": None, "permute": False, "permute_seed": 0, "label_noise": 0.0,
                             "seed": 0, **extra})


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_reads_idx_files(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    data = load_dataset(mnist_cfg(tmp_path))
    assert data.kind == "image" and data.x_train.shape == (20, 1, 28, 28) and data.x_test.shape == (10, 1, 28, 28)
    assert torch.equal(data.y_train, torch.as_tensor(arrays["y_train"]))
    # Standardized by the training set: same order of pixels, mean 0 and std 1 over the training images.
    x = data.x_train.double()
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(unbiased=False).item() - 1) < 1e-4
    raw = torch.as_tensor(arrays["x_train"], dtype=torch.float64)
    assert torch.corrcoef(torch.stack([raw.flatten(), x.flatten()]))[0, 1] > 0.9999


def test_torchvision_layout_subsets_and_permutation(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw")
    data = load_dataset(mnist_cfg(tmp_path, train_samples=8, test_samples=4))
    assert len(data.x_train) == 8 and len(data.x_test) == 4
    permuted = load_dataset(mnist_cfg(tmp_path, train_samples=8, test_samples=4, permute=True))
    assert not torch.equal(permuted.x_train, data.x_train)
    assert torch.equal(permuted.x_train.flatten(1).sort(1).values, data.x_train.flatten(1).sort(1).values)


def test_read_idx_rejects_corrupt_files(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ConfigError, match="not an IDX file"):
        read_idx(path)
    write_idx(path, np.zeros((3, 4, 4)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ConfigError, match="truncated"):
        read_idx(path)


def test_missing_root_or_files_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="dataset.root=DIR"):
        load_dataset(mnist_cfg(None))
    with pytest.raises(ConfigError, match="lacks MNIST's files"):
        load_dataset(mnist_cfg(tmp_path))


def test_sequential_mnist_with_the_lstm(tmp_path):
    from normbench.models import build_model

    write_mnist(tmp_path, size=6)  # small images in the same format keep this fast
    data = load_dataset(mnist_cfg(tmp_path))
    norm = OmegaConf.create({"name": "batch", "momentum": 0.1, "eps": 1e-5, "affine": True, "gamma_init": None})
    model = build_model(OmegaConf.create({"name": "lstm", "hidden_size": 8, "h0_noise": 0.1}), norm, data)
    assert model.max_steps == 36  # pixel by pixel
    out = model(data.x_train)
    out.sum().backward()
    assert out.shape == (20, 10)
