"""Statistics over seeds: t intervals with honest error rates, power, censoring, the BN threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_runs import gn_sweep, write_run
from scipy import stats as st

from normbench.claims.checks import compare as check
from normbench.report.load import load_runs
from normbench.report.stats import (
    aggregate,
    batch_threshold,
    censored_median,
    compare,
    curve_band,
    describe,
    diff_ci,
    mean_ci,
    min_detectable_effect,
    seeds_needed,
)


def test_mean_interval_is_students_t():
    x = np.array([0.90, 0.92, 0.93, 0.95])
    lo, hi = mean_ci(x)
    half = st.t.ppf(0.975, 3) * x.std(ddof=1) / 2
    assert (lo, hi) == (pytest.approx(x.mean() - half), pytest.approx(x.mean() + half))


def test_difference_interval_is_welchs():
    a, b = np.array([0.80, 0.81, 0.83]), np.array([0.70, 0.74, 0.72, 0.69])
    res = st.ttest_ind(a, b, equal_var=False)
    lo, hi = res.confidence_interval(0.95)
    assert diff_ci(a, b) == (pytest.approx(lo), pytest.approx(hi))
    lo, hi = diff_ci([0.7, 0.9, 0.8], [0.75, 0.85, 0.8])
    assert lo < 0 < hi
    assert all(np.isnan(diff_ci([0.8], [0.7, 0.71])))


def _false_significance_rate(n: int, draw, trials: int = 2000, seed: int = 0) -> float:
    """Two groups from one distribution: how often is their difference called significant?"""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        a, b = draw(rng, n), draw(rng, n)
        lo, hi = diff_ci(a, b)
        hits += lo > 0 or hi < 0
    return hits / trials


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("name,draw", [
    ("normal", lambda rng, n: rng.normal(0.9, 0.02, n)),
    ("skewed accuracies near 1", lambda rng, n: 1 - rng.exponential(0.02, n)),
    ("bounded accuracies", lambda rng, n: rng.beta(40, 3, n)),
])
def test_null_false_significance_rate_is_at_most_nominal(n, name, draw):
    """The interval's promise at the seed counts people use: at most 5% (6% with simulation error)."""
    rate = _false_significance_rate(n, draw)
    assert rate <= 0.06, f"{name}, n={n}: {100 * rate:.1f}% of null differences called significant"
    assert rate >= 0.015, f"{name}, n={n}: {100 * rate:.1f}%: uselessly conservative"


def test_null_verdict_rate_one_sided_is_at_most_nominal():
    """A check says 'reproduced' under the null in at most 2.5% of draws (one side of 5%)."""
    rng = np.random.default_rng(1)
    outcomes = [check("a beats b", "test acc", "a", rng.normal(0.9, 0.02, 3), "b", rng.normal(0.9, 0.02, 3)).outcome
                for _ in range(2000)]
    assert outcomes.count("reproduced") / len(outcomes) <= 0.03


def test_power_minimum_detectable_effect_and_seeds_needed():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 5), rng.normal(0, 1, 5)
    mde = min_detectable_effect(a, b)
    assert mde > 0
    # A true difference of the MDE is detected in about 80% of draws with the same spread.
    sd = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    hits = sum(diff_ci(rng.normal(mde, sd, 5), rng.normal(0, sd, 5))[0] > 0 for _ in range(2000))
    assert 0.6 < hits / 2000 < 0.95
    n = seeds_needed(a, b, sd)  # one standard deviation: the textbook answer is about 17 a side
    assert 15 <= n <= 19
    assert seeds_needed(a, b, 0.0) is None and seeds_needed([1.0], b, 1.0) is None
    assert np.isnan(min_detectable_effect([1.0], b))


def test_censored_median_counts_runs_that_never_reached_the_target():
    assert censored_median([100, 200, None], [True, True, False]) == 200
    assert censored_median([100, None, None], [True, False, False]) == np.inf
    assert censored_median([100, 300, None, None], [True, True, False, False]) == np.inf
    assert censored_median([100, 300, 500, None], [True, True, True, False]) == 400
    assert np.isnan(censored_median([], []))


