"""The run config's values that need no data or model, checked before anything is built: one
table of rules (:mod:`normbench.rules`), each naming its key and what the key allows. A model's or
a dataset's own options are declared in its module with the same rules.

The table is checked without importing torch (:func:`check_rules`), so that a bad value on the
command line answers at once; the norm's own check needs its registry entry (:func:`validate`).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from normbench.errors import ConfigError
from normbench.rules import (
    Rule,
    boolean,
    fraction,
    integer,
    one_of,
    or_null,
    positive_int,
    positive_number,
)

_ABSENT = object()
#: ``norm.population``: the statistics batch norm uses at evaluation (see population.py).
POPULATION_MODES = ("running", "exact")


#: (key, rule, value when the key is absent): checked in this order; the first bad value stops.
RULES: list[tuple[str, Rule, Any]] = [
    ("batch_size", positive_int, _ABSENT),
    ("seed", integer, _ABSENT),
    ("trainer.max_steps", or_null(positive_int), _ABSENT),
    ("trainer.epochs", positive_int, _ABSENT),
    ("trainer.eval_every", or_null(positive_int), _ABSENT),
    ("trainer.eval_batch_size", positive_int, _ABSENT),
    ("trainer.train_eval_samples", positive_int, _ABSENT),
    ("trainer.log_every", positive_int, _ABSENT),
    ("trainer.target_acc", or_null(fraction), None),
    ("trainer.target_bpc", or_null(lambda v: positive_number(v) and "must be a positive number of bits per "
                                    "character"), None),
    ("trainer.amp", boolean, False),
    ("trainer.channels_last", boolean, False),
    ("trainer.compile", boolean, False),
    ("trainer.deterministic", boolean, False),
    ("trainer.compile_mode", one_of("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
     "default"),
    ("norm.population", one_of(*POPULATION_MODES, why=" (the statistics batch norm uses at evaluation)"),
     "running"),
    ("norm.population_samples", or_null(positive_int), None),
    ("norm.also_exact", boolean, False),
    # Every switch of the config groups: a string such as "maybe" or "off" is not a boolean.
    *((key, boolean, False) for key in (
        "norm.affine", "norm.mean_only", "norm.sync", "norm.data_init", "norm.batch_dependent", "dataset.permute",
        "dataset.download", "dataset.normalize", "dataset.augment", "optim.nesterov", "optim.norm_weight_decay",
        "model.zero_init_residual")),
    ("trainer.progress", one_of("auto", "bar", "lines", "none"), _ABSENT),
    ("trainer.threads", lambda v: None if v == "auto" else positive_int(v) and "must be auto or a positive integer",
     "auto"),
    ("optim.lr", positive_number, None),
    ("optim.grad_clip_norm", or_null(positive_number), None),
]


def validate(cfg: DictConfig) -> None:
    """Import the run's ``plugins``, then check ``cfg`` against :data:`RULES` and the norm's own
    check (e.g. ghost batch norm's virtual batch against the batch size); raise
    :class:`ConfigError` naming the first bad value."""
    from normbench.models import norm_options
    from normbench.norms import get_norm

    import_plugins(cfg.get("plugins") or [])
    check_rules(cfg)
    norm = get_norm(cfg.norm.name)
    if norm.check is not None:
        norm.check(norm_options(cfg.norm), cfg.batch_size)


def import_plugins(modules) -> None:
    """Import the user's ``plugins`` modules (in this process: every job of a sweep does), which
    register their norms, models and datasets with normbench's registries."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(str(module))
        except ImportError as exc:
            raise ConfigError(f"plugins: cannot import {module!r} ({exc}); put its directory on PYTHONPATH or "
                              "pip install it") from None


def check_rules(cfg: DictConfig) -> None:
    """Check ``cfg`` against :data:`RULES` (no torch needed); raise :class:`ConfigError` naming the
    first bad value."""
    for key, rule, absent in RULES:
        value = OmegaConf.select(cfg, key, default=absent)
        if value is _ABSENT:
            raise ConfigError(f"{key} is missing from the config")
        problem = rule(value)
        if problem:
            raise ConfigError(f"{key}={value} {problem}")
