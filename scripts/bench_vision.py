"""Vision throughput: ResNet-20 on CIFAR-shaped data, through the trainer and a hand-written loop.

Writes synthetic CIFAR-10 files in the real format (pickled batches, 50,000 + 10,000 images by
default) to a temporary directory, then for each option set (fp32; bf16 autocast; + channels
last; + torch.compile) measures steady-state samples/s:

- trainer: ``normbench``'s Trainer with ``trainer.max_steps=2W`` and ``trainer.eval_every=W``:
  the rate over steps W..2W from the training time recorded at the two evaluations (so warm-up
  and compilation are excluded, and so is evaluation);
- hand loop: the same model, data tensor on the device, on-device crop+flip, SGD with momentum,
  the same autocast/memory format/compile, W warm-up steps then W timed steps.

    python scripts/bench_vision.py                       # CUDA if present, batch 128, W=200
    python scripts/bench_vision.py --steps 300 --batch 256 --configs fp32,amp,amp+cl,amp+cl+compile
    python scripts/bench_vision.py --device cpu --steps 5 --train 2000 --configs fp32   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from normbench.api import compose
from normbench.data import load_dataset
from normbench.data.augment import DeviceAugment
from normbench.models import build_model
from normbench.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from vision_data import write_cifar  # noqa: E402

OPTIONS = {"fp32": [], "amp": ["trainer.amp=true"], "amp+cl": ["trainer.amp=true", "trainer.channels_last=true"],
           "amp+cl+compile": ["trainer.amp=true", "trainer.channels_last=true", "trainer.compile=true"],
           "amp+cl+compile-ro": ["trainer.amp=true", "trainer.channels_last=true", "trainer.compile=true",
                                 "trainer.compile_mode=reduce-overhead"],
           "compile": ["trainer.compile=true"], "cl": ["trainer.channels_last=true"],
           "compile-ro": ["trainer.compile=true", "trainer.compile_mode=reduce-overhead"]}


def overrides(root, args, config, steps) -> list[str]:
    return ["dataset=cifar10", f"dataset.root={root}", "dataset.test_samples=1000", "model=resnet",
            f"model.depth={args.depth}", f"norm={args.norm}", f"batch_size={args.batch}", "optim.lr=0.1",
            f"trainer.max_steps={steps}", f"trainer.eval_every={steps // 2}", f"trainer.log_every={steps // 2}",
            "trainer.progress=none", f"trainer.device={args.device}", "trainer.train_eval_samples=1000",
            *OPTIONS[config]]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_trainer(root, args, config) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(compose(overrides(root, args, config, 2 * args.steps)), run_dir)
        trainer.fit()
        times = [m["train_time_s"] for m in trainer.state.history]  # at steps 0, W, 2W
        return args.steps * args.batch / (times[2] - times[1])


def time_hand_loop(root, args, config) -> float:
    cfg = compose(overrides(root, args, config, 2 * args.steps))
    dev = torch.device("cuda" if args.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    data = load_dataset(cfg.dataset).to(dev)
    model = build_model(cfg.model, cfg.norm, data).to(dev)
    amp, cl = cfg.trainer.amp, cfg.trainer.channels_last
    if cl:
        model = model.to(memory_format=torch.channels_last)
    mode = None if cfg.trainer.compile_mode == "default" else cfg.trainer.compile_mode
    step_model = torch.compile(model, mode=mode) if cfg.trainer.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    aug = DeviceAugment(4, True, seed=0)
    B, n = args.batch, len(data.x_train)
    per_epoch = n // B
    shuffle = torch.Generator().manual_seed(0)
    model.train()

    def steps(first, count):
        xs = ys = None
        for step in range(first, first + count):
            i = step % per_epoch
            if xs is None or i == 0:
                perm = torch.randperm(n, generator=shuffle).to(dev)
                xs, ys = data.x_train[perm], data.y_train[perm]
            x = aug(xs[i * B:(i + 1) * B], step)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = step_model(x)
            loss = F.cross_entropy(out.float(), ys[i * B:(i + 1) * B])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    steps(0, args.steps)
    sync(dev)
    start = time.perf_counter()
    steps(args.steps, args.steps)
    sync(dev)
    return args.steps * B / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="W: warm-up steps, then W timed steps")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--train", type=int, default=50_000, help="synthetic training images (10 per cent test)")
    parser.add_argument("--configs", default="fp32,amp,amp+cl,amp+cl+compile")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if torch.cuda.is_available() and args.device != "cpu":
        torch.backends.cudnn.benchmark = True
    results = []
    with tempfile.TemporaryDirectory() as root:
        write_cifar(Path(root), per_batch=args.train // 5, n_test=max(args.train // 10, 100))
        device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
        print(f"ResNet-{args.depth} norm={args.norm} batch={args.batch} CIFAR-shaped {args.train} images, "
              f"{args.steps} warm-up + {args.steps} timed steps | {device} | torch {torch.__version__}", flush=True)
        print(f"{'options':<16} {'trainer':>12} {'hand loop':>12} {'hand/trainer':>13}", flush=True)
        for config in args.configs.split(","):
            trainer = time_trainer(root, args, config)
            hand = time_hand_loop(root, args, config)
            results.append({"options": config, "trainer_samples_per_s": trainer, "hand_samples_per_s": hand,
                            "device": device, "batch": args.batch, "depth": args.depth, "norm": args.norm})
            print(f"{config:<16} {trainer:>12,.0f} {hand:>12,.0f} {hand / trainer:>13.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
