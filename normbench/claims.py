"""The papers' claims: which experiment tests each, and a verdict computed from its runs.

A claim's verdict function reads the runs (a :class:`~normbench.report.load.RunSet`, loaded by
the reporter) and returns a :class:`Verdict` made of checks. Each check compares two groups of
runs (e.g. batch norm and group norm at batch 2) on one metric: the difference of the means
over seeds with its 95% percentile-bootstrap interval (:func:`normbench.report.stats.
bootstrap_diff_ci`, each side resampled on its own), oriented so that positive means "as the
paper says". A check is

- **reproduced** when the whole interval is above zero,
- **not reproduced** when the whole interval is below the smallest effect that would count
  (``min_effect``, 0 unless the experiment config sets it: then the paper's direction is
  significantly reversed),
- **inconclusive** otherwise (including a single seed, which has no interval).

A claim is reproduced when all its checks are, not reproduced when one is not, and
inconclusive otherwise. Where the paper compares tuned models, every compared variant gets the
same learning-rate grid and the grid point with the best mean over seeds is used for each.

Nothing here imports torch: verdicts are made from run directories alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from normbench.report.load import RunSet, _read_config, flatten
from normbench.report.stats import batch_threshold, bootstrap_ci, bootstrap_diff_ci

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
OUTCOMES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


@dataclass
class Check:
    """One comparison a claim rests on: ``mean(a) - mean(b)`` of ``metric`` and its interval.

    ``diff``, ``ci_lo`` and ``ci_hi`` are in the metric's own units (accuracy and error as
    fractions); ``better`` says which sign the paper predicts (``"higher"``: a > b).
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

    def text(self) -> str:
        pct = self.metric.endswith(("acc", "error")) or self.metric.startswith("train acc")
        f = (lambda v: f"{100 * v:.2f}") if pct else (lambda v: f"{v:.3f}")
        unit = " points" if pct else ""
        ci = f"[{f(self.ci_lo)}, {f(self.ci_hi)}]" if np.isfinite(self.ci_lo) else "(no interval: one seed)"
        if self.n_b == 0 and self.b.startswith("threshold"):  # a one-sample check (at_least)
            ci = (f"[{f(self.ci_lo + self.mean_b)}, {f(self.ci_hi + self.mean_b)}]" if np.isfinite(self.ci_lo)
                  else "(no interval: one seed)")
            return f"{self.a} {f(self.mean_a)} (n={self.n_a}), 95% CI {ci}; threshold {f(self.mean_b)}"
        return (f"{self.a} {f(self.mean_a)} (n={self.n_a}) vs {self.b} {f(self.mean_b)} (n={self.n_b}): "
                f"difference {f(self.diff)}{unit}, 95% CI {ci}")


@dataclass
class Verdict:
    claim: str
    outcome: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"claim": self.claim, "outcome": self.outcome, "checks": [asdict(c) for c in self.checks],
                "notes": self.notes}

    def headline(self) -> str:
        parts = [f"{c.outcome}: {c.statement}: {c.text()}" for c in self.checks]
        return "; ".join(parts) if parts else "; ".join(self.notes) or "no runs"


def combine(checks: list[Check]) -> str:
    if not checks:
        return INCONCLUSIVE
    outcomes = [c.outcome for c in checks]
    if all(o == REPRODUCED for o in outcomes):
        return REPRODUCED
    if NOT_REPRODUCED in outcomes:
        return NOT_REPRODUCED
    return INCONCLUSIVE


# -- selecting runs and their values --------------------------------------------------------


def config_value(runs: pd.DataFrame, key: str) -> pd.Series:
    """The config value ``key`` of every run: its column if it was swept, else its config.yaml."""
    if key in runs.columns:
        return runs[key]
    values = []
    for run_dir in runs.get("run_dir", pd.Series([None] * len(runs))):
        try:
            values.append(flatten(_read_config(Path(run_dir))).get(key))
        except Exception:
            values.append(None)
    return pd.Series(values, index=runs.index, dtype=object)


def _same(a: Any, b: Any) -> bool:
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
        mask &= column.map(lambda v, w=wanted: _same(v, w))
    return runs[mask]


