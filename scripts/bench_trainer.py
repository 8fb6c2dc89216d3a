"""Trainer overhead: normbench's trainer against a minimal hand-written PyTorch loop.

Both train the default CNN with batch norm on MNIST-1D at batch 32 for the same steps, with
the same initial weights, data tensors, batches (one shuffle per epoch from the same seeded
generator, then contiguous slices) and optimizer. The trainer's time is ``Trainer.fit()``
measured from outside; it is reported with evaluation off (minus its two evaluation events, at
step 0 and at the end, timed from outside) and whole. Runs alternate; medians of the repeats.

    python scripts/bench_trainer.py                 # 2000 steps, 3 repeats, CPU
    python scripts/bench_trainer.py --steps 500 --device cuda

Target (issue 2): ratio at most 1.10 on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from normbench.api import compose
from normbench.data import load_dataset
from normbench.models import build_model
from normbench.training.trainer import Trainer


def overrides(steps: int, device: str) -> list[str]:
    return [f"trainer.max_steps={steps}", f"trainer.eval_every={steps}", f"trainer.log_every={steps}",
            "trainer.progress=none", f"trainer.device={device}", "batch_size=32"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_trainer(steps: int, device: str) -> tuple[float, float, torch.nn.Module]:
    """The whole of ``fit()``, and the part of it spent in evaluation events.

    An evaluation event (``Trainer._record``: evaluate train subset and test set, append the
    metrics, write the checkpoint and summary) happens at step 0 and at the end here; its time
    is measured from outside by wrapping the method, so "evaluation off" is fit() minus it.
    """
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(compose(overrides(steps, device)), run_dir)
        record, spent = trainer._record, [0.0]

        def timed_record(*args):
            sync(trainer.device)
            t0 = time.perf_counter()
            record(*args)
            sync(trainer.device)
            spent[0] += time.perf_counter() - t0

        trainer._record = timed_record
        sync(trainer.device)
        start = time.perf_counter()
        trainer.fit()
        sync(trainer.device)
        return time.perf_counter() - start, spent[0], trainer.model


def time_hand_loop(steps: int, device: str) -> tuple[float, torch.nn.Module]:
    cfg = compose(overrides(steps, device))
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset).to(dev)
    model = build_model(cfg.model, cfg.norm, data).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    B, n = cfg.batch_size, len(data.x_train)
    per_epoch = n // B
    model.train()
    sync(dev)
    start = time.perf_counter()
    for step in range(steps):
        if step % per_epoch == 0:
            perm = torch.randperm(n, generator=shuffle).to(dev)
            xs, ys = data.x_train[perm], data.y_train[perm]
        i = step % per_epoch
        loss = F.cross_entropy(model(xs[i * B:(i + 1) * B]), ys[i * B:(i + 1) * B])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(dev)
    return time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args()

    time_trainer(50, args.device)  # warm-up: allocator, kernels, dataset cache
    time_hand_loop(50, args.device)
    trainer_times, loop_times, hand_times = [], [], []
    for _ in range(args.repeats):
        t, evaluating, trained = time_trainer(args.steps, args.device)
        trainer_times.append(t)
        loop_times.append(t - evaluating)
        h, handmade = time_hand_loop(args.steps, args.device)
        hand_times.append(h)
    same = max((a - b).abs().max().item() for a, b in zip(trained.state_dict().values(),
                                                          handmade.state_dict().values(), strict=True)
               if a.is_floating_point())
    t, h, loop = statistics.median(trainer_times), statistics.median(hand_times), statistics.median(loop_times)
    samples = args.steps * 32
    print(f"device={args.device} threads={torch.get_num_threads()} steps={args.steps} batch=32 "
          f"model=cnn norm=batch dataset=mnist1d torch={torch.__version__}")
    print(f"trainer   : {t:.3f} s  ({samples / t:,.0f} samples/s)  runs: {', '.join(f'{x:.3f}' for x in trainer_times)}")
    print(f"hand loop : {h:.3f} s  ({samples / h:,.0f} samples/s)  runs: {', '.join(f'{x:.3f}' for x in hand_times)}")
    print(f"largest weight difference after training: {same:.3g} (0 = the same computation)")
    print(f"trainer without its 2 evaluation events: {loop:.3f} s  runs: {', '.join(f'{x:.3f}' for x in loop_times)}")
    print(f"ratio trainer / hand loop, evaluation off: {loop / h:.3f}  (target <= 1.10)")
    print(f"ratio trainer / hand loop, whole fit() incl. evaluations at step 0 and end: {t / h:.3f}")


if __name__ == "__main__":
    main()
