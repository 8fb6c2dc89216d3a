import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from normbench.api import compose
from normbench.data import load_dataset
from normbench.data.base import corrupt_labels, permute_positions
from normbench.errors import ConfigError


def dataset(name, **overrides):
    return load_dataset(compose([f"dataset={name}"] + [f"dataset.{k}={v}" for k, v in overrides.items()]).dataset)


def test_mnist1d_is_the_standard_split_and_deterministic():
    d = dataset("mnist1d")
    assert d.kind == "signal" and d.num_classes == 10
    # The standard 4000/1000 split, 400 of the training signals held out for validation
    assert d.x_train.shape == (3600, 1, 40) and d.x_val.shape == (400, 1, 40) and d.x_test.shape == (1000, 1, 40)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert set(d.y_train.tolist()) == set(range(10)) == set(d.y_val.tolist())
    whole = torch.cat([d.x_train, d.x_val])  # standardized by the whole training part
    assert abs(whole.mean().item()) < 1e-4 and abs(whole.std().item() - 1) < 1e-3
    again = dataset("mnist1d")
    assert torch.equal(d.x_train, again.x_train) and torch.equal(d.y_test, again.y_test)


def test_mnist1d_size_option():
    d = dataset("mnist1d", num_samples=1000)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (720, 80, 200)
    # A larger test set from a larger draw, the same number of training signals
    d = dataset("mnist1d", num_samples=1000, num_test=3000)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (720, 80, 3000)


