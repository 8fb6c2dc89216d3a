"""Data parallelism under ``torchrun``: one process per device, DistributedDataParallel.

``torchrun --nproc_per_node=K -m normbench run ...`` starts K processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` set; each joins the process group (NCCL on CUDA, gloo on the
CPU), trains on ``cuda:LOCAL_RANK`` (or the CPU) with ``batch_size`` samples per step, on its own
shard of each epoch's permutation. Gradients are averaged by DDP; batch norm keeps per-device
statistics (plain BN, as in the GN paper; ``norm.sync=true`` gives SyncBatchNorm). Rank 0 alone
evaluates and writes the run directory; the others wait for it at a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> Context:
    """The process's place in a ``torchrun`` launch (rank 0 of 1 outside one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    return Context(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(ctx: Context, device: torch.device) -> None:
    """Join the process group (once per process): NCCL for CUDA devices, gloo for the CPU."""
    if not ctx.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            **({"device_id": device} if device.type == "cuda" else {}))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_object(ctx: Context, value):
    """``value`` as rank 0 has it, on every rank."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean(ctx: Context, tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over the ranks (in place)."""
    if ctx.enabled:
        dist.all_reduce(tensor)
        tensor /= ctx.world
    return tensor
