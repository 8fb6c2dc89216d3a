"""Threads per process: training speed of small runs at 1 and 2 (or more) torch threads.

Each measurement is a fresh ``normbench run`` process with ``trainer.threads=N`` (evaluation at
the start and the end only), so nothing leaks between settings; its speed is the summary's
``samples_per_s`` (training time only). Runs alternate between thread counts; medians of the
repeats. Run it on an idle machine, and again while the machine is busy (for example with
``--load 4``, which starts that many busy-looping processes for the duration), to see both.

    python scripts/bench_threads.py                      # idle: default CNN at batch 32, GN at batch 2
    python scripts/bench_threads.py --load 4             # the same with 4 competing processes
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "default CNN, batch norm, batch 32": ["norm=batch", "batch_size=32"],
    "GN, batch 2 (the README's first command)": ["norm=group", "batch_size=2"],
}


def speed(args: list[str], threads: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        env["PYTHONPATH"] = str(ROOT)
        subprocess.run([sys.executable, "-m", "normbench", "run", *args, f"trainer.max_steps={steps}",
                        f"trainer.eval_every={steps}", "trainer.progress=none", f"trainer.threads={threads}",
                        f"hydra.run.dir={run_dir}"], check=True, capture_output=True, env=env, timeout=1800)
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        assert summary["env"]["threads"] == threads, summary["env"]
        return summary["samples_per_s"]


def _spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes to run alongside")
    opts = parser.parse_args()
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(opts.load)]
    for hog in hogs:
        hog.start()
    try:
        print(f"{os.cpu_count()} cores, {opts.load} competing processes, {opts.steps} steps, "
              f"median of {opts.repeats}")
        for name, args in CASES.items():
            results = {n: [] for n in opts.threads}
            for _ in range(opts.repeats):
                for n in opts.threads:
                    results[n].append(speed(args, n, opts.steps))
            cells = ", ".join(f"{n} thread{'s' if n > 1 else ''}: {statistics.median(v):,.0f} samples/s"
                              for n, v in results.items())
            print(f"{name}: {cells}", flush=True)
    finally:
        for hog in hogs:
            hog.terminate()


if __name__ == "__main__":
    main()
