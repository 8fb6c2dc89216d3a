"""CIFAR-10 and ImageNet on disk (tiny files in the real formats), and on-device augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from vision_data import write_cifar, write_image_folders

from normbench.data import FolderData, load_dataset
from normbench.data.augment import DeviceAugment, crop_flip
from normbench.errors import ConfigError
from normbench.training.batches import EpochSampler, LoaderSource, TensorSource


def cifar_cfg(root, **extra):
    return OmegaConf.create({"name": "cifar10", "root": str(root), "download": False, "augment": True, "pad": 4,
                             **extra})


def test_cifar_reader_reads_pickled_batches_and_normalizes_per_channel(tmp_path):
    arrays = write_cifar(tmp_path, per_batch=8, n_test=6)
    data = load_dataset(cifar_cfg(tmp_path))
    assert data.x_train.shape == (40, 3, 32, 32) and data.x_test.shape == (6, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.kind == "image" and data.num_classes == 10
    assert torch.equal(data.y_train, torch.as_tensor(arrays["y_train"]))
    assert torch.equal(data.y_test, torch.as_tensor(arrays["y_test"]))
    # Per-channel standardization by the training set's statistics.
    assert torch.allclose(data.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(data.x_train.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    # The pixel layout: plane per channel, row-major.
    raw = arrays["x_train"].astype(np.float64) / 255
    mean, std = raw.mean(axis=(0, 2, 3)), raw.std(axis=(0, 2, 3))
    expected = (raw[3, 1, 5, 7] - mean[1]) / std[1]
    assert data.x_train[3, 1, 5, 7].item() == pytest.approx(expected, rel=1e-4)
    assert data.augment == {"pad": 4, "flip": True}
    # The batches folder itself works as the root too; augment=false turns augmentation off.
    assert load_dataset(cifar_cfg(tmp_path / "cifar-10-batches-py", augment=False)).augment is None


def test_cifar_missing_or_corrupt_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="lacks CIFAR-10's files.*dataset.download=true"):
        load_dataset(cifar_cfg(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="set dataset.root=DIR"):
        load_dataset(OmegaConf.create({"name": "cifar10", "root": None}))
    write_cifar(tmp_path, per_batch=2, n_test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="data_batch_3 is not a CIFAR-10 batch") as info:
        load_dataset(cifar_cfg(tmp_path))
    assert "\n" not in str(info.value)


def test_imagenet_folders_load_through_a_dataloader(tmp_path):
    write_image_folders(tmp_path)
    cfg = OmegaConf.create({"name": "imagenet", "root": str(tmp_path), "download": False, "workers": 0,
                            "crop": 32, "resize": 36})
    data = load_dataset(cfg)
    assert isinstance(data, FolderData)
    assert (data.num_classes, data.input_shape, len(data.train), len(data.test)) == (3, (3, 32, 32), 18, 6)
    source = LoaderSource(data, batch_size=4, seed=0, device=torch.device("cpu"))
    assert source.steps_per_epoch == 4
    batches = list(source.batches(0, 0))
    assert len(batches) == 4 and batches[0][0].shape == (4, 3, 32, 32) and batches[0][1].dtype == torch.int64
    assert len(list(source.batches(0, 3))) == 1  # a resumed epoch skips the consumed batches
    x, _ = data.test[0]
    assert x.shape == (3, 32, 32)
    # Evaluation images are deterministic (resize + centre crop); training ones are random crops.
    assert torch.equal(data.train_eval[0][0], data.train_eval[0][0])
    torch.manual_seed(0)
    assert not torch.equal(data.train[0][0], data.train[0][0])


@pytest.mark.parametrize("layout,message", [
    ("none", "lacks the folder train/"),
    ("empty", "holds no class folders"),
    ("download", "cannot be downloaded"),
])
def test_imagenet_bad_roots_are_one_line_errors(tmp_path, layout, message):
    if layout == "empty":
        (tmp_path / "train").mkdir()
        (tmp_path / "val").mkdir()
    cfg = OmegaConf.create({"name": "imagenet", "root": str(tmp_path), "download": layout == "download",
                            "workers": 0})
    with pytest.raises(ConfigError, match=message):
        load_dataset(cfg)


def test_epoch_sampler_shards_are_disjoint_and_seeded():
    shards = [EpochSampler(23, 3, seed=1, rank=r, world=2) for r in range(2)]
    for s in shards:
        s.set_epoch(0)
    a, b = shards[0].indices(), shards[1].indices()
    assert len(a) == len(b) == 9 and not set(a) & set(b)
    shards[0].set_epoch(0, position=2)
    assert shards[0].indices() == a[6:]
    shards[0].set_epoch(1)
    assert shards[0].indices() != a


def test_crop_flip_takes_the_right_window():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    dy, dx, flip = torch.tensor([0, 4]), torch.tensor([3, 1]), torch.tensor([False, True])
    out = crop_flip(x, dy, dx, flip, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    assert torch.equal(out[0], padded[0, :, 0:5, 3:9])
    assert torch.equal(out[1], padded[1, :, 4:9, 1:7].flip(-1))
    assert torch.equal(crop_flip(x, torch.full((2,), 2), torch.full((2,), 2), torch.zeros(2, dtype=torch.bool), 2), x)


def test_device_augment_is_in_bounds_seeded_by_step_and_keeps_shapes():
    aug = DeviceAugment(pad=4, flip=True, seed=3)
    dy, dx, flip = aug.offsets(4096, torch.device("cpu"), step=7)
    assert 0 <= dy.min() and dy.max() <= 8 and 0 <= dx.min() and dx.max() <= 8
    assert set(dy.tolist()) == set(range(9))  # every offset occurs
    assert 0.45 < flip.float().mean() < 0.55
    x = torch.randn(16, 3, 32, 32)
    a, b = aug(x, step=7), aug(x, step=7)
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b)  # same step, same draw
    assert not torch.equal(aug(x, step=8), a)
    assert not torch.equal(DeviceAugment(4, True, seed=3, rank=1)(x, step=7), a)  # ranks differ


def test_tensor_source_shards_epochs_between_ranks(tmp_path):
    write_cifar(tmp_path, per_batch=10, n_test=4)
    data = load_dataset(cifar_cfg(tmp_path, augment=False))
    sources = [TensorSource(data, batch_size=4, seed=0, rank=r, world=2) for r in range(2)]
    assert sources[0].steps_per_epoch == 6  # 50 samples, 25 per rank, 6 batches of 4
    seen = [torch.cat([y for _, y in s.batches(0, 0)]) for s in sources]
    assert all(len(s) == 24 for s in seen)
    x0 = torch.cat([x for x, _ in sources[0].batches(0, 0)])
    x1 = torch.cat([x for x, _ in sources[1].batches(0, 0)])
    # No sample is in both shards.
    flat0, flat1 = x0.flatten(1), x1.flatten(1)
    assert not (torch.cdist(flat0, flat1) == 0).any()
