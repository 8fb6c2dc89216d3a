"""Where a FiLM training step and an evaluation spend their time, on the claims' Sort-of-CLEVR proxy.

Builds the film-ablation claim's small-scale model and data (2 blocks, 32 maps, GRU 64,
Sort-of-CLEVR 32x32, batch 64) and times, as medians over repeats:

- a whole training step (forward, backward, Adam), and its parts: the question encoder (embedding
  and GRU over the padded words, forward and backward) and the rest;
- one evaluation of the test set with its question types scored from the same pass, and the
  same evaluated as before this change (the whole test set, then each type's questions again).

    python scripts/bench_film.py [--threads 1] [--repeats 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from normbench.api import compose
from normbench.claims.experiments import load_experiment
from normbench.data import load_dataset
from normbench.models import build_model
from normbench.training.tasks import Classification


def median_ms(fn, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = [str(o) for o in load_experiment("film-ablation")["scales"]["small"]["overrides"]]
    cfg = compose(overrides)
    data = load_dataset(cfg.dataset)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.norm, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = torch.randperm(len(data.y_train))[: cfg.batch_size]
    x, y = data.x_train[batch], data.y_train[batch]

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def question_only():
        model.zero_grad(set_to_none=True)
        model.encode_question(x["question"], x["length"]).sum().backward()

    task, test = Classification(), (data.x_test, data.y_test)

    def grouped():
        task.evaluate_groups(model, *test, data.test_groups, cfg.trainer.eval_batch_size)

    def separate():
        task.evaluate(model, *test, cfg.trainer.eval_batch_size)
        for index in data.test_groups.values():
            task.evaluate(model, data.x_test[index], data.y_test[index], cfg.trainer.eval_batch_size)

    whole = median_ms(step, args.repeats)
    gru = median_ms(question_only, args.repeats)
    print(f"FiLM proxy (film-ablation, small): batch {cfg.batch_size}, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"questions padded to {x['question'].shape[1]} tokens")
    print(f"training step (forward, backward, Adam)  {whole:7.2f} ms  ({1e3 / whole:.0f} steps/s)")
    print(f"  question encoder (fwd + bwd)           {gru:7.2f} ms  ({100 * gru / whole:.0f}%)")
    print(f"  the rest (image pipeline, FiLM, Adam)  {whole - gru:7.2f} ms")
    n = len(data.y_test)
    g, s = median_ms(grouped, 3, 1), median_ms(separate, 3, 1)
    print(f"evaluation of {n:,} test questions, types from the same pass  {g:8.1f} ms")
    print(f"evaluation as before (test set, then each type again)        {s:8.1f} ms")


if __name__ == "__main__":
    main()
