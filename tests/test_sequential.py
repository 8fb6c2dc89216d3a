"""Planned sequential seeds (claims/sequential.py): the error rates over a whole schedule of
looks, the power, and the decision rebuilt from run directories."""

from __future__ import annotations

import numpy as np
import pytest

from normbench.claims import sequential
from normbench.claims.checks import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    compare,
    decide,
    values,
    where,
)
from normbench.errors import ConfigError
from normbench.report.load import load_runs
from tests.report_runs import write_run

LOOKS = [5, 10, 20, 40]


def _schedule(rng, effect: float, looks=LOOKS, planned: bool = True) -> tuple[str, int]:
    """One check through the schedule: its outcome and the seeds a side it used. ``planned``:
    each look at its spent level; else the 95% interval at every look (acting on each)."""
    a, b = rng.normal(effect, 1, looks[-1]), rng.normal(0, 1, looks[-1])
    for j, n in enumerate(looks):
        check = compare("a beats b", "score", "a", a[:n], "b", b[:n])
        if planned:
            check = check.at_level(sequential.level_at("difference", looks, j))
        if check.outcome != INCONCLUSIVE:
            return check.outcome, n
    return INCONCLUSIVE, looks[-1]


def test_the_spent_levels_add_up_to_the_budget():
    for kind, budget in sequential.BUDGET.items():
        assert sum(sequential.spent(LOOKS, budget)) == pytest.approx(budget)
        levels = [sequential.level_at(kind, LOOKS, j) for j in range(len(LOOKS))]
        assert all(0.9 < level < 1 for level in levels)


def test_planned_looks_hold_both_error_rates_over_the_whole_schedule():
    """No effect: false "reproduced" and false "not reproduced" at most 2.5% each over the four
    looks (acting at 95% at every look makes it about twice that); a 1-SD effect is found."""
    rng = np.random.default_rng(0)
    trials = 1000
    null = [_schedule(rng, 0.0)[0] for _ in range(trials)]
    naive = [_schedule(rng, 0.0, planned=False)[0] for _ in range(trials)]
    power = [_schedule(rng, 1.0) for _ in range(trials // 3)]
    false_yes, false_no = null.count(REPRODUCED) / trials, null.count(NOT_REPRODUCED) / trials
    found = sum(o == REPRODUCED for o, _ in power) / len(power)
    mean_seeds = float(np.mean([n for _, n in power]))
    print(f"planned: false reproduced {false_yes:.3f}, false not reproduced {false_no:.3f}; "
          f"naive: false reproduced {naive.count(REPRODUCED) / trials:.3f}; "
          f"power at 1 SD {found:.3f} with {mean_seeds:.1f} seeds a side on average")
    assert false_yes <= 0.025 + 0.008 and false_no <= 0.025 + 0.008
    assert naive.count(REPRODUCED) / trials > false_yes
    assert found >= 0.9


def test_looks_must_be_increasing_seed_counts():
    assert sequential.validate_looks([5, 10]) == [5, 10]
    for bad in ([10, 5], [1, 4], [], "5,10"):
        with pytest.raises(ConfigError, match="must be increasing seed counts"):
            sequential.validate_looks(bad)


def _verdict(rs):
    runs = rs.runs
    return decide("demo", [compare("BN beats GN", "test acc", "BN", values(where(runs, norm="batch"), "final_test_acc"),
                                   "GN", values(where(runs, norm="group"), "final_test_acc"))])


def test_the_decision_is_rebuilt_from_the_runs_look_by_look(tmp_path):
    """A clear effect settles at the first look, and keeps that look's decision when more seeds
    exist; with no effect the check stays open and names the next look, until the schedule ends."""
    rng = np.random.default_rng(1)
    for seed in range(10):
        write_run(tmp_path / "clear", f"b{seed}", norm="batch", seed=seed, test_acc=0.9 + 0.002 * rng.normal())
        write_run(tmp_path / "clear", f"g{seed}", norm="group", seed=seed, test_acc=0.8 + 0.002 * rng.normal())
        write_run(tmp_path / "null", f"b{seed}", norm="batch", seed=seed, test_acc=0.85 + 0.01 * rng.normal())
        write_run(tmp_path / "null", f"g{seed}", norm="group", seed=seed, test_acc=0.85 + 0.01 * rng.normal())
    verdict, look = sequential.decide(_verdict, load_runs([tmp_path / "clear"]), [3, 6, 10])
    assert (verdict.outcome, look, verdict.checks[0].n_a) == (REPRODUCED, 0, 3)
    assert "look 1" in verdict.checks[0].note and verdict.checks[0].level > 0.95
    verdict, look = sequential.decide(_verdict, load_runs([tmp_path / "null"]), [3, 6, 10, 20])
    check = verdict.checks[0]
    assert (verdict.outcome, look, check.n_a, check.next_look) == (INCONCLUSIVE, 2, 10, 20)
    assert "next planned look: 20 seeds a side" in check.text()