def test_degenerate_cases():
    assert all(np.isnan(mean_ci([0.9])))
    assert all(np.isnan(mean_ci([])))
    assert mean_ci([0.9, 0.9, 0.9]) == (pytest.approx(0.9), pytest.approx(0.9))
    s = describe([0.9])
    assert s.n == 1 and s.mean == 0.9 and np.isnan(s.std) and np.isnan(s.ci_lo)
    s = describe([0.9, float("nan"), None])
    assert s.n == 1  # non-finite values (null in the record) are not data
    s = describe([0.8, 1.0])
    assert s.mean == pytest.approx(0.9) and s.std == pytest.approx(np.sqrt(0.02))
    assert s.ci_lo < 0.8 and s.ci_hi > 1.0  # two seeds: a t interval with 1 degree of freedom is wide


def _runs(tmp_path, spec):
    for i, (norm, bs, seed, acc, status) in enumerate(spec):
        write_run(tmp_path, f"r{i}", norm=norm, batch_size=bs, seed=seed, test_acc=acc,
                  train_acc=min(1.0, acc + 0.05), status=status)
    return load_runs([tmp_path])


def test_aggregate_known_numbers_and_status_counts(tmp_path):
    rs = _runs(tmp_path, [
        ("batch", 32, 0, 0.90, "completed"), ("batch", 32, 1, 0.92, "completed"),
        ("batch", 32, 2, 0.94, "completed"), ("batch", 32, 3, 0.10, "diverged"),
        ("group", 32, 0, 0.85, "completed"), ("group", 32, 1, 0.50, "failed"),
    ])
    agg = aggregate(rs.runs, ["final_test_acc"], ["batch_size", "label"]).set_index("label")
    bn = agg.loc["batch"]
    assert bn["final_test_acc_mean"] == pytest.approx(0.92)
    assert bn["final_test_acc_std"] == pytest.approx(0.02)
    assert bn["final_test_acc_n"] == 3
    assert bn["runs"] == 4 and bn["completed"] == 3 and bn["diverged"] == 1
    assert bn["final_test_acc_ci_lo"] < 0.92 < bn["final_test_acc_ci_hi"]
    gn = agg.loc["group"]
    assert gn["final_test_acc_n"] == 1 and gn["failed"] == 1
    assert np.isnan(gn["final_test_acc_ci_lo"])


def test_compare_norms_on_the_same_setting(tmp_path):
    rs = _runs(tmp_path, [
        ("batch", 2, 0, 0.60, "completed"), ("batch", 2, 1, 0.62, "completed"),
        ("group", 2, 0, 0.80, "completed"), ("group", 2, 1, 0.81, "completed"),
        ("batch", 32, 0, 0.90, "completed"), ("batch", 32, 1, 0.91, "completed"),
        ("group", 32, 0, 0.90, "completed"), ("group", 32, 1, 0.92, "completed"),
        ("layer", 32, 0, 0.85, "completed"),
    ])
    d = compare(rs.runs, "final_test_acc", "group", "batch", ["batch_size"])
    d = d.set_index("batch_size")
    assert d.loc[2, "diff"] == pytest.approx(0.195)
    assert d.loc[2, "significant"] and d.loc[2, "ci_lo"] > 0.1
    assert d.loc[32, "diff"] == pytest.approx(0.005)
    assert not d.loc[32, "significant"]
    # layer only has batch size 32, with one seed: a difference but no interval.
    d = compare(rs.runs, "final_test_acc", "layer", "batch", ["batch_size"])
    assert list(d["batch_size"]) == [32] and np.isnan(d["ci_lo"].iloc[0])


