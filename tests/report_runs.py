"""Run directories with known numbers, written the way the trainer writes them.

Used by the reporter's tests (``tests/test_report_*.py``): each helper writes ``config.yaml``,
``metrics.jsonl`` and ``summary.json`` in the run-record format of :mod:`normbench.records`, so
the reporter is tested against the contract without training anything.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from normbench.records import CONFIG_FILE, write_metrics, write_summary

#: GN paper, ImageNet top-1 validation error (%) at 32/16/8/4/2 images per GPU (PAPERS.md §2);
#: layer norm is GN with one group, 25.3 at batch 32 and batch-independent.
GN_ERROR = {
    "batch": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7},
    "group": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1},
    "layer": {32: 25.3, 16: 25.3, 8: 25.3, 4: 25.3, 2: 25.3},
}


def config(norm: str = "batch", batch_size: int = 32, seed: int = 0, label_noise: float = 0.0,
           model: str = "cnn", dataset: str = "mnist1d", lr: float = 0.05, groups: int = 4,
           device: str = "cpu", target_acc: float = 0.9) -> dict:
    """A resolved config as ``config.yaml`` holds it (only group norm has ``groups``)."""
    norm_cfg = {"name": norm, "eps": 1e-5, "affine": True}
    if norm == "batch":
        norm_cfg["momentum"] = 0.1
    if norm == "group":
        norm_cfg["groups"] = groups
    return {
        "batch_size": batch_size,
        "seed": seed,
        "dataset": {"name": dataset, "permute": False, "label_noise": label_noise,
                    "root": "/data/somewhere", "download": False},
        "model": {"name": model, "width": 32},
        "norm": norm_cfg,
        "optim": {"name": "sgd", "lr": lr, "momentum": 0.9, "lr_scaling": "linear",
                  "base_batch_size": 32, "weight_decay": 0.0},
        "trainer": {"max_steps": 400, "epochs": None, "eval_every": 40, "device": device,
                    "target_acc": target_acc},
        "logger": {"name": "none"},
    }


def curve(final_test: float, final_train: float, steps: int = 400, every: int = 40,
          tau: float = 80.0, step_time: float = 0.01, eval_time: float = 0.05,
          batch_size: int = 32, bpc: bool = False) -> list[dict]:
    """Evaluation records that rise (or fall, for bpc) exponentially towards the final values."""
    records = []
    train_time = 0.0
    wall = 0.0
    for step in range(every, steps + 1, every):
        train_time += every * step_time
        wall = train_time + (step // every) * eval_time
        frac = 1.0 - math.exp(-step / tau)
        frac_end = 1.0 - math.exp(-steps / tau)
        r = {"step": step, "epoch": step * batch_size / 1000.0, "samples_seen": step * batch_size,
             "wall_time_s": wall, "train_time_s": train_time,
             "train_loss": 2.3 * math.exp(-step / tau) + 0.05,
             "test_loss": 2.3 * math.exp(-step / tau) + 0.2, "lr": 0.05}
        if bpc:
            r["train_bpc"] = 4.0 - (4.0 - final_train) * frac / frac_end
            r["test_bpc"] = 4.0 - (4.0 - final_test) * frac / frac_end
        else:
            r["train_acc"] = 0.1 + (final_train - 0.1) * frac / frac_end
            r["test_acc"] = 0.1 + (final_test - 0.1) * frac / frac_end
        records.append(r)
    return records


def write_run(root: Path, name: str, *, norm: str = "batch", batch_size: int = 32,
              seed: int = 0, test_acc: float = 0.9, train_acc: float = 0.95,
              status: str = "completed", label_noise: float = 0.0, bpc: bool = False,
              steps: int = 400, step_time: float = 0.01, metrics: list[dict] | None = None,
              error: str | None = None, summary_extra: dict | None = None,
              config_extra: dict | None = None, target_acc: float = 0.9,
              groups: int = 4, model: str = "cnn", dataset: str = "mnist1d",
              tau: float = 80.0, val_acc: float | None = None) -> Path:
    """Write one run directory whose summary holds exactly the given final numbers.

    For ``bpc=True`` the ``test_acc``/``train_acc`` arguments are bits per character.
    ``val_acc`` is the validation score (default: the test score).
    """
    val_acc = test_acc if val_acc is None else val_acc
    run = Path(root) / name
    run.mkdir(parents=True, exist_ok=True)
    cfg = config(norm, batch_size, seed, label_noise, model=model, dataset=dataset,
                 groups=groups, target_acc=target_acc)
    for key, value in (config_extra or {}).items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    (run / CONFIG_FILE).write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    if metrics is None:
        metrics = curve(test_acc, train_acc, steps=steps, step_time=step_time,
                        batch_size=batch_size, bpc=bpc, tau=tau)
    write_metrics(run, metrics)
    if bpc:
        final = {"train_loss": 0.9, "train_bpc": train_acc, "val_bpc": val_acc, "test_loss": 1.0,
                 "test_bpc": test_acc}
        gap = test_acc - train_acc
    else:
        final = {"train_loss": 0.1, "train_acc": train_acc, "val_acc": val_acc, "test_loss": 0.3,
                 "test_acc": test_acc}
        gap = train_acc - test_acc
    reached = None if bpc else next((m for m in metrics if (m.get("test_acc") or 0)
                                     >= target_acc), None)
    last = metrics[-1] if metrics else {}
    summary = {
        "status": status, "dataset": dataset, "model": model, "norm": norm,
        "batch_size": batch_size, "seed": seed, "steps": last.get("step", 0),
        "epochs": last.get("epoch", 0.0), "samples_seen": last.get("samples_seen", 0),
        "final": final,
        ("selected_test_bpc" if bpc else "selected_test_acc"): test_acc,
        "steps_to_target": reached["step"] if reached else None,
        "time_to_target_s": reached["wall_time_s"] if reached else None,
        "target_acc": target_acc, "generalization_gap": gap,
        "wall_time_s": last.get("wall_time_s", 0.0),
        "train_time_s": last.get("train_time_s", 0.0), "samples_per_s": 3200.0,
        "lr": 0.05 * batch_size / 32, "primary_metric": "bpc" if bpc else "acc",
        "error": error, "env": {"torch": "2.3.0", "device": "cpu", "seed": seed},
        "num_params": 12345,
    }
    summary.update(summary_extra or {})
    write_summary(run, summary)
    return run


def gn_sweep(root: Path, seeds: tuple[int, ...] = (0, 1, 2),
             batch_sizes: tuple[int, ...] = (2, 4, 8, 16, 32),
             norms: tuple[str, ...] = ("batch", "group", "layer")) -> Path:
    """A Hydra-style sweep directory shaped like the GN paper's batch-size comparison.

    Test error follows :data:`GN_ERROR` plus a small seed-dependent jitter (±0.3 points);
    smaller batches take more steps per unit time, and batch norm converges fastest at
    large batches (as BN does), so every plot has something to show.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "multirun.yaml").write_text("hydra: {mode: MULTIRUN}\n", encoding="utf-8")
    job = 0
    for norm in norms:
        for bs in batch_sizes:
            for seed in seeds:
                jitter = 0.3 * math.sin(1.7 * seed + 0.9 * bs + len(norm))
                err = (GN_ERROR[norm][bs] + jitter) / 100.0
                test = 1.0 - err
                gap = 0.04 + (0.01 if norm == "group" else 0.0) + 0.004 * math.cos(2.3 * seed + bs)
                train = min(0.999, test + gap)
                run = write_run(root, str(job), norm=norm, batch_size=bs, seed=seed,
                                test_acc=test, train_acc=train, target_acc=0.7,
                                step_time=0.004 + 0.0004 * bs,
                                tau={"batch": 50.0, "group": 70.0, "layer": 90.0}[norm]
                                * (1.0 + 0.05 * seed))
                (run / ".hydra").mkdir(exist_ok=True)
                (run / ".hydra" / "config.yaml").write_text("seed: 0\n", encoding="utf-8")
                job += 1
    return root