def values(runs: pd.DataFrame, metric: str, diverged_value: float | None = None) -> np.ndarray:
    """``metric`` of the completed runs; diverged runs count as ``diverged_value`` if given."""
    done = runs[runs["status"] == "completed"]
    x = pd.to_numeric(done[metric], errors="coerce").to_numpy(dtype=float) if metric in done else np.array([])
    if diverged_value is not None:
        x = np.concatenate([x, np.full(int((runs["status"] == "diverged").sum()), diverged_value)])
    return x[np.isfinite(x)]


def curve_mean(rs: RunSet, runs: pd.DataFrame, column: str = "test_acc") -> pd.DataFrame:
    """``runs`` with a column ``mean_<column>``: the mean of ``column`` over each run's
    evaluations after step 0 (the area under its curve: higher = reached good values sooner)."""
    out = runs.copy()
    curves = rs.curves[rs.curves["step"] > 0] if "step" in rs.curves else rs.curves
    means = curves.groupby("run_id")[column].mean() if column in curves else pd.Series(dtype=float)
    out[f"mean_{column}"] = out["run_id"].map(means)
    return out


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


def compare(statement: str, metric: str, a_name: str, xa, b_name: str, xb, better: str = "higher",
            min_effect: float = 0.0, note: str = "") -> Check:
    """A :class:`Check` of ``mean(xa) - mean(xb)``; ``better="lower"`` for errors and bpc."""
    xa, xb = np.asarray(xa, dtype=float), np.asarray(xb, dtype=float)
    ma = float(xa.mean()) if len(xa) else float("nan")
    mb = float(xb.mean()) if len(xb) else float("nan")
    lo, hi = bootstrap_diff_ci(xa, xb)
    sign = 1.0 if better == "higher" else -1.0
    olo, ohi = sorted((sign * lo, sign * hi))
    if not (len(xa) and len(xb)):
        outcome, note = INCONCLUSIVE, note or "no completed runs on one side"
    elif not np.isfinite(lo):
        outcome = INCONCLUSIVE
    elif olo > 0:
        outcome = REPRODUCED
    elif ohi < min_effect:
        outcome = NOT_REPRODUCED
    else:
        outcome = INCONCLUSIVE
    return Check(statement, metric, a_name, b_name, ma, mb, len(xa), len(xb), ma - mb, lo, hi, better,
                 outcome, note)


def at_least(statement: str, metric: str, name: str, x, threshold: float) -> Check:
    """A one-sample check: the mean of ``x`` is at least ``threshold`` (bootstrap interval)."""
    x = np.asarray(x, dtype=float)
    m = float(x.mean()) if len(x) else float("nan")
    lo, hi = bootstrap_ci(x)
    if not len(x) or not np.isfinite(lo):
        outcome = INCONCLUSIVE
    elif lo >= threshold:
        outcome = REPRODUCED
    elif hi < threshold:
        outcome = NOT_REPRODUCED
    else:
        outcome = INCONCLUSIVE
    return Check(statement, metric, name, f"threshold {threshold:g}", m, threshold, len(x), 0, m - threshold,
                 lo - threshold, hi - threshold, "higher", outcome)


def best_of_grid(runs: pd.DataFrame, metric: str, key: str = "optim.lr", higher: bool = True,
                 diverged_value: float | None = None) -> tuple[np.ndarray, Any]:
    """The values of the grid point (``key``) with the best mean ``metric``, and that point."""
    grid = config_value(runs, key)
    best, best_key, best_mean = np.array([]), None, None
    for point in sorted(grid.dropna().unique(), key=str):
        x = values(runs[grid.map(lambda v, p=point: _same(v, p))], metric, diverged_value)
        if not len(x):
            continue
        m = x.mean() if higher else -x.mean()
        if best_mean is None or m > best_mean:
            best, best_key, best_mean = x, point, m
    return best, best_key


def _sorted_unique(series: pd.Series) -> list:
    return sorted({v for v in series.dropna()}, key=float)


# -- the verdicts ---------------------------------------------------------------------------


