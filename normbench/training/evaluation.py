"""A trainer's evaluation: the record of one step in ``metrics.jsonl``.

Functions of the :class:`~normbench.training.trainer.Trainer` (``self``), kept apart from the loop.
"""

from __future__ import annotations

import contextlib

import torch

from normbench.training.population import exact_statistics


def _exact_statistics(self):
    """A context in which the model holds exact population statistics (see population.py)."""
    batches = self.source.population_batches(self.cfg.norm.get("population_samples"),
                                             self.cfg.trainer.eval_batch_size)
    return exact_statistics(self.model, batches, self.forward)


def evaluate(self) -> dict:
    """Score the trainer ``self``'s model now: the evaluation record of its current step.

    Train and test loss and metric (with the population statistics ``norm.population`` names,
    and also with exact ones under ``norm.also_exact``), the extra test sets, the model's probe,
    the loss the steps since the last evaluation saw, the learning rate.
    """
    t, m = self.cfg.trainer, self.task.metric
    exact = self.eval_statistics == "exact"
    with _exact_statistics(self) if exact else contextlib.nullcontext():
        results = self.source.evaluate(self.task, self.model, t.eval_batch_size, t.train_eval_samples,
                                       self.forward)
        probe = _probe(self)
    if self.eval_statistics == "running" and self.cfg.norm.get("also_exact", False):
        # The same weights scored both ways: how much of the error is the running estimate.
        with _exact_statistics(self):
            # one training sample: only the test score is kept
            results["exact"] = self.source.evaluate(self.task, self.model, t.eval_batch_size, 1,
                                                    self.forward)["test"]
    (train_loss, train_metric), (test_loss, test_metric) = results.pop("train"), results.pop("test")
    extra = {}
    for label, (loss, metric) in results.items():
        extra[f"test_loss_{label}"], extra[f"test_{m}_{label}"] = loss, metric
    extra.update(probe)
    s = self.state
    if s.interval_steps:  # the loss the steps themselves saw (train mode: batch statistics)
        extra["step_loss"] = s.interval_loss / s.interval_steps
        s.interval_loss, s.interval_steps = 0.0, 0
    return {
        "step": s.step,
        "epoch": s.step / self.steps_per_epoch,
        "samples_seen": s.step * self.cfg.batch_size,
        "wall_time_s": s.wall_time_s,
        "train_time_s": s.train_time_s,
        "train_loss": train_loss,
        f"train_{m}": train_metric,
        "test_loss": test_loss,
        f"test_{m}": test_metric,
        **extra,
        "lr": self.optimizer.param_groups[0]["lr"],
    }

@torch.no_grad()
def _probe(self) -> dict:
    """The model's optional ``probe(x) -> dict`` on a fixed test batch, in eval mode.

    Models that expose internals worth following over training (the MLP: percentiles of a
    last-layer pre-activation, as in the BN paper's Figure 1) define it; others do not.
    """
    probe = getattr(self.model, "probe", None)
    if not callable(probe):
        return {}
    was_training = self.model.training
    self.model.eval()
    try:
        x = self.source.test_inputs(self.cfg.trainer.eval_batch_size)
        return {k: float(v) for k, v in probe(x).items()}
    finally:
        self.model.train(was_training)
