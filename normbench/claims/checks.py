"""The machinery of a verdict: checks with honest intervals, mechanism checks, and the rule.

A claim's verdict (:mod:`normbench.claims`) is made of **checks**. Each compares two groups of
runs (e.g. batch norm and group norm at batch 2) on one metric: the difference of the means
over seeds with its 95% Welch t interval (:func:`normbench.report.stats.diff_ci`; the two
groups are independent samples), oriented so that positive means "as the paper says". A check
is

- **reproduced** when the whole interval is on the paper's side of zero;
- **not reproduced** when the whole interval is below the smallest effect that would count
  (``min_effect``: 0 unless the experiment config sets it, and then the paper's direction is
  significantly reversed);
- **inconclusive** otherwise, including a single seed, which has no interval.

Welch's interval keeps its nominal 5% false-significance rate at 3 and 5 seeds (the null
simulation in tests/test_report_stats.py); a percentile bootstrap at 3 seeds did not (16.7%).
Every check also states the smallest difference its seeds could detect with 80% power (MDE),
and an inconclusive one how many seeds per side would detect a difference of the size observed.

A proxy must first show that it is in the paper's regime: each claim has **mechanism checks**
(BN and GN within 1.5 points at batch 32, every variant's best learning rate inside its grid,
the sequence length, ...), each a measured number and a pass or fail. The rule:

- a claim is **reproduced** when every mechanism check passes and every deciding check is
  reproduced;
- **not reproduced** when every mechanism check passes and at least one deciding check is
  significantly reversed (see above), whatever the others say;
- **inconclusive** otherwise: a mechanism check failed (the proxy is not in the paper's regime,
  so its comparison does not count), or some check is inconclusive and none is reversed.

A claim of no difference is an **equivalence** check (:func:`equivalent`, two one-sided tests):
its 90% interval inside ``±margin`` is "reproduced", wholly outside it "not reproduced", and a
bound on a difference (:func:`smaller_than`) likewise; the margin is the spec's, declared before
any run. They enter the rule as every check does.

Checks marked ``decides=False`` are measurements shown with their interval that the paper did
not claim (e.g. how much of BN's small-batch penalty is its running estimate); they never move
the verdict. Nothing here imports torch: verdicts are made from run directories alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from normbench.metrics import is_percent
from normbench.records import read_config
from normbench.report.load import RunSet, flatten, per_example
from normbench.report.stats import (
    examples_diff_se,
    min_detectable_effect,
    paired_se,
    seeds_needed,
    t_interval,
    welch_se,
)

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
NOT_RUN = "not run"
RULE = ("A claim is reproduced when every mechanism check passes and every deciding check holds (a difference's "
        "95% interval on the paper's side of zero; an equivalence's 90% interval inside its margin); not reproduced "
        "when the mechanism checks pass and some deciding check is reversed (a difference's interval wholly on the "
        "other side, an equivalence's wholly outside its margin); inconclusive otherwise (a failed mechanism "
        "check means the proxy is not in the paper's regime, so its comparison does not count).")


def _fmt(metric: str):
    return (lambda v: f"{100 * v:.2f}") if is_percent(metric) else (lambda v: f"{v:.3f}")


@dataclass
class Check:
    """One comparison a claim rests on: ``mean(a) - mean(b)`` of ``metric`` and its interval.

    ``kind`` says what is claimed: a ``difference`` (the paper's sign, on the 95% interval), an
    ``equivalence`` (inside ``±margin``, TOST on the 90% interval), a ``bound`` (below
    ``margin``) or a one-sample ``threshold``. ``se`` and ``df`` let :meth:`at_level` decide it
    again at another level (a planned look).

    ``diff``, ``ci_lo`` and ``ci_hi`` are in the metric's own units (accuracy and error as
    fractions); ``better`` says which sign the paper predicts (``"higher"``: a > b). ``mde`` is
    the smallest difference these seeds detect with 80% power; ``seeds_needed`` the seeds per
    side that would detect the observed difference (None when that is not defined).
    """

    statement: str
    metric: str
    a: str
    b: str
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    diff: float
    ci_lo: float
    ci_hi: float
    better: str
    outcome: str
    note: str = ""
    mde: float = float("nan")
    seeds_needed: int | None = None
    decides: bool = True
    interval: str = "95% Welch interval"
    # What re-deciding the check at another level needs (a planned look, claims/sequential.py):
    # the difference's standard error and degrees of freedom, the kind of claim, and its bounds.
    se: float = float("nan")
    df: float = float("nan")
    kind: str = "difference"   # difference | equivalence | bound | threshold
    min_effect: float = 0.0
    margin: float = float("nan")
    basis: str = "Welch interval"
    level: float = 0.95
    next_look: int | None = None  # seeds a side at the next planned look, when one is left

    def at_level(self, level: float) -> Check:
        """This check decided on its interval at ``level`` (same difference and spread)."""
        lo, hi = (t_interval(self.diff, self.se, self.df, level) if np.isfinite(self.se)
                  else (float("nan"), float("nan")))
        measured = self.n_a > 0 and (self.n_b > 0 or self.kind == "threshold")
        outcome = _decide(self.kind, lo, hi, self.better, self.min_effect, self.margin) if measured else INCONCLUSIVE
        return replace(self, ci_lo=lo, ci_hi=hi, outcome=outcome, level=level,
                       interval=_interval_name(level, self.basis, self.kind, self.margin, self.metric))

    def text(self) -> str:
        f = _fmt(self.metric)
        unit = " points" if is_percent(self.metric) else ""
        seeds = "no interval: fewer than 2 seeds on a side"
        ci = f"[{f(self.ci_lo)}, {f(self.ci_hi)}]" if np.isfinite(self.ci_lo) else f"({seeds})"
        power = ""
        if np.isfinite(self.mde):
            power = f"; detectable: {f(self.mde)}{unit}"
            if self.outcome == INCONCLUSIVE and self.next_look:
                power += f"; next planned look: {self.next_look} seeds a side"
            elif self.outcome == INCONCLUSIVE and self.kind == "difference":
                power += (f"; ~{self.seeds_needed} seeds a side would settle a difference this size "
                          "(more seeds chosen from this inflate the error rate: plan looks in the spec)"
                          if self.seeds_needed else "; no difference to settle")
        if self.n_b == 0 and self.b.startswith("threshold"):  # a one-sample check (at_least)
            ci = (f"[{f(self.ci_lo + self.mean_b)}, {f(self.ci_hi + self.mean_b)}]" if np.isfinite(self.ci_lo)
                  else f"({seeds})")
            return f"{self.a} {f(self.mean_a)} (n={self.n_a}), 95% t interval {ci}; threshold {f(self.mean_b)}"
        return (f"{self.a} {f(self.mean_a)} (n={self.n_a}) vs {self.b} {f(self.mean_b)} (n={self.n_b}): "
                f"difference {f(self.diff)}{unit}, {self.interval} {ci}{power}")


@dataclass
class Mechanism:
    """What puts the proxy in the paper's regime (or shows it is not): a measurement of the
    runs (the plateau, a gap), or, with ``fact``, a property of the configuration (a sequence
    length, a learning-rate ratio) that holds once the spec is written and cannot fail after.
    Both must hold; a fact is labelled as one, so it is not read as evidence of the mechanism."""

    statement: str
    value: str
    passed: bool
    fact: bool = False
    name: str = ""  # what it measures, when another measurement may replace it ("plateau")

    def text(self) -> str:
        kind = " (configuration fact)" if self.fact else ""
        return f"{'pass' if self.passed else 'FAIL'}{kind}: {self.statement}: {self.value}"


@dataclass
class Verdict:
    claim: str
    outcome: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mechanism: list[Mechanism] = field(default_factory=list)
    not_run: bool = False

    def to_dict(self) -> dict:
        return {"claim": self.claim, "outcome": self.outcome, "checks": [asdict(c) for c in self.checks],
                "mechanism": [asdict(m) for m in self.mechanism], "notes": self.notes, "not_run": self.not_run}

    def headline(self) -> str:
        parts = [f"{c.outcome}: {c.statement}: {c.text()}" for c in self.checks if c.decides]
        failed = [m.statement for m in self.mechanism if not m.passed]
        if failed:
            parts.insert(0, "mechanism check failed: " + "; ".join(failed))
        return "; ".join(parts) if parts else "; ".join(self.notes) or "no runs"


def combine(checks: list[Check], mechanism: list[Mechanism] = ()) -> str:
    """The claim's outcome from its checks and mechanism checks (see the module's rule)."""
    deciding = [c.outcome for c in checks if c.decides]
    if not deciding or not all(m.passed for m in mechanism):
        return INCONCLUSIVE
    if all(o == REPRODUCED for o in deciding):
        return REPRODUCED
    if NOT_REPRODUCED in deciding:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def decide(claim: str, checks: list[Check], notes: list[str] | None = None,
           mechanism: list[Mechanism] | None = None) -> Verdict:
    mechanism = list(mechanism or [])
    return Verdict(claim, combine(checks, mechanism), checks, list(notes or []), mechanism)


# -- selecting runs and their values --------------------------------------------------------


def config_value(runs: pd.DataFrame, key: str) -> pd.Series:
    """The config value ``key`` of every run: its column if it was swept, else its config.yaml."""
    if key in runs.columns:
        return runs[key]
    values = []
    for run_dir in runs.get("run_dir", pd.Series([None] * len(runs))):
        try:
            values.append(flatten(read_config(Path(run_dir))).get(key))
        except Exception:
            values.append(None)
    return pd.Series(values, index=runs.index, dtype=object)


def same_value(a: Any, b: Any) -> bool:
    if isinstance(b, float) or isinstance(a, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if isinstance(b, bool) or isinstance(a, bool):
        return str(a).lower() == str(b).lower()
    return a == b or str(a) == str(b)


def where(runs: pd.DataFrame, **conditions: Any) -> pd.DataFrame:
    """The runs whose config matches every condition (keys with dots: pass a dict with **)."""
    mask = pd.Series(True, index=runs.index)
    for key, wanted in conditions.items():
        column = config_value(runs, key)
        mask &= column.map(lambda v, w=wanted: same_value(v, w))
    return runs[mask]


def values(runs: pd.DataFrame, metric: str, diverged_value: float | None = None) -> np.ndarray:
    """``metric`` of the completed runs; diverged runs count as ``diverged_value`` if given."""
    done = runs[runs["status"] == "completed"]
    x = pd.to_numeric(done[metric], errors="coerce").to_numpy(dtype=float) if metric in done else np.array([])
    if diverged_value is not None:
        x = np.concatenate([x, np.full(int((runs["status"] == "diverged").sum()), diverged_value)])
    return x[np.isfinite(x)]


def budget(runs: pd.DataFrame) -> str:
    """The runs' training budget in words ("300 steps"), for a claim retitled to what its budget
    tests (the largest step count a completed run reached)."""
    steps = pd.to_numeric(runs.loc[runs["status"] == "completed", "steps"], errors="coerce").dropna() \
        if "steps" in runs else pd.Series(dtype=float)
    return f"{int(steps.max()):,} steps" if len(steps) else "its budget"


def last_median(rs: RunSet, runs: pd.DataFrame, column: str, k: int | None) -> tuple[pd.DataFrame, str]:
    """``runs`` with each run's median of ``column`` over its last ``k`` evaluations (the GN paper
    reports the median error of the final 5 epochs: one evaluation's noise does not decide), and
    that column's name (``final_<column>`` unchanged when ``k`` is None). A run with fewer than
    ``k`` evaluations gets the median of those it has. ``column`` is a metrics column
    (``test_acc``) or its error (``test_error``: 1 - accuracy)."""
    if not k:
        return runs, f"final_{column}"
    out, name = runs.copy(), f"median_last{k}_{column}"
    curves = rs.curves.sort_values(["run_id", "step"]) if "step" in rs.curves else rs.curves
    source = column.replace("_error", "_acc") if column.endswith("_error") else column
    if source not in curves:
        out[name] = np.nan
        return out, name
    last = curves.groupby("run_id")[source].apply(lambda s: float(np.median(s.dropna().to_numpy()[-k:]))
                                                  if s.notna().any() else np.nan)
    out[name] = out["run_id"].map(1.0 - last if column.endswith("_error") else last)
    return out, name


def steps_to(rs: RunSet, runs: pd.DataFrame, target: float, column: str = "test_acc") -> tuple[pd.DataFrame, str]:
    """``runs`` with each run's training steps until its ``column`` first reached ``target``
    (linear between the evaluations around the crossing: "faster" as steps to a fixed level,
    apart from the level a run ends at), and that column's name. A run that never reaches the
    target counts as its last evaluated step, and ``<name>_censored`` marks it: that understates
    the slower side, so a difference it shows is not inflated."""
    out, name = runs.copy(), f"steps_to_{column}_{target:g}"
    reached, censored = {}, {}
    if column in rs.curves:
        for run_id, curve in rs.curves.sort_values("step").groupby("run_id"):
            c = curve.dropna(subset=[column])
            steps, ys = c["step"].to_numpy(dtype=float), c[column].to_numpy(dtype=float)
            if not len(ys):
                continue
            hit = np.flatnonzero(ys >= target)
            if not len(hit):
                reached[run_id], censored[run_id] = float(steps[-1]), True
                continue
            i = int(hit[0])
            if i == 0:
                reached[run_id] = float(steps[0])
            else:  # the crossing between evaluations i - 1 and i
                frac = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
                reached[run_id] = float(steps[i - 1] + frac * (steps[i] - steps[i - 1]))
            censored[run_id] = False
    out[name] = out["run_id"].map(reached)
    out[f"{name}_censored"] = out["run_id"].map(censored)
    return out, name


def censored_note(runs: pd.DataFrame, name: str) -> str:
    """The check note for :func:`steps_to`'s runs that never reached the target."""
    done = runs[runs["status"] == "completed"]
    n = int(done.get(f"{name}_censored", pd.Series(dtype=bool)).fillna(False).astype(bool).sum())
    return f"{n} of {len(done)} runs never reached the target: counted at their last step" if n else ""


