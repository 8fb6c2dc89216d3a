"""Training samples/s per member, packed (one vmapped step for M seeds) against unpacked (M runs'
steps one after another), for M in {1, 2, 5, 10}, at 1 and 2 threads, the two alternating.

    python scripts/bench_pack.py                       # every setup
    python scripts/bench_pack.py --setups gn-batch2 --members 5 --threads 1

Each member is built as its run builds it (its Trainer: data, model, optimizer, batch source),
then the timed loop is the training step only: batches, forward, backward, clipping, the
optimizer (no evaluation). Speed-up = packed samples/s per member over unpacked.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NORMBENCH_RUN_INDEX", "none")

import torch  # noqa: E402

from normbench.api import compose  # noqa: E402
from normbench.claims import experiments  # noqa: E402
from normbench.training import distributed  # noqa: E402
from normbench.training.packing import PackedLoop, _stack  # noqa: E402
from normbench.training.trainer import prepare  # noqa: E402


def _claim(name: str, sweep: int = 0) -> list[str]:
    spec = experiments.load_experiment(name)["scales"]["small"]
    point = [f"{k}={v[0]}" for k, v in spec["sweeps"][sweep].items()]
    return [str(o) for o in spec["overrides"]] + point


SETUPS = {
    "cnn-batch32": [],
    "gn-batch2": ["norm=group", "batch_size=2"],
    "rbn-mnist-bn-lstm": _claim("rbn-mnist", 1),
    "film-ablation-film": _claim("film-ablation"),
    # beyond the issue's four: the claims' MLPs, the smallest runs of all
    "ln-batch-ln-batch4": _claim("ln-batch") + ["norm=layer", "batch_size=4"],
    "bn-sigmoid-bn": _claim("bn-sigmoid") + ["norm=batch"],
}


def trainers(extra: list[str], members: int, root: Path) -> list:
    out = []
    for seed in range(members):
        cfg = compose([*extra, f"seed={seed}", "trainer.progress=none", "trainer.threads=auto"])
        _, trainer = prepare(cfg, root / f"{seed}", distributed.Context())
        out.append(trainer)
    return out


def unpacked_steps(ts: list, steps: int) -> float:
    batches = [t.source.batches(0, 0) for t in ts]
    clip = ts[0].cfg.optim.grad_clip_norm
    start = time.perf_counter()
    for _ in range(steps):
        for t, b in zip(ts, batches, strict=True):
            x, y = next(b)
            loss = t.task.loss(t.forward(t.model, x).float(), y)
            t.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(t.model.parameters(), clip)
            t.optimizer.step()
    return time.perf_counter() - start


def packed_steps(loop: PackedLoop, steps: int) -> float:
    ts = loop.trainers
    batches = [t.source.batches(0, 0) for t in ts]
    clip = loop.cfg.optim.grad_clip_norm
    start = time.perf_counter()
    for _ in range(steps):
        x, y = _stack([next(b) for b in batches])
        losses = loop.pack.losses(loop.task, loop.forward, x, y)
        loop.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        if clip:
            loop.pack.clip_(clip)
        loop.optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setups", nargs="*", default=list(SETUPS))
    ap.add_argument("--members", nargs="*", type=int, default=[1, 2, 5, 10])
    ap.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--steps", type=int, default=0, help="timed steps (0: about 2 s of the unpacked loop)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print("| setup | threads | M | unpacked samples/s per member | packed samples/s per member | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.setups:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for m in args.members:
                with tempfile.TemporaryDirectory() as tmp:
                    alone = trainers(SETUPS[name], m, Path(tmp) / "u")
                    loop = PackedLoop(trainers(SETUPS[name], m, Path(tmp) / "p"))
                    torch.set_num_threads(threads)  # the Trainers set their own
                    batch = alone[0].cfg.batch_size
                    steps = args.steps or max(5, int(2.0 / max(unpacked_steps(alone, 3) / 3, 1e-4)))
                    steps = min(steps, alone[0].source.steps_per_epoch - 5)
                    packed_steps(loop, 3)
                    u = p = float("inf")
                    for _ in range(args.repeats):  # alternating, the best of each
                        u = min(u, unpacked_steps(alone, steps))
                        p = min(p, packed_steps(loop, steps))
                    us, ps = steps * batch / u, steps * batch / p
                    print(f"| {name} | {threads} | {m} | {us:,.0f} | {ps:,.0f} | {ps / us:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
