"""scikit-learn's handwritten digits: 1797 8x8 grey images in 10 classes, shipped offline."""

from __future__ import annotations

from normbench.data.base import TensorData, finish, standardize


def load(cfg) -> TensorData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype("float32")[:, None, :, :]  # (N, 1, 8, 8), values 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=cfg.get("test_fraction", 0.2), random_state=cfg.get("split_seed", 0),
        stratify=digits.target,
    )
    x_train, x_test = standardize(x_train, x_test)
    return finish("digits", "image", x_train, y_train, x_test, y_test, 10, cfg)