def drift(rs: RunSet, runs: pd.DataFrame, prefix: str = "preact_p", quantiles=(15, 50, 85)) -> pd.DataFrame:
    """``runs`` with a column ``drift``: how far the probed percentiles moved between the first
    evaluation after step 0 and the last (mean over the percentiles of the absolute change)."""
    out = runs.copy()
    result = {}
    cols = [f"{prefix}{q}" for q in quantiles]
    for run_id, curve in rs.curves.groupby("run_id"):
        if not all(c in curve for c in cols):
            continue
        curve = curve[curve["step"] > 0].sort_values("step").dropna(subset=cols)
        if len(curve) < 2:
            continue
        first, last = curve[cols].iloc[0].to_numpy(), curve[cols].iloc[-1].to_numpy()
        result[run_id] = float(np.mean(np.abs(last - first)))
    out["drift"] = out["run_id"].map(result)
    return out


def _decide(kind: str, lo: float, hi: float, better: str, min_effect: float, margin: float) -> str:
    """A check's outcome from its interval ``[lo, hi]`` (see the module's rule)."""
    if not np.isfinite(lo):
        return INCONCLUSIVE
    if kind == "equivalence":  # TOST: inside the margin, or wholly outside it
        holds, fails = -margin < lo and hi < margin, lo >= margin or hi <= -margin
    elif kind == "bound":  # the difference is at most the margin
        holds, fails = hi < margin, lo > margin
    elif kind == "threshold":  # lo and hi are offsets from the threshold
        holds, fails = lo >= 0, hi < 0
    else:  # a difference, oriented so that positive is the paper's side
        sign = 1.0 if better == "higher" else -1.0
        olo, ohi = sorted((sign * lo, sign * hi))
        holds, fails = olo > 0, ohi < min_effect
    return REPRODUCED if holds else NOT_REPRODUCED if fails else INCONCLUSIVE


