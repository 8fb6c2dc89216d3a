"""Where a run trains and what it runs on: the device ``trainer.device`` names, and the
environment recorded in the summary (versions, device, threads, determinism flags)."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

import normbench
from normbench import records
from normbench.errors import ConfigError
from normbench.training import distributed


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


#: Models at least this large (parameters) split their ops across threads with profit on a CPU;
#: smaller ones lose more to the threads' synchronisation than they gain, most on a shared machine.
SMALL_MODEL_PARAMS = 1_000_000


def parallel_jobs() -> int:
    """How many runs share this machine's cores: a local sweep's ``hydra.launcher.n_jobs``, else 1."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 1
    jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=None)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs == 0:
        return 1
    return (os.cpu_count() or 1) if jobs < 0 else jobs  # joblib: -1 means one job per core


def set_threads(setting, device: torch.device, num_params: int) -> str:
    """Apply ``trainer.threads`` and return how the count was chosen (for the record).

    An explicit count is used as given. ``auto`` respects ``OMP_NUM_THREADS`` when it is set;
    otherwise a CPU run of a small model takes 1 thread (split across threads, a small model's
    ops spend more on synchronisation than they gain: 23x slower at 2 threads on a loaded
    2-core machine, ``scripts/bench_threads.py``), and a larger one the cores it has, divided
    among the parallel jobs of a local sweep. A CUDA run keeps torch's default.
    """
    if setting != "auto":
        torch.set_num_threads(int(setting))
        return "trainer.threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return "OMP_NUM_THREADS"
    if device.type != "cpu":
        return "torch default (CUDA run)"
    if num_params < SMALL_MODEL_PARAMS:
        torch.set_num_threads(1)
        return f"auto: a small model ({num_params:,} parameters)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    jobs = parallel_jobs()
    torch.set_num_threads(max(1, cores // jobs))
    return f"auto: {cores} cores for {jobs} job{'s' if jobs > 1 else ''}"


@functools.lru_cache(maxsize=1)
def git_state() -> dict | None:
    """The git commit of the normbench source that trains, and whether its tracked files differ
    from it (``dirty``); None when it is not a git checkout (an installed wheel) or git is absent."""
    where = Path(normbench.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changes)} if commit else None


def environment(device: torch.device, cfg: DictConfig, ctx: distributed.Context | None = None) -> dict:
    env = {
        "normbench": normbench.__version__,
        "git": git_state(),
        "started_at": records.now(),  # this process's start of the run (a resumed run: of its last segment)
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
