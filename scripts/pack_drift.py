"""Is a packed member's drift from its unpacked run float chaos or a fault? Trains M seeds three ways
in lockstep, step by step through the whole budget (epochs, schedule, clipping):

- ``plain``: each seed's unpacked run, as ``Trainer.fit`` steps it;
- ``packed``: the same seeds as one pack, as ``PackedLoop.fit`` steps it;
- ``nudged``: the plain runs again, every initial weight moved by a relative ``--nudge`` (1e-7: a
  float32 rounding), the control for how fast pure rounding noise grows.

It prints, at steps spread over the budget, the median over seeds of the relative weight distance
``||w - w_plain|| / ||w_plain||`` of packed and nudged, and at the end each seed's test error three
ways. A fault shows as packed jumping away at one step (an epoch boundary, the schedule) while
nudged grows smoothly; chaos shows as both growing alike.

    python scripts/pack_drift.py                       # gn-batch-size's GN at batch 32, 5 seeds
    python scripts/pack_drift.py --point norm=batch --members 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("NORMBENCH_RUN_INDEX", "none")

import torch  # noqa: E402

from normbench.api import compose  # noqa: E402
from normbench.claims import experiments  # noqa: E402
from normbench.training import distributed  # noqa: E402
from normbench.training.packing import PackedLoop, _stack  # noqa: E402
from normbench.training.trainer import prepare  # noqa: E402


def build(overrides: list[str], seeds: list[int], root: Path) -> list:
    out = []
    for seed in seeds:
        cfg = compose([*overrides, f"seed={seed}", "trainer.progress=none", "trainer.threads=1"])
        _, trainer = prepare(cfg, root / f"{seed}", distributed.Context())
        out.append(trainer)
    return out


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])


def plain_step(ts, batches) -> None:
    for t, b in zip(ts, batches, strict=True):
        x, y = next(b)
        loss = t.task.loss(t.forward(t.model, x).float(), y)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.cfg.optim.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.optim.grad_clip_norm)
        t.optimizer.step()
        if t.scheduler is not None:
            t.scheduler.step()


def packed_step(loop: PackedLoop, batches) -> None:
    x, y = _stack([next(b) for b in batches])
    losses = loop.pack.losses(loop.task, loop.forward, x, y)
    loop.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    if loop.cfg.optim.grad_clip_norm:
        loop.pack.clip_(loop.cfg.optim.grad_clip_norm)
    loop.optimizer.step()
    if loop.scheduler is not None:
        loop.scheduler.step()


@torch.no_grad()
def test_error(t) -> float:
    t.model.eval()
    data = t.source.data
    wrong = 0
    for i in range(0, len(data.y_test), 1000):
        wrong += int((t.model(data.x_test[i:i + 1000]).argmax(-1) != data.y_test[i:i + 1000]).sum())
    t.model.train()
    return 100.0 * wrong / len(data.y_test)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--claim", default="gn-batch-size")
    ap.add_argument("--sweep", type=int, default=1, help="which of the claim's sweeps gives the point")
    ap.add_argument("--point", nargs="*", default=[], help="overrides on top of the sweep's first point")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--nudge", type=float, default=1e-7)
    ap.add_argument("--steps", type=int, default=0, help="0: the claim's whole budget")
    args = ap.parse_args()
    spec = experiments.load_experiment(args.claim)["scales"]["small"]
    overrides = [str(o) for o in spec["overrides"]]
    overrides += [f"{k}={v[0]}" for k, v in spec["sweeps"][args.sweep].items()] + args.point
    if args.steps:
        overrides.append(f"trainer.max_steps={args.steps}")
    seeds = list(range(args.first_seed, args.first_seed + args.members))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        plain = build(overrides, seeds, Path(tmp) / "plain")
        nudged = build(overrides, seeds, Path(tmp) / "nudged")
        loop = PackedLoop(build(overrides, seeds, Path(tmp) / "packed"))
        gen = torch.Generator().manual_seed(12345)
        with torch.no_grad():
            for t in nudged:
                for p in t.model.parameters():
                    p.mul_(1 + args.nudge * torch.randn(p.shape, generator=gen))
        for t in (*plain, *nudged, *loop.trainers):
            t._start()  # a norm's data-dependent init, as fit() does
        torch.set_num_threads(1)
        loop.pack.train()
        total, per_epoch = loop.total_steps, loop.trainers[0].source.steps_per_epoch
        marks = sorted({1, 2, 5, 10, 20, 50, per_epoch - 1, per_epoch, per_epoch + 1, 2 * per_epoch,
                        *range(0, total + 1, max(total // 10, 1)), total} - {0})
        print(f"{' '.join(overrides)}\nseeds {seeds}, {total} steps, {per_epoch} per epoch")
        print("| step | packed: median distance | max | nudged: median distance | max |")
        print("| --- | --- | --- | --- | --- |")
        groups = (plain, nudged, loop.trainers)
        batches = [[t.source.batches(0, 0) for t in g] for g in groups]
        for step in range(1, total + 1):
            plain_step(plain, batches[0])
            plain_step(nudged, batches[1])
            packed_step(loop, batches[2])
            if step % per_epoch == 0:
                for gi, g in enumerate(groups):
                    for t in g:
                        t.source.end_epoch()
                    batches[gi] = [t.source.batches(step // per_epoch, 0) for t in g]
            if step in marks:
                ref = [flat(t.model) for t in plain]
                dist = [torch.tensor([float((flat(t.model) - r).norm() / r.norm()) for t, r in zip(g, ref, strict=True)])
                        for g in (loop.trainers, nudged)]
                print(f"| {step} | {dist[0].median():.2e} | {dist[0].max():.2e} "
                      f"| {dist[1].median():.2e} | {dist[1].max():.2e} |", flush=True)
        print("\n| seed | plain test error % | packed | nudged |\n| --- | --- | --- | --- |")
        errors = [[test_error(t) for t in g] for g in groups]
        for i, seed in enumerate(seeds):
            print(f"| {seed} | {errors[0][i]:.2f} | {errors[2][i]:.2f} | {errors[1][i]:.2f} |")
        mean = [sum(e) / len(e) for e in errors]
        print(f"| mean | {mean[0]:.2f} | {mean[2]:.2f} | {mean[1]:.2f} |")


if __name__ == "__main__":
    main()