def _interval_name(level: float, basis: str, kind: str, margin: float, metric: str) -> str:
    name = f"{100 * level:.4g}% {basis}"
    if kind == "equivalence":
        return f"{name} (TOST, margin ±{_fmt(metric)(margin)})"
    if kind == "bound":
        return f"{name} (one-sided, bound {_fmt(metric)(margin)})"
    return name


def _check(kind: str, statement: str, metric: str, a_name: str, xa, b_name: str, xb, *, better: str,
           level: float, min_effect: float = 0.0, margin: float = float("nan"), note: str = "",
           decides: bool = True, paired: bool = False, examples: tuple[list, list] | None = None) -> Check:
    """The one builder of a :class:`Check`: the difference of the means, its spread (over test
    examples and seeds, paired by run, or Welch's), the interval at ``level`` and the outcome."""
    xa, xb = np.asarray(xa, dtype=float), np.asarray(xb, dtype=float)
    ma = float(xa.mean()) if len(xa) else float("nan")
    mb = float(xb.mean()) if len(xb) else float("nan")
    if examples is not None:
        _, se, df = examples_diff_se(*examples)
        basis = "interval over test examples and seeds"
    elif paired and len(xa) == len(xb):
        (se, df), basis = paired_se(xa, xb), "paired t interval"
    else:
        (se, df), basis = welch_se(xa, xb), "Welch interval"
    check = Check(statement, metric, a_name, b_name, ma, mb, len(xa), len(xb), ma - mb, float("nan"), float("nan"),
                  better, INCONCLUSIVE, note, min_detectable_effect(xa, xb, paired=paired), None, decides,
                  se=se, df=df, kind=kind, min_effect=min_effect, margin=margin, basis=basis).at_level(level)
    if not (len(xa) and len(xb)):
        check.note = note or "no completed runs on one side"
    elif check.outcome == INCONCLUSIVE and kind == "difference":
        check.seeds_needed = seeds_needed(xa, xb, ma - mb, paired=paired)
    return check


