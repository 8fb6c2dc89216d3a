"""MNIST-1D (Greydanus 2020), generated offline by the ``mnist1d`` package.

The standard set has 5000 signals of length 40 in 10 classes, split 4000/1000; it is made
from fixed templates with a fixed seed, so every machine generates the same data. The result
is cached as ``.npz`` (generation takes about a second per 5000 samples).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json

import numpy as np

from normbench.data.base import TensorData, cache_dir, finish, standardize
from normbench.records import atomic_write_bytes


def generate(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> dict[str, np.ndarray]:
    """The arrays ``x``, ``y``, ``x_test``, ``y_test`` of MNIST-1D with the package's defaults."""
    # The cache key needs no import of mnist1d (which pulls in scipy and matplotlib).
    key_fields = {"num_samples": num_samples, "train_split": train_split, "seed": seed,
                  "mnist1d": importlib.metadata.version("mnist1d")}
    key = hashlib.sha1(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"mnist1d-{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    state = np.random.get_state()  # make_dataset reseeds numpy's global RNG; leave it as it was
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    arrays = {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return arrays


def load(cfg) -> TensorData:
    n, split = cfg.get("num_samples", 5000), cfg.get("train_split", 0.8)
    if cfg.get("num_test") is not None:
        # The same number of training signals, and num_test test signals, from one larger draw:
        # a larger test set narrows the test sampling error at little cost (it is generated).
        n_train = int(n * split)
        n, split = n_train + int(cfg.num_test), (n_train + 0.5) / (n_train + int(cfg.num_test))
    arrays = generate(n, split, cfg.get("generator_seed", 42))
    # (N, 40) -> (N, 1, 40): one channel, 40 positions.
    x_train, x_test = standardize(arrays["x"][:, None, :], arrays["x_test"][:, None, :])
    return finish("mnist1d", "signal", x_train, arrays["y"], x_test, arrays["y_test"], 10, cfg)
