"""The verdict functions: one per claim, keyed by the claim's id (its spec is ``specs/<id>.yaml``).

A verdict function reads the runs (a :class:`~normbench.report.load.RunSet`, loaded by the
reporter) and the spec's ``verdict`` parameters and returns a :class:`~normbench.claims.checks.Verdict`:
the mechanism checks that put the small-scale proxy in the paper's regime, then the checks the
paper's claim rests on, each with its 95% Welch interval. :mod:`normbench.claims.checks` states the rule
that turns them into "reproduced", "not reproduced" or "inconclusive". Where the paper compares
tuned models, every compared variant gets the same learning-rate grid and the grid point with the
best mean over seeds is used for each.

Nothing here imports torch: verdicts are made from run directories alone.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from normbench.claims.checks import (
    INCONCLUSIVE,
    Mechanism,
    Verdict,
    at_least,
    best_of_grid,
    budget,
    censored_note,
    close_at,
    compare,
    compare_runs,
    config_value,
    decide,
    drift,
    equivalent,
    eval_matches_training,
    last_median,
    plateau,
    recorded,
    same_value,
    smaller_than,
    steps_to,
    values,
    values_per_statistic,
    where,
)
from normbench.report.load import RunSet
from normbench.report.stats import batch_threshold

#: claim id -> its verdict function
VERDICTS: dict[str, Callable[[RunSet, dict], Verdict]] = {}


def verdict(claim_id: str):
    """Register the decorated function as the verdict of ``claim_id``."""
    def register(function: Callable[[RunSet, dict], Verdict]) -> Callable[[RunSet, dict], Verdict]:
        VERDICTS[claim_id] = function
        return function
    return register


def _sorted_unique(series: pd.Series) -> list:
    return sorted({v for v in series.dropna()}, key=float)


def _smallest_and_largest_batch(runs: pd.DataFrame) -> tuple | None:
    sizes = _sorted_unique(runs["batch_size"])
    return (sizes[0], sizes[-1]) if len(sizes) >= 2 else None


# -- the verdicts ---------------------------------------------------------------------------


@verdict("bn-sigmoid")
def verdict_bn_sigmoid(rs: RunSet, p: dict) -> Verdict:
    """The BN paper's speed protocol: steps until the test accuracy reaches the plain network's
    final accuracy at the base rate (Inception's 72.2%). BN reaches it in fewer steps than the
    plain network; BN at 5x the rate in fewer steps than BN at the base rate (BN-x5); BN still
    trains at 30x, where the plain network does not; and its pre-activations stay stable."""
    runs = drift(rs, rs.runs)
    lrs = _sorted_unique(config_value(runs, "optim.lr"))
    if not lrs:
        return Verdict("bn-sigmoid", INCONCLUSIVE, notes=["no runs"])
    lo_lr, hi_lr = lrs[0], lrs[-1]
    x5 = next((lr for lr in lrs if same_value(lr, 5 * lo_lr)), None)
    chance = p.get("chance", 0.1)
    at = {(norm, lr): where(runs, norm=norm, **{"optim.lr": lr}) for norm in ("batch", "none") for lr in lrs}
    m = p.get("min_effect", 0.0)
    plain = values(at["none", lo_lr], "final_test_acc")
    target = float(plain.mean()) if len(plain) else float("nan")
    timed, name = steps_to(rs, runs, target)
    steps = {(norm, lr): values(where(timed, norm=norm, **{"optim.lr": lr}), name) for norm, lr in at}
    note = censored_note(timed, name)
    level = f"the plain network's final test accuracy at lr {lo_lr:g} ({100 * target:.1f}%)"
    checks = [
        compare(f"BN trains faster at the base learning rate {lo_lr:g}: fewer steps to {level}", "steps", "BN",
                steps["batch", lo_lr], "no norm", steps["none", lo_lr], better="lower", min_effect=m, note=note)]
    if x5 is not None:
        checks.append(compare(f"a 5x learning rate ({x5:g}) makes BN faster still: fewer steps to {level} (the "
                              "paper's BN-x5)", "steps", "BN x5", steps["batch", x5], "BN", steps["batch", lo_lr],
                              better="lower", min_effect=m, note=note))
    checks += [
        compare(f"BN permits a {hi_lr / lo_lr:g}x learning rate ({hi_lr:g}; final test accuracy, diverged = chance)",
                "final test acc", "BN", values(at["batch", hi_lr], "final_test_acc", chance), "no norm",
                values(at["none", hi_lr], "final_test_acc", chance), min_effect=m),
        compare("BN keeps the last hidden layer's pre-activation percentiles (15/50/85th) stable "
                f"(drift from the first epoch to the end, lr {lo_lr:g}; lower is better)",
                "drift", "BN", values(at["batch", lo_lr], "drift"), "no norm", values(at["none", lo_lr], "drift"),
                better="lower", min_effect=m),
    ]
    mechanism = [
        Mechanism(f"the plain sigmoid network learns at the base rate (final test accuracy above chance "
                  f"{100 * chance:g}% + 10 points; the paper's plain network trains, only slower)",
                  f"{100 * plain.mean():.1f}% (n={len(plain)})" if len(plain) else "no completed runs",
                  bool(len(plain)) and plain.mean() >= chance + 0.1),
        Mechanism("the high learning rate is at least 5x the base (the paper's BN-x5 and BN-x30)",
                  f"{hi_lr / lo_lr:g}x", hi_lr / lo_lr >= 5, fact=True),
    ]
    notes = []
    for lr in lrs:
        for norm in ("batch", "none"):
            sel = at[norm, lr]
            x = values(sel, "final_test_acc")
            div = int((sel["status"] == "diverged").sum())
            notes.append(f"{norm} at lr {lr:g} (x{lr / lo_lr:g}): final test acc "
                         f"{100 * x.mean():.1f}% over {len(x)} runs" + (f", {div} diverged" if div else "")
                         if len(x) else f"{norm} at lr {lr:g}: {div} diverged, none completed")
    return decide("bn-sigmoid", checks, notes, mechanism)


@verdict("gn-batch-size")
def verdict_gn_batch_size(rs: RunSet, p: dict) -> Verdict:
    runs, e = last_median(rs, rs.runs, "test_error", p.get("median_of_last"))
    extremes = _smallest_and_largest_batch(runs)
    if extremes is None:
        return Verdict("gn-batch-size", INCONCLUSIVE, notes=["needs at least two batch sizes"])
    small, large = extremes
    m = p.get("min_effect", 0.0)
    bn_s, bn_l = where(runs, norm="batch", batch_size=small), where(runs, norm="batch", batch_size=large)
    gn_s, gn_l = where(runs, norm="group", batch_size=small), where(runs, norm="group", batch_size=large)
    checks = [
        compare_runs(f"BN's error grows as the batch shrinks from {large} to {small}", "test error",
                     f"BN at {small}", bn_s, f"BN at {large}", bn_l, e, better="higher", min_effect=m),
        compare_runs(f"GN has a lower error than BN at batch {small}", "test error",
                     "GN", gn_s, "BN", bn_s, e, better="lower", min_effect=m),
    ]
    both = bn_s[bn_s["status"] == "completed"].dropna(subset=[c for c in (e, "final_test_acc_exact") if c in bn_s])
    exact_s = 1 - values(both, "final_test_acc_exact")
    if len(exact_s):  # Wu & Johnson 2021: how much of the penalty is the running estimate
        checks.append(compare(f"(measurement) BN at batch {small} scored with its running averages vs with exact "
                              "population statistics, the same weights (paired by run)", "test error",
                              "running", values(both, e), "exact", exact_s, better="higher", decides=False,
                              paired=True))
        checks.append(compare(f"(measurement) GN vs BN at batch {small}, BN scored with exact population statistics "
                              "(what is left of BN's penalty once its estimate does not lag: training with noisy "
                              "batch statistics)", "test error", "GN", values(gn_s, "final_test_error"), "BN exact",
                              exact_s, better="lower", decides=False))
    mechanism = [close_at(f"BN and GN reach the same plateau at batch {large} (test error within 1.5 points; "
                          "paper: 23.6 vs 24.1)", values(bn_l, e), values(gn_l, e), p.get("plateau_gap", 0.015)),
                 values_per_statistic(bn_s, f"at batch {small}", 98, "ResNet-50's last stage at batch 2: 2x7x7 = 98")]
    if p.get("flat_margin") is not None:  # the paper's "GN is flat", decided as an equivalence
        checks.append(equivalent(f"GN's error is the same at batch {small} as at {large} (paper: 24.1 vs 24.1)",
                                 "test error", f"GN at {small}", values(gn_s, e), f"GN at {large}", values(gn_l, e),
                                 float(p["flat_margin"])))
        notes = []
    else:
        info = compare(f"GN's error change from {large} to {small}", "test error", f"GN at {small}", values(gn_s, e),
                       f"GN at {large}", values(gn_l, e))
        notes = [f"GN at {small} vs at {large} (paper: flat, 24.1 vs 24.1): {info.text()}"]
    penalty = values(bn_s, e).mean() - values(bn_l, e).mean() if len(values(bn_s, e)) and len(values(bn_l, e)) else 0
    if len(exact_s) and penalty > 0:
        share = (values(bn_s, e).mean() - exact_s.mean()) / penalty
        notes.append(f"Exact population statistics remove {100 * share:.0f}% of BN's penalty at batch {small} "
                     f"({100 * penalty:.2f} points over batch {large}); the rest is training with noisy batch statistics.")
    notes += [t.sentence("test error") for t in batch_threshold(runs, e, higher_is_better=False)]
    return decide("gn-batch-size", checks, notes, mechanism)


@verdict("gn-norms")
def verdict_gn_norms(rs: RunSet, p: dict) -> Verdict:
    """Table 1's ordering at batch 32: GN below LN, LN below IN (adjacent pairs, each a
    difference), and GN close to BN: at most ``close_margin`` worse (a bound; paper: 0.5)."""
    (runs, e), m = last_median(rs, rs.runs, "test_error", p.get("median_of_last")), p.get("min_effect", 0.0)
    groups = {n: where(runs, norm=n) for n in ("batch", "group", "layer", "instance")}
    checks = [compare_runs(f"{a_name} has a lower error than {b_name} (paper: {pa} vs {pb})", "test error", a_name,
                           groups[a], b_name, groups[b], e, better="lower", min_effect=m)
              for a, a_name, pa, b, b_name, pb in (("group", "GN", 24.1, "layer", "LN", 25.3),
                                                   ("layer", "LN", 25.3, "instance", "IN", 28.4))]
    checks.append(compare_runs("GN is close to BN: at most the margin worse (paper: 24.1 vs 23.6)", "test error",
                               "GN", groups["group"], "BN", groups["batch"], e, check=smaller_than,
                               margin=float(p.get("close_margin", 0.01))))
    bn_runs = groups["batch"]
    per_run = (pd.to_numeric(bn_runs.get("values_per_batch_statistic", pd.Series(dtype=float)), errors="coerce")
               / pd.to_numeric(bn_runs["batch_size"], errors="coerce"))
    positions = sorted(set(per_run.dropna()))
    mechanism = [plateau(rs, groups),
                 Mechanism("positions per channel at the deepest norm (IN's statistics are taken over them; at "
                           "least 9, a 3x3 map; ResNet-50: 7x7 = 49)", ", ".join(f"{v:g}" for v in positions)
                           or "not recorded", bool(positions) and min(positions) >= 9, fact=True)]
    return decide("gn-norms", checks, mechanism=mechanism)


@verdict("gn-groups")
def verdict_gn_groups(rs: RunSet, p: dict) -> Verdict:
    """Table 2's G curve: flat between the spec's ``flat_groups`` (an equivalence within
    ``flat_margin``), and one group (LN) worse than the fewest of them (the curve's end). GN
    against LN at the default G is gn-norms' question, not asked again here."""
    (runs, e), m = last_median(rs, rs.runs, "test_error", p.get("median_of_last")), p.get("min_effect", 0.0)
    groups = config_value(runs, "norm.groups")
    sel = {g: runs[groups.map(lambda v, g=g: same_value(v, g))] for g in _sorted_unique(groups)}
    none = runs.iloc[0:0]
    lo, hi = (int(g) for g in p.get("flat_groups", (2, 8)))
    checks = [compare_runs(f"GN with {lo} groups has a lower error than with 1 group (= LN): the end of the G curve "
                           "(paper: 24.7 vs 25.3)", "test error", f"G={lo}", sel.get(lo, none), "G=1",
                           sel.get(1, none), e, better="lower", min_effect=m),
              compare_runs(f"GN's error is flat from {lo} to {hi} groups (paper: 24.7 vs 24.4)", "test error",
                           f"G={lo}", sel.get(lo, none), f"G={hi}", sel.get(hi, none), e, check=equivalent,
                           margin=float(p.get("flat_margin", 0.01)))]
    notes = [f"G={g}: test error {100 * values(s, e).mean():.2f}% (n={len(values(s, e))})"
             for g, s in sel.items() if len(values(s, e))]
    return decide("gn-groups", checks, notes, [plateau(rs, {f"G={g}": s for g, s in sel.items()})])


@verdict("ln-batch")
def verdict_ln_batch(rs: RunSet, p: dict) -> Verdict:
    """LN robust at a small batch: LN beats BN at batch 4, BN scored with its running averages and
    with exact population statistics (so that a lagging estimate does not decide). LN faster at
    batch 128: fewer steps to the unnormalized model's final test accuracy (the BN paper's
    protocol: steps to the baseline's final level), apart from the level each ends at."""
    runs = rs.runs
    sizes = _sorted_unique(runs["batch_size"])
    if len(sizes) < 2:
        return Verdict("ln-batch", INCONCLUSIVE, notes=["needs two batch sizes"])
    small, large, m = sizes[0], sizes[-1], p.get("min_effect", 0.0)
    sel = {(n, b): where(runs, norm=n, batch_size=b) for n in ("none", "batch", "layer") for b in (small, large)}
    a = "final_test_acc"
    ln_small, bn_small = values(sel["layer", small], a), sel["batch", small]
    checks = [compare(f"LN beats BN at batch {small} (final test accuracy; BN with its running averages)", "test acc",
                      "LN", ln_small, "BN", values(bn_small, a), min_effect=m)]
    exact = values(bn_small, f"{a}_exact")
    checks.append(compare(f"LN beats BN at batch {small}, BN scored with exact population statistics", "test acc",
                          "LN", ln_small, "BN exact", exact, min_effect=m,
                          note="" if len(exact) else "BN was not also scored exactly (norm.also_exact)"))
    base = values(sel["none", large], a)
    if len(base):
        target = float(base.mean())
        timed, name = steps_to(rs, pd.concat([sel["layer", large], sel["batch", large]]), target)
        ln_t, bn_t = where(timed, norm="layer"), where(timed, norm="batch")
        checks.append(compare(f"LN trains faster than BN at batch {large}: fewer steps to the unnormalized model's "
                              f"final test accuracy ({100 * target:.1f}%)", "steps", "LN", values(ln_t, name), "BN",
                              values(bn_t, name), better="lower", min_effect=m, note=censored_note(timed, name)))
    else:
        checks.append(compare(f"LN trains faster than BN at batch {large}", "steps", "LN", [], "BN", [],
                              note=f"no completed unnormalized runs at batch {large} to set the target"))
    mechanism = [values_per_statistic(sel["batch", small], f"at batch {small}", small,
                                       f"an MLP has no positions: the batch, {small:g}, as in the paper's batch-4 runs"),
                 plateau(rs, {f"{n} at {large:g}": sel[n, large] for n in ("none", "batch", "layer")})]
    notes = []
    for b in (large, small):
        for n in ("none", "batch", "layer"):
            x = values(sel[n, b], a)
            if len(x):
                notes.append(f"{n} at batch {b}: final test acc {100 * x.mean():.1f}% (n={len(x)})")
    return decide("ln-batch", checks, notes, mechanism)


WN_VARIANTS = {
    "plain": {"norm": "none"},
    "WN": {"norm": "weight", "norm.mean_only": False},
    "BN": {"norm": "batch", "norm.mean_only": False},
    "mean-only BN": {"norm": "batch", "norm.mean_only": True},
    "WN + mean-only BN": {"norm": "weight", "norm.mean_only": True},
}


@verdict("wn-cnn")
def verdict_wn(rs: RunSet, p: dict) -> Verdict:
    runs, e, m = rs.runs, "final_test_error", p.get("min_effect", 0.0)
    best = {name: best_of_grid(where(runs, **cond), e, "final_val_error", higher=False)
            for name, cond in WN_VARIANTS.items()}
    wnmo = best["WN + mean-only BN"][0]
    checks = [compare(f"WN + mean-only BN has a lower test error than {other}", "test error",
                      "WN + mean-only BN", wnmo, other, best[other][0], better="lower", min_effect=m)
              for other in ("plain", "BN")]
    grid = _sorted_unique(config_value(runs, "optim.lr"))
    inside = {name: lr is not None and grid and grid[0] < float(lr) < grid[-1] for name, (_, lr) in best.items()}
    mechanism = [Mechanism("every variant's best learning rate lies strictly inside the shared grid "
                           f"({', '.join(f'{g:g}' for g in grid)}), so each is compared at its optimum",
                           ", ".join(f"{name} {lr}" for name, (_, lr) in best.items()), bool(inside) and all(inside.values())),
                 # the paper compares final errors: each variant at its chosen rate must have finished
                 plateau(rs, {name: where(runs, **cond, **{"optim.lr": best[name][1]})
                              for name, cond in WN_VARIANTS.items() if best[name][1] is not None})]
    notes = [f"{name}: test error {100 * x.mean():.2f}% (best lr {lr}, n={len(x)})"
             for name, (x, lr) in best.items() if len(x)]
    notes.append("Each variant uses the learning rate of the shared grid with its best mean validation error "
                 "(selection never reads the test set); its test error is compared.")
    return decide("wn-cnn", checks, notes, mechanism)


@verdict("rbn-mnist")
def verdict_rbn_mnist(rs: RunSet, p: dict) -> Verdict:
    runs, a, m = rs.runs, "final_test_acc", p.get("min_effect", 0.0)
    perm = config_value(runs, "dataset.permute")
    gamma = config_value(runs, "norm.gamma_init")
    is_perm = perm.map(lambda v: same_value(v, True))
    g01 = gamma.map(lambda v: v is None or same_value(v, 0.1))
    g1 = gamma.map(lambda v: same_value(v, 1.0))
    bn = runs["norm"] == "batch"
    plain = runs["norm"] == "none"
    checks = [
        compare("BN-LSTM (gamma 0.1) beats the LSTM on permuted data", "test acc",
                "BN-LSTM", values(runs[bn & g01 & is_perm], a), "LSTM", values(runs[plain & is_perm], a), min_effect=m),
        compare("gamma_init 0.1 beats 1.0 for the BN-LSTM on permuted data", "test acc",
                "gamma 0.1", values(runs[bn & g01 & is_perm], a), "gamma 1.0", values(runs[bn & g1 & is_perm], a),
                min_effect=m),
        equivalent("BN-LSTM and LSTM are on par on sequential data (paper: 99.0 vs 98.9)", "test acc", "BN-LSTM",
                   values(runs[bn & g01 & ~is_perm], a), "LSTM", values(runs[plain & ~is_perm], a),
                   float(p.get("parity_margin", 0.02))),
    ]
    lengths = recorded(runs, "sequence_length")
    mechanism = [Mechanism("sequences long enough for long-range dependencies (at least 64 steps; the paper: 784)",
                           ", ".join(f"{v:g}" for v in lengths) or "not recorded", bool(lengths) and min(lengths) >= 64,
                           fact=True),
                 eval_matches_training(runs[bn], "BN-LSTMs")]  # every BN-LSTM a check compares
    return decide("rbn-mnist", checks, mechanism=mechanism)


@verdict("rbn-text")
def verdict_rbn_text(rs: RunSet, p: dict) -> Verdict:
    runs, m = rs.runs, p.get("min_effect", 0.0)
    longer = sorted((c for c in runs.columns if c.startswith("final_test_bpc_len")),
                    key=lambda c: int(c.rsplit("len", 1)[1]))
    bn, plain = where(runs, norm="batch"), where(runs, norm="none")
    after = budget(runs)
    checks = [compare(f"BN-LSTM has lower test bits per character than the LSTM after {after} (training length; "
                      "early training, not the paper's converged models)", "test bpc",
                      "BN-LSTM", values(bn, "final_test_bpc"), "LSTM", values(plain, "final_test_bpc"),
                      better="lower", min_effect=m)]
    if longer:
        col = longer[-1]
        checks.append(compare(f"... and on test segments longer than trained ({col.rsplit('_', 1)[1]})",
                              "test bpc", "BN-LSTM", values(bn, col), "LSTM", values(plain, col),
                              better="lower", min_effect=m))
    trained = recorded(runs, "sequence_length")
    test_len = max((int(c.rsplit("len", 1)[1]) for c in longer), default=0)
    mechanism = [Mechanism("test segments longer than the training length (the T_max rule is used)",
                           f"trained on {', '.join(f'{v:g}' for v in trained) or '?'}, tested up to {test_len}",
                           bool(trained) and test_len > max(trained), fact=True),
                 eval_matches_training(bn, "BN-LSTM")]
    return decide("rbn-text", checks, mechanism=mechanism)


@verdict("generalization")
def verdict_generalization(rs: RunSet, p: dict) -> Verdict:
    runs, m = rs.runs, p.get("min_effect", 0.0)
    noise = config_value(runs, "dataset.label_noise")
    levels = _sorted_unique(noise)
    if not levels:
        return Verdict("generalization", INCONCLUSIVE, notes=["no runs"])
    clean, rand = levels[0], levels[-1]
    at = {lv: runs[noise.map(lambda v, lv=lv: same_value(v, lv))] for lv in levels}
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
    n_train = (pd.to_numeric(runs["samples_seen"], errors="coerce") / pd.to_numeric(runs["epochs"], errors="coerce"))
    params = pd.to_numeric(runs.get("num_params", pd.Series(dtype=float)), errors="coerce")
    ratio = (params / n_train).dropna()
    mechanism = [Mechanism("labels fully randomised at the highest noise level (label_noise = 1)", f"{rand:g}",
                           rand >= 1.0, fact=True),
                 Mechanism("the networks have more parameters than training samples (what lets them memorise)",
                           f"{ratio.min():.0f}x" if len(ratio) else "not recorded", bool(len(ratio)) and ratio.min() > 1,
                           fact=True)]
    return decide("generalization", checks, notes, mechanism)


@verdict("brn-small-batch")
def verdict_brn_small_batch(rs: RunSet, p: dict) -> Verdict:
    runs = rs.runs
    extremes = _smallest_and_largest_batch(runs)
    if extremes is None:
        return Verdict("brn-small-batch", INCONCLUSIVE, notes=["needs a small and a large batch size"])
    small, large = extremes
    m, e = p.get("min_effect", 0.0), "final_test_error"
    at = {(n, b): where(runs, norm=n, batch_size=b) for n in ("batch", "renorm", "group") for b in (small, large)}
    err = {key: values(frame, e) for key, frame in at.items()}
    checks = [
        compare(f"Batch Renorm has a lower error than BN at batch {small}", "test error", "BRN", err["renorm", small],
                "BN", err["batch", small], better="lower", min_effect=m),
        compare(f"GN has a lower error than Batch Renorm at batch {small}", "test error", "GN", err["group", small],
                "BRN", err["renorm", small], better="lower", min_effect=m),
    ]
    steps = pd.to_numeric(at["renorm", small].get("steps", pd.Series(dtype=float)), errors="coerce")
    relaxed_at = pd.to_numeric(config_value(at["renorm", small], "norm.r_max_at"), errors="coerce")
    relaxed = bool(len(steps)) and bool(len(relaxed_at)) and float(relaxed_at.max()) < float(steps.min())
    mechanism = [
        close_at(f"BN and GN reach the same plateau at batch {large} (test error within 1.5 points)",
                 err["batch", large], err["group", large], p.get("plateau_gap", 0.015)),
        close_at(f"BRN and BN reach the same plateau at batch {large}", err["renorm", large], err["batch", large],
                 p.get("plateau_gap", 0.015)),
        values_per_statistic(at["batch", small], f"at batch {small}", 196, "ResNet-50's last stage at batch 4: 4x7x7"),
        Mechanism(f"Batch Renorm's correction is fully relaxed (r_max reached) before the end of the runs at batch "
                  f"{small}", f"r_max at step {relaxed_at.max():.0f} of {steps.min():.0f}" if relaxed else
                  "not recorded or never reached", relaxed, fact=True),
    ]
    notes = [f"BN at {small} vs at {large}: " + compare("", "test error", f"BN at {small}", err["batch", small],
                                                         f"BN at {large}", err["batch", large]).text()]
    return decide("brn-small-batch", checks, notes, mechanism)