def compare(statement: str, metric: str, a_name: str, xa, b_name: str, xb, better: str = "higher",
            min_effect: float = 0.0, note: str = "", decides: bool = True, paired: bool = False,
            examples: tuple[list, list] | None = None) -> Check:
    """A :class:`Check` of ``mean(xa) - mean(xb)`` on its 95% interval; ``better="lower"`` for
    errors and bpc.

    ``paired``: ``xa[i]`` and ``xb[i]`` are the same run measured two ways, so the interval is
    the t interval of the per-run differences (the seeds' spread cancels out).
    ``examples``: each side's runs' per-example scores on one fixed test set
    (:func:`~normbench.report.load.per_example`);
    the interval then counts the test set's sampling error too
    (:func:`~normbench.report.stats.examples_diff_se`). The power figures stay Welch's.
    """
    return _check("difference", statement, metric, a_name, xa, b_name, xb, better=better, level=0.95,
                  min_effect=min_effect, note=note, decides=decides, paired=paired, examples=examples)


def compare_runs(statement: str, metric: str, a_name: str, runs_a: pd.DataFrame, b_name: str,
                 runs_b: pd.DataFrame, column: str, check=None, **kw) -> Check:
    """``check`` (:func:`compare`, :func:`equivalent` or :func:`smaller_than`) of two groups of
    runs on ``column``, over test examples and seeds when every run recorded its examples on
    one fixed test set of the same size, else Welch's over seeds (runs before per-example
    records, or a column the records do not hold, such as a median over evaluations)."""
    a, b = per_example(runs_a, column), per_example(runs_b, column)
    both = (a, b) if a is not None and b is not None and len(a[0]) == len(b[0]) else None
    return (check or compare)(statement, metric, a_name, values(runs_a, column), b_name, values(runs_b, column),
                              examples=both, **kw)


