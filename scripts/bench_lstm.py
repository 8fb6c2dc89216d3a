"""Forward + backward time per batch of our LSTM cell variants against PyTorch's fused nn.LSTM.

    python scripts/bench_lstm.py [--hidden 128] [--steps 40] [--batch 32] [--repeats 30]

Every variant reads a batch of ``--steps``-step sequences of one feature (MNIST-1D's shape) and
classifies from the last hidden state, as ``normbench run model=lstm`` does. Prints the median
time per batch and the ratio to our plain cell (``norm=none``) and to ``nn.LSTM``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from normbench.models.recurrent import LSTM
from normbench.norms import apply_weight_norm


def build(norm: str, impl: str, args) -> torch.nn.Module:
    options = {"batch": {"momentum": 0.1, "eps": 1e-5, "affine": True},
               "layer": {"eps": 1e-5, "affine": True}}.get(norm, {})
    model = LSTM((args.features, args.steps), 10, norm, options, data_kind="signal",
                 hidden_size=args.hidden, impl=impl)
    if norm == "weight":
        apply_weight_norm(model)
    return model


def step(model, x, y) -> float:
    start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    model.zero_grad(set_to_none=True)
    loss.backward()
    return time.perf_counter() - start


def time_variants(models: dict, args) -> dict[str, float]:
    """Median seconds per batch of each model; the variants take turns, so that a load that
    comes and goes on a shared machine hits them all alike."""
    x = torch.randn(args.batch, args.features, args.steps)
    y = torch.randint(0, 10, (args.batch,))
    times: dict[str, list[float]] = {name: [] for name in models}
    for k in range(args.warmup + args.repeats):
        for name, model in models.items():
            seconds = step(model.train(), x, y)
            if k >= args.warmup:
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--features", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = [("nn.LSTM (fused, reference)", "none", "torch"), ("plain cell (norm=none)", "none", "cell"),
                ("BN-LSTM (norm=batch)", "batch", "cell"), ("LN-LSTM (norm=layer)", "layer", "cell"),
                ("WN-LSTM (norm=weight)", "weight", "cell")]
    results = time_variants({name: build(norm, impl, args) for name, norm, impl in variants}, args)
    plain, fused = results["plain cell (norm=none)"], results["nn.LSTM (fused, reference)"]
    print(f"forward+backward per batch: hidden {args.hidden}, {args.steps} steps, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.repeats}")
    print(f"{'variant':<30} {'ms/batch':>9} {'x plain cell':>13} {'x nn.LSTM':>10}")
    for name, seconds in results.items():
        print(f"{name:<30} {seconds * 1e3:9.2f} {seconds / plain:13.2f} {seconds / fused:10.2f}")


if __name__ == "__main__":
    main()
