"""False-significance rates of difference intervals under the null, at the seed counts people use.

Two groups of ``n`` values from one distribution (normal, and skewed accuracies near 1): how often
does a 95% interval of the difference of means exclude zero? The nominal rate is 5%. Compares the
percentile bootstrap normbench used before (each side resampled on its own) with Welch's t
interval it uses now (:func:`normbench.report.stats.diff_ci`).

    python scripts/null_rates.py [--trials 2000]
"""

from __future__ import annotations

import argparse

import numpy as np

from normbench.report.stats import diff_ci


def percentile_bootstrap(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_boot: int = 2000):
    ma = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1)
    mb = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    return tuple(np.quantile(ma - mb, [0.025, 0.975]))


DISTRIBUTIONS = {
    "normal": lambda rng, n: rng.normal(0.9, 0.02, n),
    "skewed (1 - exponential)": lambda rng, n: 1 - rng.exponential(0.02, n),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'distribution':26s} {'n':>3s} {'bootstrap':>10s} {'Welch t':>8s}   (nominal 5%, {args.trials} draws)")
    for name, draw in DISTRIBUTIONS.items():
        for n in (3, 5, 10):
            boot = welch = 0
            for _ in range(args.trials):
                a, b = draw(rng, n), draw(rng, n)
                lo, hi = percentile_bootstrap(a, b, rng)
                boot += lo > 0 or hi < 0
                lo, hi = diff_ci(a, b)
                welch += lo > 0 or hi < 0
            print(f"{name:26s} {n:3d} {100 * boot / args.trials:9.1f}% {100 * welch / args.trials:7.1f}%")


if __name__ == "__main__":
    main()