def equivalent(statement: str, metric: str, a_name: str, xa, b_name: str, xb, margin: float,
               examples: tuple[list, list] | None = None, decides: bool = True) -> Check:
    """A claim of no difference ("GN stays flat", "BN matches GN at batch 32"), decided by two
    one-sided tests (TOST) at the 5% level each: **reproduced** (equivalent) when the 90%
    interval of ``mean(xa) - mean(xb)`` lies inside ``(-margin, margin)``; **not reproduced**
    when it lies wholly outside (a difference larger than the margin, either way);
    **inconclusive** otherwise. ``margin`` is the spec's, declared before any run: the largest
    difference the paper's "same" allows. A wide interval never passes, however close the means."""
    return _check("equivalence", statement, metric, a_name, xa, b_name, xb, better="equal", level=0.90,
                  margin=margin, note=f"equivalence margin ±{_fmt(metric)(margin)}", decides=decides,
                  examples=examples)


def smaller_than(statement: str, metric: str, a_name: str, xa, b_name: str, xb, margin: float,
                 examples: tuple[list, list] | None = None, decides: bool = True) -> Check:
    """A claim that a difference is at most ``margin`` (one-sided at 5%): **reproduced** when the
    90% interval's upper end is below ``margin``, **not reproduced** when its lower end is above
    it, **inconclusive** otherwise (``margin`` declared in the spec before any run)."""
    return _check("bound", statement, metric, a_name, xa, b_name, xb, better="lower", level=0.90, margin=margin,
                  note=f"at most {_fmt(metric)(margin)}", decides=decides, examples=examples)