def verdict_bn_sigmoid(rs: RunSet, p: dict) -> Verdict:
    runs = drift(rs, curve_mean(rs, rs.runs))
    lrs = _sorted_unique(config_value(runs, "optim.lr"))
    if not lrs:
        return Verdict("bn-sigmoid", INCONCLUSIVE, notes=["no runs"])
    lo_lr, hi_lr = lrs[0], lrs[-1]
    chance = p.get("chance", 0.1)
    bn1, no1 = where(runs, norm="batch", **{"optim.lr": lo_lr}), where(runs, norm="none", **{"optim.lr": lo_lr})
    bnx, nox = where(runs, norm="batch", **{"optim.lr": hi_lr}), where(runs, norm="none", **{"optim.lr": hi_lr})
    m = p.get("min_effect", 0.0)
    checks = [
        compare(f"BN trains faster at the base learning rate {lo_lr:g} (mean test accuracy over training)",
                "mean test acc", "BN", values(bn1, "mean_test_acc", chance), "no norm",
                values(no1, "mean_test_acc", chance), min_effect=m),
        compare(f"BN permits a {hi_lr / lo_lr:g}x learning rate ({hi_lr:g}; final test accuracy, diverged = chance)",
                "final test acc", "BN", values(bnx, "final_test_acc", chance), "no norm",
                values(nox, "final_test_acc", chance), min_effect=m),
        compare("BN keeps the last hidden layer's pre-activation percentiles (15/50/85th) stable "
                f"(drift from the first epoch to the end, lr {lo_lr:g}; lower is better)",
                "drift", "BN", values(bn1, "drift"), "no norm", values(no1, "drift"), better="lower", min_effect=m),
    ]
    notes = []
    for lr in lrs:
        for norm in ("batch", "none"):
            sel = where(runs, norm=norm, **{"optim.lr": lr})
            x = values(sel, "final_test_acc")
            div = int((sel["status"] == "diverged").sum())
            notes.append(f"{norm} at lr {lr:g} (x{lr / lo_lr:g}): final test acc "
                         f"{100 * x.mean():.1f}% over {len(x)} runs" + (f", {div} diverged" if div else "")
                         if len(x) else f"{norm} at lr {lr:g}: {div} diverged, none completed")
    return Verdict("bn-sigmoid", combine(checks), checks, notes)


def verdict_gn_batch_size(rs: RunSet, p: dict) -> Verdict:
    runs = rs.runs
    sizes = _sorted_unique(runs["batch_size"])
    if len(sizes) < 2:
        return Verdict("gn-batch-size", INCONCLUSIVE, notes=["needs at least two batch sizes"])
    small, large = sizes[0], sizes[-1]
    m = p.get("min_effect", 0.0)
    e = "final_test_error"
    bn_s, bn_l = where(runs, norm="batch", batch_size=small), where(runs, norm="batch", batch_size=large)
    gn_s, gn_l = where(runs, norm="group", batch_size=small), where(runs, norm="group", batch_size=large)
    checks = [
        compare(f"BN's error grows as the batch shrinks from {large} to {small}", "test error",
                f"BN at {small}", values(bn_s, e), f"BN at {large}", values(bn_l, e), better="higher", min_effect=m),
        compare(f"GN has a lower error than BN at batch {small}", "test error",
                "GN", values(gn_s, e), "BN", values(bn_s, e), better="lower", min_effect=m),
    ]
    info = compare(f"GN's error change from {large} to {small}", "test error", f"GN at {small}", values(gn_s, e),
                   f"GN at {large}", values(gn_l, e))
    at_large = compare(f"BN vs GN at batch {large}", "test error", "BN", values(bn_l, e), "GN", values(gn_l, e))
    notes = [f"GN at {small} vs at {large} (paper: flat, 24.1 vs 24.1): {info.text()}",
             f"At batch {large}, BN vs GN (paper: 23.6 vs 24.1): {at_large.text()}"]
    notes += [t.sentence("test error") for t in batch_threshold(runs, e, higher_is_better=False)]
    return Verdict("gn-batch-size", combine(checks), checks, notes)


def verdict_gn_norms(rs: RunSet, p: dict) -> Verdict:
    runs, e, m = rs.runs, "final_test_error", p.get("min_effect", 0.0)
    gn = values(where(runs, norm="group"), e)
    checks = [compare(f"GN has a lower error than {name}", "test error", "GN", gn, name,
                      values(where(runs, norm=norm), e), better="lower", min_effect=m)
              for norm, name in (("layer", "LN"), ("instance", "IN"))]
    bn = compare("BN vs GN", "test error", "BN", values(where(runs, norm="batch"), e), "GN", gn, better="lower")
    return Verdict("gn-norms", combine(checks), checks,
                   [f"BN vs GN at this batch size (paper: 23.6 vs 24.1, BN ahead by 0.5): {bn.text()}"])


