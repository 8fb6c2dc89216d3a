"""ImageNet (ILSVRC-2012) as image folders on disk, read by a DataLoader with workers.

``dataset.root`` holds ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (the usual layout after
sorting the validation images into class folders); any folder of class subfolders of images
works (torchvision's ``ImageFolder``). Classes are the sorted subfolder names of ``train``; ``val``
must have the same ones. ImageNet cannot be downloaded by a program (its licence needs a
login), so ``dataset.download=true`` is refused with a message.

Training transform: ``RandomResizedCrop(crop)`` (scale 0.08-1, aspect 3/4-4/3) and a horizontal
flip; evaluation: ``Resize(resize)`` of the short side and ``CenterCrop(crop)`` (224 and 256 by
default, as in the GN paper's 224 centre crops); both then normalize each channel by ImageNet's
mean and standard deviation. Decoding and augmentation run in ``dataset.workers`` processes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

from normbench.errors import ConfigError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class FolderData:
    """A dataset too large for memory: torchvision datasets read by DataLoaders.

    ``train`` yields augmented training samples, ``train_eval`` the first
    ``trainer.train_eval_samples`` training images with the evaluation transform (for
    ``train_loss``/``train_acc``), ``test`` the validation set.
    """

    name: str
    kind: str
    train: object
    train_eval: object
    test: object
    num_classes: int
    input_shape: tuple[int, ...]
    workers: int = 8
    source: str = ""
    extra_tests: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)       # as TensorData's: what a model may need to know
    reference: dict = field(default_factory=dict)  # as TensorData's: values copied into the summary

    val: object = None    # the validation split: training images with the evaluation transform
    plain: object = None  # every training image with the evaluation transform (the split's source)

    def __len__(self) -> int:
        return len(self.train)

    def hold_out(self, fraction: float, seed: int) -> FolderData:
        """This data with a ``fraction`` of its training images moved to the validation split
        (read with the evaluation transform)."""
        if fraction <= 0:
            return self
        import torch

        from normbench.data.base import validation_indices

        train, val = validation_indices(len(self.train), fraction, seed)
        subset = torch.utils.data.Subset
        kept = set(train.tolist())  # train_eval scores training images only
        eval_order = [i for i in self.train_eval.indices if i in kept]
        return replace(self, train=subset(self.train, train.tolist()), val=subset(self.plain, val.tolist()),
                       train_eval=subset(self.plain, eval_order))


def _image_folder(path: Path, transform):
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:  # no class folders / no images
        raise ConfigError(f"dataset=imagenet: {path} holds no class folders of images ({exc}); expected "
                          f"{path}/<wnid>/*.JPEG") from None


def load(cfg) -> FolderData:
    import torch
    from torchvision import transforms as T

    root = cfg.get("root")
    if cfg.get("download", False):
        raise ConfigError("dataset=imagenet cannot be downloaded by a program (its licence needs a login at "
                          "image-net.org); put train/<wnid>/*.JPEG and val/<wnid>/*.JPEG under dataset.root and "
                          "set dataset.download=false")
    if root is None:
        raise ConfigError("dataset=imagenet reads image folders; set dataset.root=DIR with DIR/train/<wnid>/*.JPEG "
                          "and DIR/val/<wnid>/*.JPEG")
    root = Path(str(root)).expanduser()
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ConfigError(f"dataset.root={root} lacks the folder {split}/ (expected {root}/{split}/<wnid>/*.JPEG)")
    crop, resize = int(cfg.get("crop", 224)), int(cfg.get("resize", 256))
    if crop < 1 or resize < crop:
        raise ConfigError(f"dataset.crop={crop} and dataset.resize={resize}: need 1 <= crop <= resize")
    workers = cfg.get("workers", 8)
    normalize = T.Normalize(MEAN, STD)
    train_tf = T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    eval_tf = T.Compose([T.Resize(resize), T.CenterCrop(crop), T.ToTensor(), normalize])
    train = _image_folder(root / "train", train_tf)
    train_plain = copy.copy(train)  # the same file list (scanned once), with the evaluation transform
    train_plain.transform = eval_tf
    test = _image_folder(root / "val", eval_tf)
    if test.classes != train.classes:
        missing = sorted(set(train.classes) ^ set(test.classes))[:5]
        raise ConfigError(f"dataset.root={root}: train/ and val/ have different class folders (e.g. {missing}); "
                          "both need one folder per class")
    n_train, n_test = cfg.get("train_samples"), cfg.get("test_samples")
    subset = torch.utils.data.Subset
    if n_train is not None:
        train = subset(train, range(min(n_train, len(train))))
    if n_test is not None:
        test = subset(test, range(min(n_test, len(test))))
    if cfg.get("label_noise", 0.0) or cfg.get("permute", False):
        raise ConfigError("dataset=imagenet does not support dataset.label_noise or dataset.permute; "
                          "use dataset=cifar10 or mnist for those")
    n_eval = min(int(cfg.get("train_eval_samples", 10_000)), len(train))
    # The first n_eval images of a random but fixed order, so every class shows up.
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n_eval].tolist()
    train_eval = subset(train_plain, order)
    return FolderData(name="imagenet", kind="image", train=train, train_eval=train_eval, test=test, plain=train_plain,
                      num_classes=len(train_plain.classes), input_shape=(3, crop, crop), workers=workers,
                      source=f"{root}: {len(train)} train, {len(test)} val images, {len(train_plain.classes)} classes")
