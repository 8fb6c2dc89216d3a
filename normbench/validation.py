"""The run config's values that need no data or model, checked before anything is built: one
table of rules, each naming its key and what the key allows.

A rule returns None for a good value, or the end of the message (``must be a positive
integer``) that :func:`validate` turns into one line naming the key and the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from normbench.errors import ConfigError
from normbench.models import norm_options
from normbench.norms import get_norm
from normbench.population import MODES as POPULATION_MODES

Rule = Callable[[Any], "str | None"]
_ABSENT = object()


def _integer(value) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"


def _positive_int(value) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else \
        "must be a positive integer"


def _positive_number(value) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return None if ok else "must be a positive number"


def _boolean(value) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _fraction(value) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    return None if ok else "is not a fraction; use a value in [0, 1]"


def _or_null(rule: Rule) -> Rule:
    return lambda value: None if value is None else rule(value)


def _one_of(*allowed: str, why: str = "") -> Rule:
    return lambda value: None if value in allowed else f"is not one of {', '.join(allowed)}{why}"


#: (key, rule, value when the key is absent): checked in this order; the first bad value stops.
RULES: list[tuple[str, Rule, Any]] = [
    ("batch_size", _positive_int, _ABSENT),
    ("seed", _integer, _ABSENT),
    ("trainer.max_steps", _or_null(_positive_int), _ABSENT),
    ("trainer.epochs", _positive_int, _ABSENT),
    ("trainer.eval_every", _or_null(_positive_int), _ABSENT),
    ("trainer.eval_batch_size", _positive_int, _ABSENT),
    ("trainer.train_eval_samples", _positive_int, _ABSENT),
    ("trainer.log_every", _positive_int, _ABSENT),
    ("trainer.target_acc", _or_null(_fraction), None),
    ("trainer.target_bpc", _or_null(lambda v: _positive_number(v) and "must be a positive number of bits per "
                                    "character"), None),
    ("trainer.amp", _boolean, False),
    ("trainer.channels_last", _boolean, False),
    ("trainer.compile", _boolean, False),
    ("trainer.deterministic", _boolean, False),
    ("trainer.compile_mode", _one_of("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
     "default"),
    ("norm.population", _one_of(*POPULATION_MODES, why=" (the statistics batch norm uses at evaluation)"),
     "running"),
    ("norm.population_samples", _or_null(_positive_int), None),
    ("norm.also_exact", _boolean, False),
    ("trainer.progress", _one_of("auto", "bar", "lines", "none"), _ABSENT),
    ("trainer.threads", lambda v: None if v == "auto" else _positive_int(v) and "must be auto or a positive integer",
     "auto"),
    ("optim.lr", _positive_number, None),
    ("optim.grad_clip_norm", _or_null(_positive_number), None),
]


def validate(cfg: DictConfig) -> None:
    """Check ``cfg`` against :data:`RULES` and the norm's own check (e.g. ghost batch norm's
    virtual batch against the batch size); raise :class:`ConfigError` naming the first bad value."""
    for key, rule, absent in RULES:
        value = OmegaConf.select(cfg, key, default=absent)
        if value is _ABSENT:
            raise ConfigError(f"{key} is missing from the config")
        problem = rule(value)
        if problem:
            raise ConfigError(f"{key}={value} {problem}")
    norm = get_norm(cfg.norm.name)
    if norm.check is not None:
        norm.check(norm_options(cfg.norm), cfg.batch_size)