def test_batch_threshold_on_gn_shaped_sweep(tmp_path):
    rs = load_runs([gn_sweep(tmp_path / "sweep")])
    [t] = batch_threshold(rs.runs, "final_test_error", higher_is_better=False)
    assert t.batch_sizes == [2, 4, 8, 16, 32]
    assert t.behind == [True, True, True, False, False]
    assert t.threshold == 16
    assert set(t.best_other) == {"group"}
    assert t.diff[0] == pytest.approx(0.347 - 0.241, abs=0.005)
    assert "below batch size **16**" in t.sentence("test error")
    # The same finding from accuracy (higher is better) instead of error.
    [t2] = batch_threshold(rs.runs, "final_test_acc", higher_is_better=True)
    assert t2.behind == t.behind and t2.diff == pytest.approx(t.diff)


def test_batch_threshold_never_and_always_behind(tmp_path):
    rs = _runs(tmp_path, [
        ("batch", 4, 0, 0.90, "completed"), ("batch", 4, 1, 0.91, "completed"),
        ("layer", 4, 0, 0.80, "completed"), ("layer", 4, 1, 0.81, "completed"),
        ("batch", 8, 0, 0.90, "completed"), ("batch", 8, 1, 0.91, "completed"),
        ("layer", 8, 0, 0.80, "completed"), ("layer", 8, 1, 0.81, "completed"),
    ])
    [t] = batch_threshold(rs.runs, "final_test_acc", higher_is_better=True)
    assert t.behind == [False, False] and t.threshold == 4
    assert "does not fall behind" in t.sentence("test accuracy")
    [t] = batch_threshold(rs.runs, "final_test_error", higher_is_better=True)  # reversed
    assert t.behind == [True, True] and t.threshold is None
    assert "every batch size" in t.sentence("x")


def test_batch_threshold_with_single_seeds_uses_means(tmp_path):
    rs = _runs(tmp_path, [
        ("batch", 2, 0, 0.60, "completed"), ("group", 2, 0, 0.80, "completed"),
        ("batch", 32, 0, 0.90, "completed"), ("group", 32, 0, 0.89, "completed"),
    ])
    [t] = batch_threshold(rs.runs, "final_test_acc", higher_is_better=True)
    assert t.from_means and t.behind == [True, False] and t.threshold == 32
    assert "means only" in t.sentence("test accuracy")


def test_curve_band_on_shared_steps_and_on_a_time_grid():
    curves = pd.DataFrame({
        "run_id": ["a"] * 3 + ["b"] * 3,
        "step": [10, 20, 30] * 2,
        "t": [1.0, 2.0, 3.0, 2.0, 4.0, 6.0],
        "y": [0.1, 0.5, 0.9, 0.3, 0.7, 0.9],
    })
    band = curve_band(curves, "step", "y")
    assert list(band["x"]) == [10, 20, 30]
    assert band["mean"].tolist() == pytest.approx([0.2, 0.6, 0.9])
    assert (band["lo"] <= band["mean"]).all() and (band["hi"] >= band["mean"]).all()
    band = curve_band(curves, "t", "y", grid=np.linspace(0, 6, 13))
    # Only times both runs reached (2 to 3 s) are averaged, never extrapolated.
    assert band["x"].min() == pytest.approx(2.0) and band["x"].max() == pytest.approx(3.0)
    assert band["mean"].iloc[0] == pytest.approx((0.5 + 0.3) / 2)


def test_report_differences_on_null_data_flag_about_five_percent():
    """What `normbench report` does with two norms from one distribution, at 3 seeds, 300 settings."""
    rng = np.random.default_rng(7)
    rows = [{"label": label, "status": "completed", "batch_size": setting, "seed": seed,
             "final_test_acc": rng.normal(0.9, 0.01)}
            for setting in range(300) for label in ("batch", "group") for seed in range(3)]
    diffs = compare(pd.DataFrame(rows), "final_test_acc", "group", "batch", ["batch_size"])
    assert len(diffs) == 300
    assert diffs["significant"].mean() <= 0.06


def _per_example_runs(rng, n: int, k: int, seed_sd: float):
    """Two norms of equal expected accuracy that get different examples right: per-example
    probabilities sigmoid(1 + z_i + e_i) with the examples' shared difficulty z_i and each norm's
    own e_i (the same distribution for both), a seed effect on the logit, k runs a side on one
    test set of n examples drawn from the population."""
    z = rng.normal(size=n)
    out = []
    for _ in range(2):
        logit = 1 + z + rng.normal(size=n) + rng.normal(scale=seed_sd, size=(k, 1))
        out.append((rng.random((k, n)) < 1 / (1 + np.exp(-logit))).astype(float))
    return out