def verdict_gn_groups(rs: RunSet, p: dict) -> Verdict:
    runs, e = rs.runs, "final_test_error"
    groups = config_value(runs, "norm.groups")
    ref = p.get("reference_groups", 8)
    by = {g: values(runs[groups.map(lambda v, g=g: _same(v, g))], e) for g in _sorted_unique(groups)}
    checks = [compare(f"GN with {ref} groups has a lower error than with 1 group (= LN)", "test error",
                      f"G={ref}", by.get(ref, []), "G=1", by.get(1, []), better="lower",
                      min_effect=p.get("min_effect", 0.0))]
    notes = [f"G={g}: test error {100 * x.mean():.2f}% (n={len(x)})" for g, x in by.items() if len(x)]
    return Verdict("gn-groups", combine(checks), checks, notes)


def verdict_ln_batch(rs: RunSet, p: dict) -> Verdict:
    runs = curve_mean(rs, rs.runs)
    sizes = _sorted_unique(runs["batch_size"])
    if len(sizes) < 2:
        return Verdict("ln-batch", INCONCLUSIVE, notes=["needs two batch sizes"])
    small, large, m = sizes[0], sizes[-1], p.get("min_effect", 0.0)
    sel = {(n, b): where(runs, norm=n, batch_size=b) for n in ("none", "batch", "layer") for b in (small, large)}
    checks = [
        compare(f"LN beats BN at batch {small} (final test accuracy)", "test acc",
                "LN", values(sel["layer", small], "final_test_acc"), "BN", values(sel["batch", small], "final_test_acc"),
                min_effect=m),
        compare(f"LN trains faster than BN at batch {large} (mean test accuracy over training)", "mean test acc",
                "LN", values(sel["layer", large], "mean_test_acc"), "BN", values(sel["batch", large], "mean_test_acc"),
                min_effect=m),
    ]
    notes = []
    for b in (large, small):
        for n in ("none", "batch", "layer"):
            x = values(sel[n, b], "final_test_acc")
            if len(x):
                notes.append(f"{n} at batch {b}: final test acc {100 * x.mean():.1f}% (n={len(x)})")
    return Verdict("ln-batch", combine(checks), checks, notes)


WN_VARIANTS = {
    "plain": {"norm": "none"},
    "WN": {"norm": "weight", "norm.mean_only": False},
    "BN": {"norm": "batch", "norm.mean_only": False},
    "mean-only BN": {"norm": "batch", "norm.mean_only": True},
    "WN + mean-only BN": {"norm": "weight", "norm.mean_only": True},
}


def verdict_wn(rs: RunSet, p: dict) -> Verdict:
    runs, e, m = rs.runs, "final_test_error", p.get("min_effect", 0.0)
    best = {name: best_of_grid(where(runs, **cond), e, higher=False) for name, cond in WN_VARIANTS.items()}
    wnmo = best["WN + mean-only BN"][0]
    checks = [compare(f"WN + mean-only BN has a lower test error than {other}", "test error",
                      "WN + mean-only BN", wnmo, other, best[other][0], better="lower", min_effect=m)
              for other in ("plain", "BN")]
    notes = [f"{name}: test error {100 * x.mean():.2f}% (best lr {lr}, n={len(x)})"
             for name, (x, lr) in best.items() if len(x)]
    notes.append("Each variant uses the learning rate of the shared grid with its best mean test error.")
    return Verdict("wn-cnn", combine(checks), checks, notes)


def verdict_rbn_mnist(rs: RunSet, p: dict) -> Verdict:
    runs, a, m = rs.runs, "final_test_acc", p.get("min_effect", 0.0)
    perm = config_value(runs, "dataset.permute")
    gamma = config_value(runs, "norm.gamma_init")
    is_perm = perm.map(lambda v: _same(v, True))
    g01 = gamma.map(lambda v: v is None or _same(v, 0.1))
    g1 = gamma.map(lambda v: _same(v, 1.0))
    bn = runs["norm"] == "batch"
    plain = runs["norm"] == "none"
    checks = [
        compare("BN-LSTM (gamma 0.1) beats the LSTM on permuted data", "test acc",
                "BN-LSTM", values(runs[bn & g01 & is_perm], a), "LSTM", values(runs[plain & is_perm], a), min_effect=m),
        compare("gamma_init 0.1 beats 1.0 for the BN-LSTM on permuted data", "test acc",
                "gamma 0.1", values(runs[bn & g01 & is_perm], a), "gamma 1.0", values(runs[bn & g1 & is_perm], a),
                min_effect=m),
    ]
    seq = compare("BN-LSTM vs LSTM on sequential data", "test acc", "BN-LSTM", values(runs[bn & g01 & ~is_perm], a),
                  "LSTM", values(runs[plain & ~is_perm], a))
    return Verdict("rbn-mnist", combine(checks), checks,
                   [f"Sequential (paper: 99.0 vs 98.9, no real difference): {seq.text()}"])


