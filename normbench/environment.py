"""Where a run trains and what it runs on: the device ``trainer.device`` names, and the
environment recorded in the summary (versions, device, threads, determinism flags)."""

from __future__ import annotations

import platform
import socket

import torch
from omegaconf import DictConfig

import normbench
from normbench import distributed
from normbench.errors import ConfigError


def resolve_device(name: str, ctx: distributed.Context | None = None) -> torch.device:
    """The device of ``trainer.device``; under torchrun, CUDA means this process's ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is available; use trainer.device=cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"trainer.device={name!r} is not a device; use auto, cpu or cuda")
    if name == "cuda" and ctx is not None and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return torch.device(name)


def environment(device: torch.device, cfg: DictConfig, ctx: distributed.Context | None = None) -> dict:
    env = {
        "normbench": normbench.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "amp": "bf16" if cfg.trainer.get("amp") else None,
        "channels_last": bool(cfg.trainer.get("channels_last")),
        "compile": bool(cfg.trainer.get("compile")),
        "compile_mode": cfg.trainer.get("compile_mode", "default") if cfg.trainer.get("compile") else None,
        "world_size": ctx.world if ctx else 1,
        "distributed_backend": ("nccl" if device.type == "cuda" else "gloo") if ctx and ctx.enabled else None,
        "sync_batch_norm": bool(ctx and ctx.enabled and cfg.norm.get("sync", False)),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
    return env