@pytest.mark.parametrize("k", [3, 5, 10])
def test_the_per_example_interval_holds_its_rate_when_the_test_set_is_a_sample(k):
    """Under the null (equal expected accuracy) the interval over examples and seeds says
    "different" at most at its nominal 2.5% a side; a Welch interval over the runs' scores alone,
    blind to which test set was drawn, says it far more often when the seeds vary little."""
    from normbench.report.stats import examples_diff_ci

    rng = np.random.default_rng(k)
    trials, low, high, welch = 600, 0, 0, 0
    for _ in range(trials):
        a, b = _per_example_runs(rng, n=500, k=k, seed_sd=0.05)
        diff, lo, hi = examples_diff_ci(a, b)
        assert lo <= diff <= hi and diff == pytest.approx(a.mean() - b.mean())
        low, high = low + (lo > 0), high + (hi < 0)
        wlo, whi = diff_ci(a.mean(1), b.mean(1))
        welch += (wlo > 0) or (whi < 0)
    print(f"k={k}: per-example interval {low / trials:.3f} / {high / trials:.3f} a side, "
          f"Welch over runs {welch / trials:.3f} both sides")
    assert low / trials <= 0.035 and high / trials <= 0.035
    assert welch / trials > 0.06  # above its nominal 5%


def test_an_equivalence_check_decides_by_its_90_percent_interval_and_the_margin():
    from normbench.claims.checks import INCONCLUSIVE as UNDECIDED
    from normbench.claims.checks import NOT_REPRODUCED, REPRODUCED, equivalent, smaller_than

    rng = np.random.default_rng(0)
    same = rng.normal(0.20, 0.002, 10), rng.normal(0.20, 0.002, 10)
    assert equivalent("flat", "test error", "a", *same[:1], "b", same[1], margin=0.01).outcome == REPRODUCED
    noisy = rng.normal(0.20, 0.05, 3), rng.normal(0.20, 0.05, 3)  # close means, a wide interval
    assert equivalent("flat", "test error", "a", noisy[0], "b", noisy[1], margin=0.01).outcome == UNDECIDED
    apart = rng.normal(0.30, 0.002, 10), rng.normal(0.20, 0.002, 10)
    check = equivalent("flat", "test error", "a", apart[0], "b", apart[1], margin=0.01)
    assert check.outcome == NOT_REPRODUCED and "TOST" in check.interval and "90%" in check.interval
    assert smaller_than("small", "test error", "a", *same[:1], "b", same[1], margin=0.01).outcome == REPRODUCED
    assert smaller_than("small", "test error", "a", apart[0], "b", apart[1], margin=0.01).outcome == NOT_REPRODUCED


@pytest.mark.parametrize("n", [3, 5, 10])
def test_equivalence_is_claimed_falsely_at_most_5_percent_at_the_margin(n):
    """The hardest null for TOST: the true difference is exactly the margin. 'Equivalent' must
    come out at most 5% of the time (two one-sided tests at 5% each); power shown at a zero
    difference for the record."""
    from normbench.claims.checks import REPRODUCED, equivalent

    rng = np.random.default_rng(n)
    margin, sd, trials = 0.01, 0.01, 2000
    false = sum(equivalent("", "test error", "a", rng.normal(margin, sd, n), "b", rng.normal(0, sd, n),
                           margin).outcome == REPRODUCED for _ in range(trials)) / trials
    power = sum(equivalent("", "test error", "a", rng.normal(0, sd, n), "b", rng.normal(0, sd, n),
                           margin).outcome == REPRODUCED for _ in range(trials)) / trials
    print(f"n={n}: false 'equivalent' {false:.3f} at the margin; 'equivalent' at no difference {power:.3f}")
    assert false <= 0.05 + 0.01
