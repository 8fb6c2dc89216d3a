"""Precomputed image features for FiLM: ResNet-101's conv4 (``layer3``) maps, computed once, cached.

Perez et al. (2018) feed FiLM with the frozen conv4 features of an ImageNet ResNet-101 on
224x224 images: 1024 maps of 14x14. ``dataset.features=resnet101`` computes them with
torchvision's ``resnet101``: weights from ``dataset.resnet_weights=PATH`` (a state dict saved
from torchvision's ``ResNet101_Weights.IMAGENET1K_V1``, or any compatible one), or fetched by
torchvision with ``dataset.download=true`` (the only path that touches the network), or
``dataset.resnet_weights=random`` for a randomly initialised network (seed 0: for tests and
as a control, not for results). Features are stored as float16 in the cache directory, keyed
by the images' bytes and the weights, so each set of images is processed once.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from normbench.data.imagenet import MEAN, STD
from normbench.errors import ConfigError
from normbench.records import atomic_write_bytes

_MEAN = torch.tensor(MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(STD).view(1, 3, 1, 1)


def _weights_id(weights, download: bool) -> str:
    if weights == "random":
        return "random-seed0"
    if weights is not None:
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise ConfigError(f"dataset.resnet_weights={weights} is not a file; give a ResNet-101 state dict "
                              "(.pth), or dataset.download=true to fetch ImageNet weights with torchvision")
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if download:
        return "torchvision-IMAGENET1K_V1"
    raise ConfigError("dataset.features=resnet101 needs weights: dataset.resnet_weights=PATH (a ResNet-101 state "
                      "dict), dataset.download=true (torchvision's ImageNet weights), or dataset.resnet_weights=random")


def build_resnet101_conv4(weights, download: bool) -> torch.nn.Module:
    """ResNet-101 up to ``layer3`` (conv4: 1024 maps, stride 16), in eval mode."""
    from torchvision.models import ResNet101_Weights, resnet101

    if weights == "random":
        torch.manual_seed(0)
        net = resnet101(weights=None)
    elif weights is not None:
        net = resnet101(weights=None)
        try:
            state = torch.load(Path(str(weights)).expanduser(), map_location="cpu", weights_only=True)
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
            raise ConfigError(f"dataset.resnet_weights={weights} is not a ResNet-101 state dict: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    else:
        net = resnet101(weights=ResNet101_Weights.IMAGENET1K_V1)  # download=true: torchvision fetches them
    return torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                               net.layer1, net.layer2, net.layer3).eval()


@torch.no_grad()
def compute_features(images: torch.Tensor, weights, download: bool, batch_size: int = 64) -> torch.Tensor:
    """uint8 ``(M, 3, S, S)`` images -> float16 ``(M, 1024, S/16, S/16)`` conv4 features."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build_resnet101_conv4(weights, download).to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device).float() / 255.0
        x = (x - _MEAN.to(device)) / _STD.to(device)
        out.append(net(x).half().cpu())
    return torch.cat(out)


def resnet101_features(images: torch.Tensor, weights, download: bool) -> torch.Tensor:
    """The conv4 features of ``images``, from the cache or computed (once) and cached."""
    from normbench.data.base import cache_dir

    wid = _weights_id(weights, download)
    digest = hashlib.sha1(wid.encode())
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    path = cache_dir() / "clevr-features" / f"resnet101-{digest.hexdigest()[:16]}.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    features = compute_features(images, weights, download)
    buffer = io.BytesIO()
    torch.save(features, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return features
