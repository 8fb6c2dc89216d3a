"""Statistics over seeds: means, spreads, t intervals, norm differences, power, time to target.

Runs that differ only in their seed are repeats of one setting. For each setting we report the
mean, the sample standard deviation, the number of seeds and a 95% Student-t interval for the
mean; a difference between two settings gets Welch's t interval (unequal variances, the
Welch-Satterthwaite degrees of freedom), and "significant" means that interval excludes zero.

Why t and not the bootstrap: people run 3 to 5 seeds. A percentile bootstrap over 3 values has
only 10 distinct resampled means per side and its intervals are far too narrow: two norms drawn
from one distribution came out "significant" in 16.7% of cases at n=3 (5.7% at n=5) where 5% is
nominal. Welch's interval keeps its nominal rate at these counts (simulated in
tests/test_report_stats.py: about 3.5% at n=3 and 4.6% at n=5 for normal data, below 5% for
skewed accuracies, since the difference of two samples from one distribution is symmetric), and
it is what a reviewer expects. With one seed there is no spread, so every interval is NaN.

Each comparison also states its power: the smallest difference its seeds could detect
(:func:`min_detectable_effect`, 80% power at the 5% level) and, for an effect of a given size,
how many seeds per side would detect it (:func:`seeds_needed`).

Time to target is censored: a run that never reached the target is not missing, it is slower
than every run that did. :func:`censored_median` counts it as infinitely slow and reports the
fraction that reached the target, instead of averaging the survivors.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

from normbench.metrics import domain as metric_domain

LEVEL = 0.95
#: The power that :func:`min_detectable_effect` and :func:`seeds_needed` ask for.
POWER = 0.8
#: What the reports call their intervals.
INTERVAL_NAME = "95% t interval"
DIFF_INTERVAL_NAME = "95% Welch t interval"



def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def mean_ci(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval for the mean of ``values`` (non-finite values ignored).

    Returns ``(nan, nan)`` for fewer than two values: one run says nothing about the spread.
    """
    x = _finite(values)
    if len(x) < 2:
        return float("nan"), float("nan")
    half = _st.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def _welch(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Standard error of ``mean(x) - mean(y)`` and Welch-Satterthwaite degrees of freedom."""
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se2 = va + vb
    if se2 == 0:
        return 0.0, float(len(x) + len(y) - 2)
    df = se2 ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    return float(np.sqrt(se2)), float(df)


def diff_ci(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
            level: float = LEVEL) -> tuple[float, float]:
    """Welch's t interval for ``mean(a) − mean(b)``; needs two values on each side.

    The two norms' runs are independent samples (a seed gives the same data order, not a paired
    measurement), so no pairing is assumed.
    """
    x, y = _finite(a), _finite(b)
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan")
    se, df = _welch(x, y)
    d = x.mean() - y.mean()
    half = _st.t.ppf(0.5 + level / 2, df) * se
    return float(d - half), float(d + half)


def examples_diff_ci(a: Sequence[np.ndarray], b: Sequence[np.ndarray],
                     level: float = LEVEL) -> tuple[float, float, float]:
    """An interval for the difference of two settings' expected test scores that counts the
    test set's sampling error as well as the seeds': ``(difference, low, high)``
    (:func:`examples_diff_se` says how).  NaNs for fewer than two runs a side."""
    diff, se, df = examples_diff_se(a, b)
    if not np.isfinite(se):
        return diff, float("nan"), float("nan")
    lo, hi = t_interval(diff, se, df, level)
    return diff, lo, hi


def examples_diff_se(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """``(difference, standard error, degrees of freedom)`` of two settings' expected test scores
    from each run's per-example scores.

    ``a`` and ``b`` hold each run's per-example scores (``correct`` as 0/1, or a loss) on one
    fixed test set of ``n`` examples, in the same order. The difference is the mean over examples
    of ``d_i`` (the examples' mean over ``a``'s runs minus over ``b``'s): paired by example, so
    what makes an example hard for both cancels. Its variance has two parts, added:

    - the test set's: ``var(d_i) / n``, as if the ``n`` examples were drawn anew;
    - the seeds': ``var(score_a) / k_a + var(score_b) / k_b`` over the runs' test scores (Welch).

    ``var(d_i)`` also holds each example's seed-to-seed noise, which the seeds' part counts
    already, so the interval errs wide (conservative), never narrow. Degrees of freedom:
    Welch-Satterthwaite over the three parts. A Welch interval over the runs' scores alone
    treats the test set as the population: two norms with equal expected accuracy that differ
    on which examples they get right then come out "different" by the draw of the test set
    (simulated in tests/test_report_stats.py). NaN spread for fewer than two runs a side.
    """
    xa = np.asarray([np.asarray(r, dtype=float) for r in a])
    xb = np.asarray([np.asarray(r, dtype=float) for r in b])
    if len(xa) < 2 or len(xb) < 2 or xa.shape[1:] != xb.shape[1:]:
        diff = float(xa.mean() - xb.mean()) if len(xa) and len(xb) and xa.shape[1:] == xb.shape[1:] else float("nan")
        return diff, float("nan"), float("nan")
    n = xa.shape[1]
    d = xa.mean(0) - xb.mean(0)
    sa, sb = xa.mean(1), xb.mean(1)  # each run's test score
    parts = np.array([d.var(ddof=1) / n, sa.var(ddof=1) / len(sa), sb.var(ddof=1) / len(sb)])
    dfs = np.array([n - 1, len(sa) - 1, len(sb) - 1], dtype=float)
    se2 = float(parts.sum())
    df = float(se2 ** 2 / np.sum(parts ** 2 / dfs)) if se2 > 0 else float(n - 1)
    return float(d.mean()), float(np.sqrt(se2)), df


def t_interval(center: float, se: float, df: float, level: float = LEVEL) -> tuple[float, float]:
    """``center`` ± the t quantile at ``level`` (two-sided) times ``se``."""
    half = float(_st.t.ppf(0.5 + level / 2, df)) * se
    return float(center - half), float(center + half)


def welch_se(a, b) -> tuple[float, float]:
    """Standard error of ``mean(a) - mean(b)`` and its Welch-Satterthwaite degrees of freedom
    (NaNs for fewer than two values a side)."""
    x, y = _finite(a), _finite(b)
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan")
    return _welch(x, y)


def paired_se(a, b) -> tuple[float, float]:
    """Standard error and degrees of freedom of the mean per-run difference ``a - b``."""
    d = _finite(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    if len(d) < 2:
        return float("nan"), float("nan")
    return float(d.std(ddof=1) / np.sqrt(len(d))), float(len(d) - 1)


def min_detectable_effect(a, b, level: float = LEVEL, power: float = POWER, paired: bool = False) -> float:
    """The smallest true difference these seeds detect with ``power`` (two-sided, ``level``):
    (t quantile at ``level`` + t quantile at ``power``) times the standard error, at Welch's
    degrees of freedom, or of the per-run differences when ``paired`` (the same runs measured
    two ways). NaN below two seeds."""
    if paired:
        d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        d = d[np.isfinite(d)]
        if len(d) < 2:
            return float("nan")
        se, df = float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1
    else:
        x, y = _finite(a), _finite(b)
        if len(x) < 2 or len(y) < 2:
            return float("nan")
        se, df = _welch(x, y)
    return float((_st.t.ppf(0.5 + level / 2, df) + _st.t.ppf(power, df)) * se)


def seeds_needed(a, b, effect: float, level: float = LEVEL, power: float = POWER,
                 limit: int = 10_000, paired: bool = False) -> int | None:
    """Seeds per side at which an effect of size ``effect`` would be detected with ``power``,
    with the spread seen in ``a`` and ``b`` (their pooled standard deviation; the spread of the
    per-run differences when ``paired``). None when the spread is unknown, the effect is zero,
    or more than ``limit`` seeds would be needed."""
    x, y = _finite(a), _finite(b)
    if len(x) < 2 or len(y) < 2 or not np.isfinite(effect) or effect == 0:
        return None
    if paired:
        sd, scale = float(np.std(np.asarray(a, float) - np.asarray(b, float), ddof=1)), lambda n: np.sqrt(1 / n)
    else:
        sd = np.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2))
        scale = lambda n: np.sqrt(2 / n)  # noqa: E731
    if not sd > 0:
        return 2
    ns = _seed_counts(limit)
    df = ns - 1 if paired else 2 * ns - 2
    # One vectorised quantile call over every candidate count (a scalar call each costs ~0.3 ms).
    detected = np.flatnonzero((_st.t.ppf(0.5 + level / 2, df) + _st.t.ppf(power, df)) * sd * scale(ns) <= abs(effect))
    return int(ns[detected[0]]) if len(detected) else None


@functools.cache
def _seed_counts(limit: int) -> np.ndarray:
    """The seed counts :func:`seeds_needed` tries, in order: 2 to 100, then 10% more each time."""
    counts, n = [], 2
    while n <= limit:
        counts.append(n)
        n = n + 1 if n < 100 else int(n * 1.1)
    return np.array(counts)


def censored_median(values: Sequence[float | None], reached: Sequence[bool]) -> float:
    """Median time to target over all runs, those that never reached it counted as infinitely
    slow (``inf`` when fewer than half reached it; NaN for no runs)."""
    times = np.array([v if r else np.inf for v, r in zip(values, reached, strict=True)], dtype=float)
    if not len(times):
        return float("nan")
    times.sort()
    k = len(times)
    upper = times[k // 2]
    return float(upper if k % 2 else (times[k // 2 - 1] + upper) / 2)


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation, count and t interval of one setting's values."""

    mean: float
    std: float
    n: int
    ci_lo: float
    ci_hi: float


def describe(values: Sequence[float] | np.ndarray) -> Summary:
    """The :class:`Summary` of ``values``; ``std`` is NaN for one value, everything for none."""
    x = _finite(values)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    std = float(x.std(ddof=1)) if n > 1 else float("nan")
    lo, hi = mean_ci(x)
    return Summary(mean, std, n, lo, hi)


def _groups(runs: pd.DataFrame, by: list[str]):
    by = [k for k in by if k in runs.columns]
    if not by:
        yield (), runs
        return
    for key, frame in runs.groupby(by, dropna=False, sort=True):
        yield (key if isinstance(key, tuple) else (key,)), frame


def clip_to_domain(lo, hi, column: str):
    """``lo`` and ``hi`` (scalars or arrays) clipped to the values ``column``'s metric can take
    (an accuracy's t interval at 2 seeds can run past 100%), and whether any was clipped."""
    low, high = metric_domain(column)
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    clipped = bool(np.any(lo < low) or np.any(hi > high))
    lo, hi = np.where(lo < low, low, lo), np.where(hi > high, high, hi)
    return (float(lo), float(hi), clipped) if lo.ndim == 0 else (lo, hi, clipped)


def aggregate(runs: pd.DataFrame, metrics: Sequence[str], by: Sequence[str]) -> pd.DataFrame:
    """One row per setting (``by``): for each metric its mean, std, n, ci_lo and ci_hi.

    Only completed runs enter the statistics; the ``runs``, ``completed``, ``failed``,
    ``diverged`` and ``running`` columns count every run of the setting so that nothing is
    dropped silently. Columns are ``<metric>_mean``, ``<metric>_std``, ``<metric>_n``,
    ``<metric>_ci_lo``, ``<metric>_ci_hi`` (clipped to the metric's domain: ``<metric>_clipped``
    says so).
    """
    by = [k for k in by if k in runs.columns]
    metrics = [m for m in metrics if m in runs.columns]
    rows = []
    for key, frame in _groups(runs, list(by)):
        row = dict(zip(by, key, strict=True))
        status = frame["status"] if "status" in frame else pd.Series(["completed"] * len(frame))
        row["runs"] = len(frame)
        for s in ("completed", "failed", "diverged", "running"):
            row[s] = int((status == s).sum())
        done = frame[status == "completed"]
        for m in metrics:
            s = describe(pd.to_numeric(done[m], errors="coerce").to_numpy())
            row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_n"] = s.mean, s.std, s.n
            row[f"{m}_ci_lo"], row[f"{m}_ci_hi"], row[f"{m}_clipped"] = clip_to_domain(s.ci_lo, s.ci_hi, m)
        rows.append(row)
    return pd.DataFrame(rows)


def compare(
    runs: pd.DataFrame,
    metric: str,
    a: str,
    b: str,
    by: Sequence[str],
    column: str = "label",
    examples=None,
) -> pd.DataFrame:
    """``mean(a) − mean(b)`` of ``metric`` with Welch's interval, for every setting.

    ``a`` and ``b`` are values of ``column`` (the norm's label); ``by`` are the other setting
    keys (batch size, ...). A setting appears only if both norms have completed runs there.
    ``significant`` is True where the interval excludes zero. ``examples(frame)``, when given,
    returns the runs' per-example scores (:func:`~normbench.report.load.per_example`) or None;
    where both sides have them, ``ex_lo`` and ``ex_hi`` give the interval over test examples and
    seeds (:func:`examples_diff_se`), which counts the test set's sampling error too.
    """
    by = [k for k in by if k in runs.columns and k != column]
    done = runs[runs["status"] == "completed"] if "status" in runs else runs
    rows = []
    for key, frame in _groups(done, by):
        xa = pd.to_numeric(frame.loc[frame[column] == a, metric], errors="coerce").to_numpy()
        xb = pd.to_numeric(frame.loc[frame[column] == b, metric], errors="coerce").to_numpy()
        xa, xb = _finite(xa), _finite(xb)
        if not len(xa) or not len(xb):
            continue
        lo, hi = diff_ci(xa, xb)
        row = dict(zip(by, key, strict=True))
        row.update({
            "a": a, "b": b, "metric": metric,
            "mean_a": xa.mean(), "mean_b": xb.mean(), "n_a": len(xa), "n_b": len(xb),
            "diff": xa.mean() - xb.mean(), "ci_lo": lo, "ci_hi": hi,
            "significant": bool(np.isfinite(lo) and (lo > 0 or hi < 0)),
            "mde": min_detectable_effect(xa, xb),
        })
        if examples is not None:
            ea, eb = examples(frame[frame[column] == a]), examples(frame[frame[column] == b])
            if ea is not None and eb is not None and len(ea[0]) == len(eb[0]):
                _, row["ex_lo"], row["ex_hi"] = examples_diff_ci(ea, eb)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class BatchThreshold:
    """Where batch norm falls behind the best batch-independent norm, for one setting.

    Attributes:
        setting: the other setting keys' values (empty for a single comparison).
        batch_sizes: the batch sizes at which both kinds of norm have runs, ascending.
        behind: for each of those, whether BN is worse than the best batch-independent norm
            there (its difference interval excludes zero; from the means when a side has one
            seed).
        best_other: the best batch-independent norm's label at each batch size.
        diff, ci_lo, ci_hi: BN's metric minus the best other's, oriented so that > 0 is worse.
        threshold: the smallest batch size from which on BN is never behind; BN falls behind
            below it. None if BN is behind at the largest batch size tested too.
        from_means: True if some decision rested on means only (a side with a single seed).
    """

    setting: dict
    batch_sizes: list[int]
    behind: list[bool]
    best_other: list[str]
    diff: list[float]
    ci_lo: list[float]
    ci_hi: list[float]
    threshold: int | None
    from_means: bool

    def sentence(self, metric_name: str) -> str:
        """The finding in one sentence, for the report."""
        where = ", ".join(f"{k}={v}" for k, v in self.setting.items())
        where = f" ({where})" if where else ""
        basis = " (means only: some settings have a single seed)" if self.from_means else ""
        sizes = ", ".join(str(b) for b in self.batch_sizes)
        if not any(self.behind):
            return (f"Batch norm does not fall behind the best batch-independent norm at any "
                    f"batch size tested{where} ({sizes}; {metric_name}){basis}.")
        if self.threshold is None:
            return (f"Batch norm is behind the best batch-independent norm at every batch size "
                    f"up to {self.batch_sizes[-1]}{where} ({metric_name}){basis}.")
        worse = [b for b, x in zip(self.batch_sizes, self.behind, strict=True) if x]
        text = (f"Batch norm falls behind the best batch-independent norm below batch size "
                f"**{self.threshold}**{where}: behind at {', '.join(map(str, worse))} "
                f"({metric_name}, {DIFF_INTERVAL_NAME} of the difference excludes 0){basis}.")
        return text


def _independent(batch_dependent) -> bool:
    """A run's ``batch_dependent`` is known to be false (not missing, not true)."""
    return batch_dependent is not None and not pd.isna(batch_dependent) and not bool(batch_dependent)


def batch_threshold(
    runs: pd.DataFrame,
    metric: str,
    higher_is_better: bool,
    by: Sequence[str] = (),
    bn: str = "batch",
) -> list[BatchThreshold]:
    """Find the batch size below which batch norm falls behind the best batch-independent norm.

    At each batch size the best batch-independent norm (a run whose config says
    ``norm.batch_dependent: false``: group, layer, instance, RMSNorm, weight norm, none) is the
    one with the best mean. BN is *behind* there if its difference to that norm has a
    95% Welch interval on the worse side of zero. The threshold is the smallest batch size
    at and above which BN is never behind, so a noisy small-batch win does not move it.
    ``by`` are further setting keys (dataset, model, ...) that split the comparison.
    """
    done = runs[runs["status"] == "completed"] if "status" in runs else runs
    if "batch_size" not in done or bn not in set(done["norm"]):
        return []
    sign = -1.0 if higher_is_better else 1.0  # oriented difference: > 0 means BN is worse
    by = [k for k in by if k in done.columns and k not in ("batch_size", "norm", "label")]
    out = []
    for key, frame in _groups(done, by):
        sizes, behind, best, diffs, los, his = [], [], [], [], [], []
        from_means = False
        for bs, at in frame.groupby("batch_size", sort=True):
            values = {lab: _finite(pd.to_numeric(g[metric], errors="coerce"))
                      for lab, g in at.groupby("label")}
            bn_labels = [lab for lab in values if at.loc[at["label"] == lab, "norm"].iloc[0] == bn]
            others = [lab for lab in values
                      if _independent(at.loc[at["label"] == lab, "batch_dependent"].iloc[0]) and len(values[lab])]
            if len(bn_labels) != 1 or not others or not len(values[bn_labels[0]]):
                continue
            xb = values[bn_labels[0]]
            best_lab = min(others, key=lambda lab: sign * values[lab].mean())
            xo = values[best_lab]
            d = sign * (xb.mean() - xo.mean())
            lo, hi = diff_ci(sign * xb, sign * xo)
            if np.isfinite(lo):
                is_behind = lo > 0
            else:
                from_means = True
                is_behind = d > 0
            sizes.append(int(bs))
            behind.append(bool(is_behind))
            best.append(str(best_lab))
            diffs.append(float(d))
            los.append(lo)
            his.append(hi)
        if not sizes:
            continue
        threshold: int | None = sizes[0]
        for i in range(len(sizes)):
            if behind[i]:
                threshold = sizes[i + 1] if i + 1 < len(sizes) else None
        out.append(BatchThreshold(dict(zip(by, key, strict=True)), sizes, behind, best, diffs,
                                  los, his, threshold, from_means))
    return out


def curve_band(curves: pd.DataFrame, x: str, y: str, grid: np.ndarray | None = None, log: bool = False) -> pd.DataFrame:
    """Mean and pointwise 95% t band of ``y`` against ``x`` over the runs in ``curves``.

    With ``grid`` None the runs are assumed to share their ``x`` values (evaluation steps) and
    are aligned on them. With a grid (wall time differs between runs) each run is linearly
    interpolated onto it, and only grid points that every run reached are kept, so the mean
    never mixes in extrapolated values. The band is clipped to ``y``'s domain (an accuracy
    stays in [0, 1], a loss above 0). ``log``: for a log axis, the mean and band of log ``y``
    (the geometric mean), which stay positive. Returns columns ``x``, ``mean``, ``lo``, ``hi``, ``n``.
    """
    per_run = []
    for _, run in curves.groupby("run_id", sort=True):
        run = run[[x, y]].apply(pd.to_numeric, errors="coerce").dropna().sort_values(x)
        if run.empty:
            continue
        if grid is None:
            per_run.append(run.drop_duplicates(x, keep="last").set_index(x)[y])
        else:
            xs, ys = run[x].to_numpy(), run[y].to_numpy()
            inside = (grid >= xs[0]) & (grid <= xs[-1])
            per_run.append(pd.Series(np.where(inside, np.interp(grid, xs, ys), np.nan),
                                     index=grid))
    if not per_run:
        return pd.DataFrame(columns=["x", "mean", "lo", "hi", "n"])
    table = pd.concat(per_run, axis=1)
    if grid is not None:
        table = table.dropna()
    values = table.to_numpy()
    if log:
        values = np.log(np.where(values > 0, values, np.nan))
    n = np.isfinite(values).sum(axis=1)
    mean = np.nanmean(values, axis=1)
    lo = np.full(len(table), np.nan)
    hi = np.full(len(table), np.nan)
    ok = n > 1
    if ok.any():
        sd = np.nanstd(values[ok], axis=1, ddof=1)
        half = _st.t.ppf(0.5 + LEVEL / 2, n[ok] - 1) * sd / np.sqrt(n[ok])
        lo[ok], hi[ok] = mean[ok] - half, mean[ok] + half
    if log:
        mean, lo, hi = np.exp(mean), np.exp(lo), np.exp(hi)
    lo, hi, _ = clip_to_domain(lo, hi, y)
    return pd.DataFrame({"x": table.index.to_numpy(dtype=float), "mean": mean, "lo": lo,
                         "hi": hi, "n": n})
