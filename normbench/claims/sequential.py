"""Planned sequential seeds: a claim decided at looks declared in its spec, with alpha spending.

An inconclusive check invites more seeds, and adding them until it settles inflates the error:
simulated, acting once on "~N seeds would settle it" gave 5.2% false "reproduced" where 2.5% is
nominal, and adding one seed at a time until settled 10.0%. A spec can instead declare its looks
(``looks: [5, 10, 20, 40]``, seeds a side) before any run. At look ``j`` every deciding check not
yet settled is decided on its interval at that look's level, and a check that settles keeps that
decision; ``normbench reproduce`` runs the next look's seeds only while some check is unsettled,
and the schedule's end leaves the rest inconclusive.

The levels spend each check's error budget over the looks (Lan & DeMets' spending function of
Pocock's type, ``f(t) = alpha * ln(1 + (e - 1) t)`` at the information fraction
``t = n_j / n_last``): look ``j`` may spend ``f(t_j) - f(t_{j-1})`` a side. The sum over the
looks is the whole budget, so by the union bound the false rate over the schedule stays within
it whatever the looks' correlation: 2.5% a side for a difference (the 95% interval's), 5% for
an equivalence or a bound (the 90% interval's, TOST). tests/test_sequential.py simulates both
error rates over the whole schedule and the power at a 1-SD effect.

The decision is a function of the runs alone: look ``j`` reads the runs of seeds below
``looks[j]``, so ``--report-only`` rebuilds the same history from the run directories.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from normbench.claims.checks import INCONCLUSIVE, Check, Verdict, combine
from normbench.errors import ConfigError
from normbench.report.load import RunSet

#: The error each kind of check may make a side, over its whole schedule.
BUDGET = {"difference": 0.025, "threshold": 0.025, "equivalence": 0.05, "bound": 0.05}


def validate_looks(looks) -> list[int]:
    """``looks`` as a list of increasing seed counts of at least 2, or a ConfigError naming it."""
    ok = (isinstance(looks, Sequence) and len(looks) > 0
          and all(isinstance(n, int) and not isinstance(n, bool) and n >= 2 for n in looks)
          and all(a < b for a, b in zip(looks, looks[1:], strict=False)))
    if not ok:
        raise ConfigError(f"looks={list(looks) if isinstance(looks, Sequence) else looks!r} must be increasing "
                          "seed counts of at least 2, e.g. [5, 10, 20, 40]")
    return list(looks)


def spent(looks: Sequence[int], budget: float) -> list[float]:
    """The error each look may make a side: the increments of the spending function."""
    f = [budget * math.log1p((math.e - 1) * n / looks[-1]) for n in looks]
    return [b - a for a, b in zip([0.0, *f[:-1]], f, strict=True)]


def level_at(kind: str, looks: Sequence[int], j: int) -> float:
    """The two-sided interval level a check of ``kind`` is decided at, at look ``j``."""
    return 1 - 2 * spent(looks, BUDGET[kind])[j]


def subset(rs: RunSet, seeds_below: int) -> RunSet:
    """The runs of ``rs`` whose seed is below ``seeds_below`` (what look ``j`` had)."""
    keep = rs.runs[rs.runs["seed"].astype(float) < seeds_below]
    curves = rs.curves[rs.curves["run_id"].isin(keep["run_id"])] if "run_id" in rs.curves else rs.curves
    return replace(rs, runs=keep, curves=curves)


def decide(verdict_of: Callable[[RunSet], Verdict], rs: RunSet, looks: Sequence[int]) -> tuple[Verdict, int]:
    """The verdict of ``rs`` under the schedule ``looks``, and the look it stands at.

    Looks are taken in turn while the runs hold their seeds (every run of seeds below
    ``looks[j]``); each deciding check is decided at look ``j``'s level, and kept from the
    first look where it settled. The mechanism checks and the notes are the last look's.
    """
    seeds = sorted({int(s) for s in rs.runs["seed"].dropna()})
    settled: dict[str, Check] = {}
    last, verdict = 0, None
    for j, n in enumerate(looks):
        if j > 0 and (len(seeds) < n or seeds[n - 1] != n - 1):
            break  # this look's seeds have not all run
        verdict, last = verdict_of(subset(rs, n)), j
        current = []
        for check in verdict.checks:
            if not check.decides:
                current.append(check)
                continue
            if check.statement in settled:
                current.append(settled[check.statement])
                continue
            at = replace(check.at_level(level_at(check.kind, looks, j)), note=_joined(check.note, f"look {j + 1}"))
            if at.outcome != INCONCLUSIVE:
                settled[check.statement] = at
            current.append(at)
        verdict = replace(verdict, checks=current)
        if all(c.outcome != INCONCLUSIVE for c in current if c.decides):
            break
    if verdict is None:
        verdict = verdict_of(rs)
    following = looks[last + 1] if last + 1 < len(looks) else None
    checks = [replace(c, next_look=following) if c.decides and c.outcome == INCONCLUSIVE else c
              for c in verdict.checks]
    return replace(verdict, checks=checks, outcome=combine(checks, verdict.mechanism)), last


def unsettled(verdict: Verdict) -> bool:
    """Whether some deciding check is still inconclusive (the next look has work to do)."""
    return any(c.decides and c.outcome == INCONCLUSIVE for c in verdict.checks)


def _joined(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more
