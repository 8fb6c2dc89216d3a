"""A run's evaluation: the record of one step in ``metrics.jsonl``.

An :class:`Evaluator` is built once per run from what evaluation reads (the batch source, the
task, the forward pass, which population statistics score the run, the config's evaluation
keys) and scores a model at a loop state; it never reaches into the trainer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from normbench.training.population import exact_statistics, precise_statistics


class Evaluator:
    """Scores a model: train and test loss and metric, the extra test sets, the model's probe.

    Args:
        source: the run's batch source (what it evaluates on, and the population batches).
        task: the run's task (its loss and metric).
        forward: ``forward(model, x)`` with the run's autocast and memory format.
        eval_statistics: which population statistics score batch-statistics layers: ``running``,
            ``exact`` or ``precise`` (recomputed before each evaluation; see population.py) or
            None (no such layer).
        cfg: the composed config (its ``trainer`` evaluation keys, ``norm.population_samples`` and
            ``norm.also_exact``, ``batch_size``).
    """

    def __init__(self, source, task, forward: Callable, eval_statistics: str | None, cfg):
        self.source, self.task, self.forward, self.eval_statistics = source, task, forward, eval_statistics
        t = cfg.trainer
        self.batch_size, self.eval_batch_size, self.train_eval_samples = (cfg.batch_size, t.eval_batch_size,
                                                                          t.train_eval_samples)
        self.population_samples = cfg.norm.get("population_samples")
        self.also_exact = eval_statistics == "running" and cfg.norm.get("also_exact", False)

    def _statistics(self, model: nn.Module, kind: str | None):
        """A context in which ``model`` holds the population statistics ``kind`` names."""
        n, size = self.population_samples, self.eval_batch_size
        if kind == "exact":
            return exact_statistics(model, lambda: self.source.population_batches(n, size, complete=True),
                                    self.forward)
        if kind == "precise":
            return precise_statistics(model, self.source.population_batches(n, size), self.forward)
        return contextlib.nullcontext()

    def record(self, model: nn.Module, state, lr: float, examples: bool = False) -> tuple[dict, dict | None]:
        """The evaluation record of ``model`` at loop state ``state`` (``lr``: the current rate).

        Train, validation and test loss and metric (with the population statistics ``norm.population`` names,
        and also with exact ones under ``norm.also_exact``), the extra test sets, the model's probe,
        the loss the steps since the last evaluation saw (consumed from ``state``), the learning rate;
        and, with ``examples``, the test set's per-example record under the same statistics (else None).
        """
        m = self.task.metric
        with self._statistics(model, self.eval_statistics):
            results = self.source.evaluate(self.task, model, self.eval_batch_size, self.train_eval_samples,
                                           self.forward)
            probe = self._probe(model)
            per_example = (self.source.test_examples(self.task, model, self.eval_batch_size, self.forward)
                           if examples else None)
        if self.also_exact:
            # The same weights scored both ways: how much of the error is the running estimate.
            with self._statistics(model, "exact"):
                # one training sample: only the test score is kept
                results["exact"] = self.source.evaluate(self.task, model, self.eval_batch_size, 1,
                                                        self.forward)["test"]
        (train_loss, train_metric), (test_loss, test_metric) = results.pop("train"), results.pop("test")
        extra = {}
        if "val" in results:
            extra["val_loss"], extra[f"val_{m}"] = results.pop("val")
        for label, (loss, metric) in results.items():
            extra[f"test_loss_{label}"], extra[f"test_{m}_{label}"] = loss, metric
        extra.update(probe)
        s = state
        if s.interval_steps:  # the loss the steps themselves saw (train mode: batch statistics)
            extra["step_loss"] = s.interval_loss / s.interval_steps
            s.interval_loss, s.interval_steps = 0.0, 0
        return {
            "step": s.step,
            "epoch": s.step / self.source.steps_per_epoch,
            "samples_seen": s.step * self.batch_size,
            "wall_time_s": s.wall_time_s,
            "train_time_s": s.train_time_s,
            "train_loss": train_loss,
            f"train_{m}": train_metric,
            "test_loss": test_loss,
            f"test_{m}": test_metric,
            **extra,
            "lr": lr,
        }, per_example

    @torch.no_grad()
    def _probe(self, model: nn.Module) -> dict:
        """The model's optional ``probe(x) -> dict`` on a fixed test batch, in eval mode.

        Models that expose internals worth following over training (the MLP: percentiles of a
        last-layer pre-activation, as in the BN paper's Figure 1) define it; others do not.
        """
        probe = getattr(model, "probe", None)
        if not callable(probe):
            return {}
        was_training = model.training
        model.eval()
        try:
            x = self.source.test_inputs(self.eval_batch_size)
            return {k: float(v) for k, v in probe(x).items()}
        finally:
            model.train(was_training)
