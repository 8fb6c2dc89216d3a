"""What a config value may be, declared once: rules that the run's validation table
(:mod:`normbench.config.validation`) and the components' own option tables (models, datasets) share.

A rule takes a value and returns None when it is allowed, or the end of the message (``must be a
positive integer``); :func:`check` turns it into one line naming the key and the value.

Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from normbench.errors import ConfigError

Rule = Callable[[Any], "str | None"]


def integer(value) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"


def positive_int(value) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "must be a positive integer"


def positive_number(value) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return None if ok else "must be a positive number"


def at_least(least: float, why: str = "") -> Rule:
    def rule(value) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= least
        return None if ok else f"must be a number >= {least:g}{why}"
    return rule


at_least_zero = at_least(0)


def non_negative_int(value) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else "must be a non-negative integer"


def increasing_positives(value) -> str | None:
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value) and list(value) == sorted(value)
    return None if ok else "must be increasing positive numbers"


def explained(rule: Rule, text: str) -> Rule:
    """``rule`` with its own message: ``text`` (which says what the value means)."""
    return lambda value: text if rule(value) else None


steps = explained(non_negative_int, "must be a whole number of training steps >= 0")


def boolean(value) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def fraction(value) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    return None if ok else "is not a fraction; use a value in [0, 1]"


def or_null(rule: Rule) -> Rule:
    return lambda value: None if value is None else rule(value)


def one_of(*allowed: str, why: str = "") -> Rule:
    return lambda value: None if value in allowed else f"is not one of {', '.join(allowed)}{why}"


def problems(prefix: str, values: Mapping[str, Any], rules: Mapping[str, Rule]) -> list[str]:
    """What is wrong with each of ``values`` that has a rule, one line per bad value, as
    ``<prefix>.<key>=<value> <why>``."""
    found = []
    for key, rule in rules.items():
        if key in values:
            problem = rule(values[key])
            if problem:
                found.append(f"{prefix}.{key}={values[key]} {problem}")
    return found


def check(prefix: str, values: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Check each of ``values`` that has a rule; raise :class:`ConfigError` naming every bad one,
    a line each (:func:`problems`)."""
    found = problems(prefix, values, rules)
    if found:
        raise ConfigError("\n".join(found))


def text(value) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def number(value) -> str | None:
    return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "must be a number"


def open_fraction(value) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1
    return None if ok else "must lie strictly between 0 and 1"


def below_one(value) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
    return None if ok else "must be a number in [0, 1)"


def list_of(rule: Rule, length: int | None = None) -> Rule:
    """A list whose every item passes ``rule`` (``length`` items, when given)."""
    def check_list(value) -> str | None:
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            return f"must be a list of {length} items" if length is not None else "must be a list"
        problems = [rule(v) for v in value]
        bad = next((p for p in problems if p), None)
        return f"has an item that {bad}" if bad else None
    return check_list
