"""Statistics over seeds: aggregates, bootstrap intervals, differences, the BN threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_runs import gn_sweep, write_run

from normbench.report.load import load_runs
from normbench.report.stats import (
    aggregate,
    batch_threshold,
    bootstrap_ci,
    bootstrap_diff_ci,
    compare,
    curve_band,
    describe,
)


def test_bootstrap_ci_contains_mean_is_deterministic_and_within_range():
    x = [0.90, 0.92, 0.93, 0.95]
    lo, hi = bootstrap_ci(x)
    assert lo < np.mean(x) < hi
    assert min(x) <= lo and hi <= max(x)
    assert bootstrap_ci(x) == (lo, hi)  # fixed-seed generator


def test_bootstrap_ci_narrows_with_more_seeds():
    # The same spread of values, seen 3 times as often: the interval shrinks like 1/sqrt(n).
    few = [0.88, 0.90, 0.92]
    widths = [np.subtract(*bootstrap_ci(np.tile(few, k))[::-1]) for k in (1, 3, 10)]
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < widths[0] / 2


def test_bootstrap_ci_matches_normal_theory_for_many_values():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=400)
    lo, hi = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)


def test_degenerate_cases():
    assert all(np.isnan(bootstrap_ci([0.9])))
    assert all(np.isnan(bootstrap_ci([])))
    assert bootstrap_ci([0.9, 0.9, 0.9]) == (pytest.approx(0.9), pytest.approx(0.9))
    s = describe([0.9])
    assert s.n == 1 and s.mean == 0.9 and np.isnan(s.std) and np.isnan(s.ci_lo)
    s = describe([0.9, float("nan"), None])
    assert s.n == 1  # non-finite values (null in the record) are not data
    s = describe([0.8, 1.0])
    assert s.mean == pytest.approx(0.9) and s.std == pytest.approx(np.sqrt(0.02))
    assert s.ci_lo == pytest.approx(0.8) and s.ci_hi == pytest.approx(1.0)


def test_difference_interval():
    a = [0.80, 0.81, 0.82]
    b = [0.70, 0.71, 0.72]
    lo, hi = bootstrap_diff_ci(a, b)
    assert 0.08 <= lo < 0.10 < hi <= 0.12
    lo, hi = bootstrap_diff_ci([0.7, 0.9, 0.8], [0.75, 0.85, 0.8])
    assert lo < 0 < hi
    assert all(np.isnan(bootstrap_diff_ci([0.8], [0.7, 0.71])))


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
    assert d.loc[2, "significant"] and d.loc[2, "ci_lo"] > 0.17
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