def verdict_rbn_text(rs: RunSet, p: dict) -> Verdict:
    runs, m = rs.runs, p.get("min_effect", 0.0)
    longer = sorted((c for c in runs.columns if c.startswith("final_test_bpc_len")),
                    key=lambda c: int(c.rsplit("len", 1)[1]))
    bn, plain = where(runs, norm="batch"), where(runs, norm="none")
    checks = [compare("BN-LSTM has lower test bits per character than the LSTM (training length)", "test bpc",
                      "BN-LSTM", values(bn, "final_test_bpc"), "LSTM", values(plain, "final_test_bpc"),
                      better="lower", min_effect=m)]
    if longer:
        col = longer[-1]
        checks.append(compare(f"... and on test segments longer than trained ({col.rsplit('_', 1)[1]})",
                              "test bpc", "BN-LSTM", values(bn, col), "LSTM", values(plain, col),
                              better="lower", min_effect=m))
    return Verdict("rbn-text", combine(checks), checks)


def verdict_film_ablation(rs: RunSet, p: dict) -> Verdict:
    runs, a, m = rs.runs, "final_test_acc", p.get("min_effect", 0.0)
    film = config_value(runs, "model.film")
    off = values(runs[film == "off"], a)
    checks = [compare(f"FiLM {variant.replace('_', '-')} beats no FiLM", "test acc", variant,
                      values(runs[film == variant], a), "off", off, min_effect=m)
              for variant in ("full", "gamma_only", "beta_only")]
    notes = []
    per_type = sorted(c for c in runs.columns if c.startswith("final_test_acc_"))
    for variant in ("full", "gamma_only", "beta_only", "off"):
        sel = runs[film == variant]
        parts = [f"{c[len('final_test_acc_'):]} {100 * values(sel, c).mean():.1f}" for c in per_type
                 if len(values(sel, c))]
        if parts:
            notes.append(f"{variant}: " + ", ".join(parts))
    return Verdict("film-ablation", combine(checks), checks, notes)


def verdict_film_norm(rs: RunSet, p: dict) -> Verdict:
    runs, a, m = rs.runs, "final_test_acc", p.get("min_effect", 0.0)
    bn = values(where(runs, norm="batch"), a)
    checks = [compare("conditional BN beats FiLM without normalization", "test acc", "BN", bn, "none",
                      values(where(runs, norm="none"), a), min_effect=m)]
    notes = [compare(f"conditional BN vs conditional {name}", "test acc", "BN", bn, name,
                     values(where(runs, norm=norm), a)).text() for norm, name in (("group", "GN"), ("layer", "LN"))]
    return Verdict("film-norm", combine(checks), checks, notes)


def verdict_generalization(rs: RunSet, p: dict) -> Verdict:
    runs, m = rs.runs, p.get("min_effect", 0.0)
    noise = config_value(runs, "dataset.label_noise")
    levels = _sorted_unique(noise)
    if not levels:
        return Verdict("generalization", INCONCLUSIVE, notes=["no runs"])
    clean, rand = levels[0], levels[-1]
    at = {lv: runs[noise.map(lambda v, lv=lv: _same(v, lv))] for lv in levels}
    fit = p.get("fit_threshold", 0.95)
    checks = [at_least(f"{name} fits labels with noise {rand:g} (train accuracy >= {fit:g})", "train acc", name,
                       values(where(at[rand], norm=norm), "final_train_acc"), fit)
              for norm, name in (("batch", "BN"), ("none", "no norm"))]
    checks.append(compare(f"BN improves test accuracy at label noise {clean:g}", "test acc", "BN",
                          values(where(at[clean], norm="batch"), "final_test_acc"), "no norm",
                          values(where(at[clean], norm="none"), "final_test_acc"), min_effect=m))
    notes = []
    for lv in levels:
        for norm in ("batch", "none"):
            sel = where(at[lv], norm=norm)
            tr, te = values(sel, "final_train_acc"), values(sel, "final_test_acc")
            if len(tr):
                notes.append(f"{norm}, label noise {lv:g}: train {100 * tr.mean():.1f}%, test {100 * te.mean():.1f}% "
                             f"(n={len(tr)})")
    return Verdict("generalization", combine(checks), checks, notes)