def at_least(statement: str, metric: str, name: str, x, threshold: float) -> Check:
    """A one-sample check: the mean of ``x`` is at least ``threshold`` (t interval)."""
    x = np.asarray(x, dtype=float)
    m = float(x.mean()) if len(x) else float("nan")
    se, df = (float(x.std(ddof=1) / np.sqrt(len(x))), float(len(x) - 1)) if len(x) >= 2 else (float("nan"),) * 2
    return Check(statement, metric, name, f"threshold {threshold:g}", m, threshold, len(x), 0, m - threshold,
                 float("nan"), float("nan"), "higher", INCONCLUSIVE, se=se, df=df, kind="threshold",
                 basis="t interval").at_level(0.95)


def best_of_grid(runs: pd.DataFrame, metric: str, select: str, key: str = "optim.lr", higher: bool = True,
                 diverged_value: float | None = None) -> tuple[np.ndarray, Any]:
    """The values of ``metric`` at the grid point (``key``) with the best mean ``select``, and that
    point. ``select`` is a validation metric with the direction of ``metric`` (``higher``):
    choosing the point by the metric it then reports would select on the test set, and a
    variant with a sharp optimum would win by the noise of its best point. Runs without the
    ``select`` column (no validation split) select nothing: the values come back empty."""
    grid = config_value(runs, key)
    best, best_key, best_mean = np.array([]), None, None
    for point in sorted(grid.dropna().unique(), key=str):
        at = runs[grid.map(lambda v, p=point: same_value(v, p))]
        chosen_by = values(at, select, diverged_value)
        if not len(chosen_by):
            continue
        m = chosen_by.mean() if higher else -chosen_by.mean()
        if best_mean is None or m > best_mean:
            best, best_key, best_mean = values(at, metric, diverged_value), point, m
    return best, best_key


# -- mechanism checks shared by several claims ----------------------------------------------


#: The name of the mechanism that says every setting has reached its plateau.
PLATEAU = "plateau"


def plateau(rs: RunSet, groups: dict[str, pd.DataFrame], metric: str = "test_acc", tail: float = 0.25,
            tolerance: float = 0.01) -> Mechanism:
    """Every group has reached its plateau: its mean ``metric`` changed by at most ``tolerance``
    over the last ``tail`` of training (from the last evaluation at or before that stretch's
    start to the final one)."""
    moves = {}
    curves = rs.curves
    for name, sel in groups.items():
        changes = []
        for run_id in sel["run_id"]:
            c = curves[curves["run_id"] == run_id].sort_values("step")
            if c.empty or metric not in c:
                continue
            c = c.dropna(subset=[metric])
            before = c[c["step"] <= (1 - tail) * c["step"].max()]
            if len(c) >= 2 and len(before) and before.index[-1] != c.index[-1]:
                changes.append(float(c[metric].iloc[-1] - before[metric].iloc[-1]))
        if changes:
            moves[name] = float(np.mean(changes))
    if not moves:
        return Mechanism("every variant reached its plateau", "no curves to measure", False, name=PLATEAU)
    worst = max(moves, key=lambda k: abs(moves[k]))
    shown = ", ".join(f"{k} {100 * v:+.2f}" for k, v in moves.items())
    return Mechanism(f"every variant reached its plateau (its {metric.replace('_', ' ')} moved by at most "
                     f"{100 * tolerance:g} points over the last {100 * tail:g}% of training; no pilot at a longer "
                     "budget, which would judge it better: a decaying schedule hardly moves in its last stretch)",
                     f"change per variant: {shown} points (largest: {worst})", abs(moves[worst]) <= tolerance,
                     name=PLATEAU)