def test_digits_images_and_stratified_split():
    d = dataset("digits")
    assert d.kind == "image" and d.x_train.shape == (1293, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.x_val.shape == (144, 1, 8, 8)
    counts = torch.bincount(d.y_test, minlength=10)
    assert counts.min() >= 35  # stratified: every class is in the test set in proportion


def test_permute_positions_is_one_permutation_for_every_sample_and_split():
    x_train = np.arange(3 * 2 * 12, dtype=float).reshape(3, 2, 12)
    x_test = -np.arange(2 * 2 * 12, dtype=float).reshape(2, 2, 12)
    pt, pe = permute_positions(x_train, x_test, seed=0)
    perm = [int(np.where(x_train[0, 0] == v)[0][0]) for v in pt[0, 0]]
    assert sorted(perm) == list(range(12)) and perm != list(range(12))
    np.testing.assert_array_equal(pt, x_train[:, :, perm])  # all channels, all samples
    np.testing.assert_array_equal(pe, x_test[:, :, perm])
    images = np.arange(2 * 1 * 3 * 4, dtype=float).reshape(2, 1, 3, 4)
    pi, _ = permute_positions(images, images, seed=0)
    assert pi.shape == images.shape and sorted(pi[0].ravel()) == sorted(images[0].ravel())


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_permute_option_keeps_each_sample_values_and_labels(name):
    plain, permuted = dataset(name), dataset(name, permute="true")
    a, b = plain.x_train.flatten(1), permuted.x_train.flatten(1)
    assert not torch.equal(a, b)
    torch.testing.assert_close(a.sort(1).values, b.sort(1).values)
    assert torch.equal(plain.y_train, permuted.y_train)


def test_label_noise_replaces_the_given_fraction_of_training_labels_only():
    clean, noisy = dataset("mnist1d"), dataset("mnist1d", label_noise=0.5)
    changed = (clean.y_train != noisy.y_train).float().mean().item()
    assert 0.5 * 0.9 - 0.04 < changed < 0.5 * 0.9 + 0.04  # a corrupted label stays right 1 time in 10
    assert torch.equal(clean.y_test, noisy.y_test)
    assert torch.equal(clean.x_train, noisy.x_train)


def test_corrupt_labels_extremes():
    y = np.arange(1000) % 10
    assert np.array_equal(corrupt_labels(y, 0.0, 10, seed=0), y)
    random = corrupt_labels(y, 1.0, 10, seed=0)
    assert 0.05 < (random == y).mean() < 0.15  # random labels: right by chance only
    assert np.bincount(random, minlength=10).min() > 60


def test_bad_label_noise_and_unknown_dataset():
    with pytest.raises(ConfigError, match="label_noise=1.5"):
        dataset("mnist1d", label_noise=1.5)
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        load_dataset(OmegaConf.create({"name": "nope"}))


def test_dataset_kinds_known_before_loading_agree_with_the_loaders(tmp_path, monkeypatch):
    from normbench.cli.hydra_app import CONFIG_DIR
    from normbench.data import DATASETS

    assert set(DATASETS) == {p.stem for p in (CONFIG_DIR / "dataset").glob("*.yaml")}  # one YAML each
    for name in ("mnist1d", "digits"):
        assert load_dataset(compose([f"dataset={name}"]).dataset).kind == DATASETS[name].kind
    text = compose(["model=lstm", "dataset=text", "dataset.max_train_chars=20000"]).dataset
    assert load_dataset(text).kind == DATASETS["text"].kind
    small_clevr = ["dataset=clevr_like", "dataset.train_images=6", "dataset.val_images=4",
                   "dataset.questions_per_image=2", "dataset.image_size=16"]
    monkeypatch.setenv("NORMBENCH_CACHE", str(tmp_path))
    assert load_dataset(compose(["model=film", *small_clevr]).dataset).kind == DATASETS["clevr_like"].kind


def test_a_model_that_cannot_read_the_data_is_refused_before_the_set_is_generated(tmp_path, monkeypatch):
    from normbench.training.trainer import Trainer

    monkeypatch.setenv("NORMBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match=r"model=cnn cannot read dataset=clevr_like \(vqa data\)"):
        Trainer(compose(["model=cnn", "dataset=clevr_like"]), tmp_path / "run")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.png"))


def _rows(x: torch.Tensor) -> set:
    return {tuple(r) for r in x.flatten(1).tolist()}


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_the_validation_split_is_carved_from_training_data_and_fixed(name):
    """Validation samples are training samples the run never trains on, the same in every run of
    a fixed draw, and none of them is a test sample."""
    whole = dataset(name, val_fraction=0)
    d, again = dataset(name), load_dataset(compose([f"dataset={name}", "seed=7"]).dataset, seed=7)
    assert whole.x_val is None and len(d.x_train) + len(d.x_val) == len(whole.x_train)
    assert _rows(d.x_val) | _rows(d.x_train) == _rows(whole.x_train) and not _rows(d.x_val) & _rows(d.x_train)
    assert not _rows(d.x_val) & _rows(d.x_test)
    assert torch.equal(d.x_val, again.x_val) and torch.equal(d.x_test, again.x_test)  # seed 7, fixed draw


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_a_draw_that_follows_the_seed_samples_new_data_per_seed(name):
    """dataset.draw=seed: each seed draws its own data (MNIST-1D: new signals; digits: a new
    train/test split) and validation split; the same seed draws the same; the fixed draw is
    none of them."""
    def drawn(seed):
        cfg = compose([f"dataset={name}", "dataset.draw=seed", f"seed={seed}"])
        return load_dataset(cfg.dataset, seed=seed)

    a, b, a2, fixed = drawn(1), drawn(2), drawn(1), dataset(name)
    for key in ("x_train", "x_val", "x_test"):
        assert torch.equal(getattr(a, key), getattr(a2, key)), key
        assert not torch.equal(getattr(a, key), getattr(b, key)), key
        assert not torch.equal(getattr(a, key), getattr(fixed, key)), key
    assert a.x_test.shape == fixed.x_test.shape and len(a.x_val) == len(fixed.x_val)


def test_a_draw_that_follows_the_seed_needs_a_seeded_dataset():
    cfg = OmegaConf.merge(OmegaConf.to_container(compose(["dataset=text"]).dataset), {"draw": "seed"})
    with pytest.raises(ConfigError, match="dataset.draw=seed: dataset=text has no key that seeds its draw"):
        load_dataset(cfg, seed=1)