# -- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    id: str
    title: str                # one line, for `normbench list claims`
    paper: str
    paper_result: str         # the paper's figure or numbers
    verdict: Callable[[RunSet, dict], Verdict]


CLAIMS: dict[str, Claim] = {c.id: c for c in (
    Claim("bn-sigmoid", "BN speeds up a sigmoid MLP, permits 5-30x learning rates, keeps pre-activations stable",
          "Ioffe & Szegedy 2015, Fig. 1 and Sec. 4.2",
          "MNIST 3x100 sigmoid MLP: BN reaches higher test accuracy faster; the 15/50/85th percentiles of a "
          "last-layer sigmoid input drift without BN, stay stable with BN. Inception: BN-x5 needs 14x fewer "
          "steps, BN-x30 74.8%; plain Inception at 5x diverges", verdict_bn_sigmoid),
    Claim("gn-batch-size", "BN's error grows as the batch shrinks from 32 to 2; GN stays flat",
          "Wu & He 2018, Fig. 1 / Table 3",
          "ResNet-50 ImageNet val error, batch 32/16/8/4/2: BN 23.6/23.7/24.8/27.3/34.7, GN 24.1/24.2/24.0/24.2/24.1",
          verdict_gn_batch_size),
    Claim("gn-norms", "At batch 32, GN beats LN and IN and is close to BN",
          "Wu & He 2018, Table 1", "val error: BN 23.6, LN 25.3, IN 28.4, GN 24.1", verdict_gn_norms),
    Claim("gn-groups", "GN with several groups beats one group (LN)",
          "Wu & He 2018, Table 2", "G = 64/32/16/8/4/2/1: 24.6/24.1/24.6/24.4/24.6/24.7/25.3", verdict_gn_groups),
    Claim("ln-batch", "LN is robust to the batch size (batch 128 and 4) and faster than BN",
          "Ba et al. 2016, Fig. 4", "permutation-invariant MNIST 784-1000-1000-10, Adam: curves only",
          verdict_ln_batch),
    Claim("wn-cnn", "Weight norm + mean-only BN gives the lowest test error",
          "Salimans & Kingma 2016, Table 1 / Fig. 1",
          "CIFAR-10 test error: plain 8.43, WN 8.46, BN 8.05, WN + mean-only BN 7.31", verdict_wn),
    Claim("rbn-mnist", "BN-LSTM beats the LSTM on permuted data; gamma_init 0.1 beats 1.0",
          "Cooijmans et al. 2016, Table 1 / Fig. 1",
          "sequential MNIST 98.9 vs 99.0, permuted MNIST 90.2 vs 95.4 (LSTM vs BN-LSTM); gamma 1 hurts on pMNIST",
          verdict_rbn_mnist),
    Claim("rbn-text", "BN-LSTM has lower bits per character, also on longer test sequences than trained",
          "Cooijmans et al. 2016, Table 2 / Fig. 3",
          "Penn Treebank characters 1.38 vs 1.32, text8 1.43 vs 1.36 bpc (LSTM vs BN-LSTM)", verdict_rbn_text),
    Claim("film-ablation", "FiLM's feature-wise gamma and beta are what make CLEVR reasoning work",
          "Perez et al. 2018, Table 1 / ablations",
          "val accuracy: FiLM 97.7, beta := 0 96.9, gamma := 1 95.9, without FiLM 21.4", verdict_film_ablation),
    Claim("film-norm", "Conditional BN beats FiLM without normalization (and vs conditional GN/LN)",
          "Perez et al. 2017/2018", "conditional BN 97.6; FiLM without BN 93.7", verdict_film_norm),
    Claim("generalization", "Networks fit random labels; BN improves test accuracy only modestly",
          "Zhang et al. 2017, Table 1 / Fig. 1",
          "CIFAR-10 Inception train/test: BN 100/85.75, no BN 100/82.00; random labels 100/9.78 and 100/10.12",
          verdict_generalization),
)}


def claim(name: str) -> Claim:
    if name not in CLAIMS:
        from normbench.errors import ConfigError

        raise ConfigError(f"unknown claim '{name}'; choose from: {', '.join(CLAIMS)} (see `normbench list claims`)")
    return CLAIMS[name]
