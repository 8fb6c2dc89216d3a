"""Does a BN-LSTM's evaluation depend on the batch its population statistics are computed in?

    python scripts/population_invariance.py [--seed 1000] [--threads 1]

Trains rbn-mnist's small-scale BN-LSTM (gamma_init 0.1, permuted 8x8 digits; the spec's own
overrides) once, then scores its final weights on the test set with population statistics
recomputed two ways, the population (all 1,437 training images) cut into batches of 10, 100,
1,000 and 1,437: ``exact`` (stage by stage in eval mode) and ``precise`` (one train-mode pass,
fvcore's PreciseBN). Prints the test accuracy and loss and the seconds each estimate took. The
default seed is a pilot seed, outside every verdict's range.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from normbench.api import compose, run
from normbench.claims.registry import SPEC_DIR
from normbench.data import load_dataset
from normbench.models import build_model
from normbench.training.population import exact_statistics, precise_statistics

SIZES = (10, 100, 1000, 1437)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = OmegaConf.load(SPEC_DIR / "rbn-mnist.yaml").scales.small
    overrides = [*spec.overrides, "norm=batch", "norm.population=exact", "norm.gamma_init=0.1",
                 "dataset.permute=true", f"seed={args.seed}", "trainer.progress=none"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = run(overrides, Path(tmp) / "run")
        print(f"trained in {time.perf_counter() - start:.0f} s; the run's own final test accuracy "
              f"{summary['final']['test_acc']:.4f} ({summary['eval_statistics']})")
        state = torch.load(Path(tmp) / "run" / "checkpoint.pt", weights_only=True, map_location="cpu")["model"]
    cfg = compose(overrides)
    data = load_dataset(cfg.dataset, cfg.seed)
    model = build_model(cfg.model, cfg.norm, data)
    model.load_state_dict(state)
    population = data.x_train
    estimators = {"exact": lambda size: exact_statistics(model, lambda: population.split(size)),
                  "precise": lambda size: precise_statistics(model, population.split(size))}
    print("| estimator | pass batch | test accuracy | test loss | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for name, estimate in estimators.items():
        for size in SIZES:
            start = time.perf_counter()
            with estimate(size), torch.no_grad():
                seconds = time.perf_counter() - start
                logits = model.eval()(data.x_test)
            acc = (logits.argmax(1) == data.y_test).float().mean().item()
            loss = F.cross_entropy(logits, data.y_test).item()
            print(f"| {name} | {size} | {acc:.4f} | {loss:.4f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
