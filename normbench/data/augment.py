"""Batched data augmentation on the training device, for datasets held as one tensor.

:class:`DeviceAugment` applies CIFAR's standard augmentation (He et al. 2016: pad by 4, random
32x32 crop, random horizontal flip) to a whole batch at once: one gather with per-sample
offsets, no Python loop over samples, no copy to the host. Its randomness comes from a
``torch.Generator`` on the batch's device that is re-seeded from ``(seed, rank, step)`` at every
step, so the augmentation of a step does not depend on what ran before it: a resumed run
augments exactly as an uninterrupted one, and nothing needs checkpointing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class DeviceAugment:
    """Random crop of the zero-padded image and horizontal flip, per sample, in one gather.

    For a batch ``(N, C, H, W)``: each sample gets offsets ``(dy, dx)`` uniform in
    ``[0, 2 pad]`` and a flip bit with probability 1/2; the output pixel ``(i, j)`` of sample
    ``n`` is the padded input's pixel ``(dy_n + i, dx_n + j)``, or ``(dy_n + i, dx_n + W-1-j)``
    when flipped. The padding is zeros of the normalized input (the channel mean). Shape and
    dtype are preserved.
    """

    def __init__(self, pad: int = 4, flip: bool = True, seed: int = 0, rank: int = 0):
        self.pad, self.flip, self.seed, self.rank = int(pad), bool(flip), int(seed), int(rank)
        self._generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device, step: int) -> torch.Generator:
        gen = self._generators.get(device)
        if gen is None:
            gen = self._generators[device] = torch.Generator(device=device)
        # A fixed odd-constant mix of (seed, rank, step): distinct streams per rank and step.
        gen.manual_seed((self.seed * 1_000_003 + self.rank * 7_919 + step * 2_654_435_761 + 12_345) % (2**63))
        return gen

    def offsets(self, n: int, device: torch.device, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-sample ``(dy, dx, flip)`` of a step: int64, int64, bool, each of shape ``(n,)``."""
        gen = self.generator(device, step)
        dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen, device=device)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen, device=device)
        if self.flip:
            flip = torch.randint(0, 2, (n,), generator=gen, device=device).bool()
        else:
            flip = torch.zeros(n, dtype=torch.bool, device=device)
        return dy, dx, flip

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        n, c, h, w = x.shape
        dy, dx, flip = self.offsets(n, x.device, step)
        return crop_flip(x, dy, dx, flip, self.pad)


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop each sample of ``x`` (N, C, H, W) at ``(dy, dx)`` of its ``pad``-padded copy; flip where ``flip``."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    rows = dy[:, None] + torch.arange(h, device=x.device)                       # (N, H)
    j = torch.arange(w, device=x.device)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - j, j)               # (N, W)
    wp = w + 2 * pad
    # Flat index into each sample's (H+2p) x (W+2p) plane, shared by its channels: one gather.
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).reshape(n, c, h, w)