def plateau_by_budget(base: RunSet, longer: RunSet, tolerance: float, what: str) -> Mechanism:
    """Every setting reached its plateau: on the pilot seeds, the longer budget (``what``) moved
    its mean final primary metric by at most ``tolerance`` (the spec's, in the metric's units).
    A longer budget is the direct test: under a decaying schedule the last stretch of one run
    hardly moves whether or not more training would help."""
    metric = f"final_test_{base.primary_metric}"
    keys = [k for k in base.setting_keys if k in longer.runs.columns]

    def means(rs: RunSet) -> dict:
        done = rs.runs[rs.runs["status"] == "completed"]
        if not len(done) or metric not in done:
            return {}
        return {k if isinstance(k, tuple) else (k,): float(v)
                for k, v in done.groupby(keys, dropna=False)[metric].mean().items()}

    a, b = means(base), means(longer)
    moves = {k: b[k] - a[k] for k in a if k in b}
    statement = (f"every setting reached its plateau: on the pilot seeds, {what} moved its mean final test "
                 f"{base.primary_metric} by at most {_fmt(metric)(tolerance)}{' points' if is_percent(metric) else ''}")
    if not moves:
        return Mechanism(statement, "no pilot runs at both budgets", False, name=PLATEAU)
    worst = max(moves, key=lambda k: abs(moves[k]))
    label = lambda k: ", ".join(f"{c}={v}" for c, v in zip(keys, k, strict=True))  # noqa: E731
    return Mechanism(statement, f"largest change {_fmt(metric)(moves[worst])} ({label(worst)}; "
                     f"{len(moves)} settings)", abs(moves[worst]) <= tolerance, name=PLATEAU)


def close_at(statement: str, xa, xb, tolerance: float) -> Mechanism:
    """Two groups' means are within ``tolerance`` (fractions: a plateau both sides reached)."""
    xa, xb = np.asarray(xa, dtype=float), np.asarray(xb, dtype=float)
    if not (len(xa) and len(xb)):
        return Mechanism(statement, "no completed runs on one side", False)
    gap = float(xa.mean() - xb.mean())
    return Mechanism(statement, f"{100 * xa.mean():.2f} vs {100 * xb.mean():.2f} (gap {100 * gap:+.2f} points, "
                                f"tolerance {100 * tolerance:g})", abs(gap) <= tolerance)


def recorded(runs: pd.DataFrame, column: str) -> list:
    """The distinct values of a summary column among the runs (e.g. values_per_batch_statistic)."""
    if column not in runs:
        return []
    return sorted({v for v in pd.to_numeric(runs[column], errors="coerce").dropna()})


def eval_matches_training(runs: pd.DataFrame, name: str, tolerance: float = 0.2) -> Mechanism:
    """Population statistics score the network that training fits: the eval-mode training loss
    is within ``tolerance`` nats of the loss the last steps saw in train mode (batch statistics),
    on average over the runs. The mean, not the largest gap: a maximum over runs can only grow
    with more seeds, so a check on it would fail more the better a claim is measured."""
    if not {"final_train_loss", "final_step_loss"} <= set(runs.columns):
        return Mechanism(f"{name}: evaluation scores the network training fits", "no train-mode loss recorded", False)
    done = runs[runs["status"] == "completed"]
    gap = (pd.to_numeric(done["final_train_loss"], errors="coerce")
           - pd.to_numeric(done["final_step_loss"], errors="coerce")).dropna()
    if gap.empty:
        return Mechanism(f"{name}: evaluation scores the network training fits", "no completed runs", False)
    stats = sorted({str(v) for v in done.get("eval_statistics", pd.Series(dtype=object)).dropna() if v})
    return Mechanism(f"{name}: evaluation ({', '.join(stats) or '?'} statistics) scores the network training fits "
                     f"(eval-mode training loss within {tolerance:g} nats of the train-mode loss of the last steps, "
                     "on average)",
                     f"mean gap {gap.mean():+.3f} nats (largest {gap.abs().max():.3f}, n={len(gap)})",
                     bool(abs(gap.mean()) <= tolerance))


def values_per_statistic(runs: pd.DataFrame, where_: str, limit: float, paper: str) -> Mechanism:
    counts = recorded(runs, "values_per_batch_statistic")
    shown = ", ".join(f"{v:g}" for v in counts) or "not recorded"
    return Mechanism(f"values each BN statistic is taken over {where_} (the source of BN's small-batch noise; "
                     f"at most {limit:g}, {paper})", shown, bool(counts) and max(counts) <= limit, fact=True)
