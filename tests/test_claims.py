"""Every claim's verdict on synthetic runs with known numbers: reproduced, not reproduced, inconclusive.

Each builder writes three seeds per compared setting (``tests/report_runs.write_run``). With
``effect=+1`` the compared metric differs clearly in the paper's direction (seed jitter far
below the effect), with ``-1`` clearly the other way, and with ``0`` the means are equal and
the seeds scatter widely, so the Welch interval straddles zero. Every builder also writes what
the claim's mechanism checks read (plateaued curves, values per BN statistic, sequence length,
the train-mode loss), so that they pass; ``test_failed_mechanism_*`` breaks one.
"""

from __future__ import annotations

import itertools
import json
import shutil

import pytest

from normbench.claims.registry import CLAIMS, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from normbench.report.load import load_runs
from tests.report_runs import write_run

SEEDS = (0, 1, 2)
PATTERN = (-1.0, 0.0, 1.0)
_names = itertools.count()


def jitter(seed: int, effect: int) -> float:
    return PATTERN[seed] * (0.15 if effect == 0 else 0.003)


def run(root, *, seed, **kw):
    return write_run(root, f"r{next(_names)}", seed=seed, **kw)


def curve_records(test_acc: float, percentiles=None, steps=(0, 10, 20, 30), ramp: float = 0.0):
    """Evaluation records ending at ``test_acc`` with optional probes: from 0.1 at step 0, constant
    after it, or (``ramp`` > 0) rising linearly to ``test_acc`` over ``ramp`` steps."""
    out = []
    for i, step in enumerate(steps):
        acc = 0.1 + (test_acc - 0.1) * min(1.0, step / ramp) if ramp else 0.1 if step == 0 else test_acc
        r = {"step": step, "epoch": step / 10, "samples_seen": step * 60, "wall_time_s": step * 0.01,
             "train_time_s": step * 0.01, "train_loss": 1.0, "train_acc": test_acc, "test_loss": 1.0,
             "test_acc": acc, "lr": 0.05}
        if percentiles is not None:
            r.update({f"preact_p{q}": percentiles(i) + off for q, off in ((15, -1.0), (50, 0.0), (85, 1.0))})
        out.append(r)
    return out


def build_bn_sigmoid(root, effect):
    """Curves rising linearly (``ramp`` steps to their final accuracy): +1: BN at the base rate
    reaches the plain network's final accuracy in fewer steps than the plain network, and BN at
    5x in fewer still; -1: the reverse; 0: scattered. The final accuracies at the high rate and
    the percentile drift follow ``effect`` likewise."""
    for seed in SEEDS:
        j = jitter(seed, effect)
        wide = 30 * PATTERN[seed] if effect == 0 else PATTERN[seed]
        ramps = {1: {("batch", 0.05): 50 + wide, ("batch", 0.25): 25 - wide, ("none", 0.05): 100 - wide},
                 -1: {("batch", 0.05): 100 + wide, ("batch", 0.25): 150 - wide, ("none", 0.05): 50 - wide},
                 0: {("batch", 0.05): 60 + wide, ("batch", 0.25): 60 - wide, ("none", 0.05): 60 - wide}}[effect]
        for lr in (0.05, 0.25, 1.5):
            bn, none = 0.6 + 0.2 * max(effect, 0) + j, 0.6 - j
            if lr == 1.5:
                bn = 0.6 + 0.2 * effect + j
            move_bn, move_none = (0.1, 1.0) if effect > 0 else (1.0, 0.1) if effect < 0 else (0.5 + 3 * j, 0.5 - 3 * j)
            for norm, acc, move in (("batch", bn, move_bn), ("none", none, move_none)):
                # the curves end 2 points above the final score, so that every run crosses the target
                recs = curve_records(acc + 0.02, percentiles=lambda i, m=move: m * i, steps=range(0, 201, 10),
                                     ramp=ramps.get((norm, lr), 60))
                run(root, seed=seed, norm=norm, model="mlp", test_acc=acc, metrics=recs,
                    config_extra={"optim.lr": lr})


def build_gn_batch_size(root, effect):
    for seed in SEEDS:
        j = jitter(seed, effect)
        for bs in (32, 8, 2):
            small = bs == 2
            bn_err = 0.10 + (0.10 * effect if small else 0) + j
            gn_err = 0.11 - j
            run(root, seed=seed, norm="batch", batch_size=bs, test_acc=1 - bn_err,
                summary_extra={"values_per_batch_statistic": 3 * bs})
            run(root, seed=seed, norm="group", batch_size=bs, test_acc=1 - gn_err, groups=8)


def build_brn_small_batch(root, effect):
    for seed in SEEDS:
        j = jitter(seed, effect)
        for bs in (32, 2):
            step = 0.02 * effect if bs == 2 else 0.0  # BN > BRN > GN in error at the small batch
            for norm, err in (("batch", 0.10 + 2 * step + j), ("renorm", 0.10 + step), ("group", 0.10 - j)):
                extra = {"summary_extra": {"values_per_batch_statistic": 3 * bs}} if norm == "batch" else {}
                if norm == "renorm":
                    extra = {"config_extra": {"norm.r_max_at": 200}}  # relaxed before step 400
                run(root, seed=seed, norm=norm, batch_size=bs, test_acc=1 - err, **extra)


def build_gn_norms(root, effect):
    """Test errors in Table 1's order (+1), with GN above LN and LN above IN (-1), or all equal
    and scattered (0)."""
    errors = {1: {"batch": 0.10, "group": 0.102, "layer": 0.12, "instance": 0.14},
              -1: {"batch": 0.10, "group": 0.14, "layer": 0.12, "instance": 0.10}}.get(effect, dict.fromkeys(
                  ("batch", "group", "layer", "instance"), 0.12))
    for seed in SEEDS:
        j = jitter(seed, effect)
        for norm, err in errors.items():
            extra = {"summary_extra": {"values_per_batch_statistic": 32 * 10}} if norm == "batch" else {}
            if norm == "group":
                extra["groups"] = 8
            run(root, seed=seed, norm=norm, test_acc=1 - err + (j if norm in ("group", "instance") else -j),
                tau=40.0, **extra)


def build_gn_groups(root, effect):
    """G = 2 below G = 1 and equal to G = 8 (+1), above G = 1 (-1), or all equal and scattered (0)."""
    errors = {1: {1: 0.13, 2: 0.11, 8: 0.11, 32: 0.11}, -1: {1: 0.10, 2: 0.13, 8: 0.10, 32: 0.10}}.get(
        effect, dict.fromkeys((1, 2, 8, 32), 0.12))
    for seed in SEEDS:
        j = jitter(seed, effect)
        for g, err in errors.items():
            run(root, seed=seed, norm="group", groups=g, test_acc=1 - err + (j if g == 2 else -j), tau=40.0)


def build_ln_batch(root, effect):
    """At batch 4 LN above BN (both scored ways) by ``effect``; at batch 128 LN's curve rises
    faster than BN's (+1: time constant 20 against 40 steps; -1: the reverse; 0: scattered),
    both ending above the unnormalized model, whose final accuracy is the speed target."""
    for seed in SEEDS:
        j = jitter(seed, effect)
        wide = 20 * PATTERN[seed] if effect == 0 else PATTERN[seed]
        tau = {"none": 40.0, "batch": 40.0 - wide if effect >= 0 else 20.0, "layer": 20.0 + wide if effect > 0
               else 40.0 + wide if effect == 0 else 40.0}
        for bs in (128, 4):
            for norm, acc in (("none", 0.5), ("batch", 0.6 - j), ("layer", 0.6 + (0.1 * effect if bs == 4 else 0) + j)):
                final = {"train_loss": 0.1, "train_acc": acc, "val_acc": acc, "test_loss": 0.3, "test_acc": acc}
                if norm == "batch":
                    final["test_acc_exact"] = acc + 0.01
                run(root, seed=seed, norm=norm, batch_size=bs, model="mlp", test_acc=acc, tau=tau[norm],
                    summary_extra={"values_per_batch_statistic": bs, "final": final})


def build_wn(root, effect, tau=40.0):
    variants = [("none", None, 0.80), ("weight", False, 0.85), ("batch", False, 0.88), ("batch", True, 0.84),
                ("weight", True, 0.88 + 0.05 * effect)]
    for seed in SEEDS:
        j = jitter(seed, effect)
        for norm, mean_only, acc in variants:
            for lr in (0.001, 0.003, 0.01):
                extra = {"optim.lr": lr}
                if mean_only is not None:
                    extra["norm.mean_only"] = mean_only
                a = acc - (0.02 if lr != 0.003 else 0) + (j if mean_only and norm == "weight" else -j)
                run(root, seed=seed, norm=norm, test_acc=a, config_extra=extra, tau=tau)


def lstm_record(acc: float, step_loss: float = 0.12) -> dict:
    """What a (BN-)LSTM run records for the mechanism checks: 64 steps, the train-mode loss."""
    return {"sequence_length": 64, "eval_statistics": "exact",
            "final": {"train_loss": 0.1, "train_acc": acc, "test_loss": 0.3, "test_acc": acc, "step_loss": step_loss}}


def build_rbn_mnist(root, effect, step_loss=0.12):
    for seed in SEEDS:
        j = jitter(seed, effect)
        for perm in (False, True):
            run(root, seed=seed, norm="none", model="lstm", test_acc=0.8 - j, config_extra={"dataset.permute": perm},
                summary_extra=lstm_record(0.8 - j))
            # permuted: BN-LSTM ahead by the effect; sequential: on par (+1), far apart (-1), scattered (0)
            acc = 0.8 + (0.1 * effect if perm else -0.1 if effect < 0 else 0) + j
            run(root, seed=seed, norm="batch", model="lstm", test_acc=acc,
                config_extra={"dataset.permute": perm, "norm.gamma_init": 0.1},
                summary_extra=lstm_record(acc, step_loss))
        run(root, seed=seed, norm="batch", model="lstm", test_acc=0.8 - j,
            config_extra={"dataset.permute": True, "norm.gamma_init": 1.0}, summary_extra=lstm_record(0.8 - j))


def build_rbn_text(root, effect):
    for seed in SEEDS:
        j = jitter(seed, effect)
        for norm, bpc in (("none", 2.5 - j), ("batch", 2.5 - 0.3 * effect + j)):
            final = {"train_loss": 1.0, "train_bpc": bpc, "test_loss": 1.0, "test_bpc": bpc,
                     "test_bpc_len100": bpc + 0.01, "test_bpc_len200": bpc + 0.02, "step_loss": 1.05}
            run(root, seed=seed, norm=norm, model="lstm", dataset="text", bpc=True, test_acc=bpc, train_acc=bpc,
                summary_extra={"final": final, "sequence_length": 50})


FILM_PRIOR = {"prior_test_acc": 0.2, "prior_test_acc_relational": 0.25, "type_prior_test_acc": 0.15}


def build_film_ablation(root, effect):
    """Sort-of-CLEVR-like runs: FiLM against late fusion by ``effect``, and gamma only and beta
    only equal to FiLM (+1), far below it (-1) or scattered (0); the image-only model far below
    all of them, on relational questions too (the mechanism)."""
    for seed in SEEDS:
        j = jitter(seed, effect)
        film = 0.8 + j
        other = {1: film + 0.002, -1: 0.6, 0: 0.8 - j}[effect]
        accs = {"full": film, "gamma_only": other, "beta_only": other, "image_only": 0.3 - 0.003 * PATTERN[seed],
                "late_fusion": {1: 0.6, -1: 0.9, 0: 0.8 - j}[effect]}
        for variant, acc in accs.items():
            relational = 0.5 - 0.003 * PATTERN[seed] if variant == "image_only" else 0.8 + 0.003 * PATTERN[seed]
            run(root, seed=seed, norm="batch", model="film", dataset="sort_of_clevr", test_acc=acc,
                config_extra={"model.film": variant}, summary_extra={
                    **FILM_PRIOR, "final": {"train_loss": 0.1, "train_acc": acc, "test_loss": 0.3, "test_acc": acc,
                                            "test_acc_relational": relational, "test_acc_non_relational": acc}})


def build_film_norm(root, effect):
    for seed in SEEDS:
        j = jitter(seed, effect)
        for norm, acc in (("batch", 0.7 + 0.1 * effect + j), ("group", 0.7), ("layer", 0.7), ("none", 0.7 - j)):
            run(root, seed=seed, norm=norm, model="film", dataset="sort_of_clevr", test_acc=acc,
                config_extra={"model.film": "full"}, summary_extra=FILM_PRIOR)


def test_film_ablation_needs_film_above_the_image_only_model_on_relational_questions(tmp_path):
    for seed in SEEDS:
        for variant in ("full", "gamma_only", "beta_only", "image_only", "late_fusion"):
            acc = {"image_only": 0.5, "late_fusion": 0.6}.get(variant, 0.8 + 0.003 * PATTERN[seed])
            run(tmp_path, seed=seed, norm="batch", model="film", dataset="sort_of_clevr", test_acc=acc,
                config_extra={"model.film": variant}, summary_extra={
                    **FILM_PRIOR, "final": {"test_acc": acc, "test_acc_relational": 0.5 + 0.01 * PATTERN[seed]}})
    verdict = CLAIMS["film-ablation"].verdict(load_runs([tmp_path]), CLAIMS["film-ablation"].params)
    assert [c.kind for c in verdict.checks] == ["difference", "equivalence", "equivalence"]
    assert all(c.outcome == REPRODUCED for c in verdict.checks)
    assert [m.passed for m in verdict.mechanism] == [True, True, False]  # prior, overall, relational
    assert verdict.outcome == INCONCLUSIVE
    notes = "\n".join(verdict.notes)
    assert "question-only prior per template: 20.0 (relational 25.0)" in notes
    assert "question-only prior per question type: 15.0" in notes and "FiLM: non_relational" not in notes


def build_generalization(root, effect):
    for seed in SEEDS:
        j = jitter(seed, effect)
        for noise in (0.0, 0.5, 1.0):
            fit = 1.0 - (0 if effect > 0 else 0.3 if effect < 0 else 0.05) + (0.0 if effect else 3 * j / 10)
            for norm in ("batch", "none"):
                test = 0.1 if noise == 1.0 else 0.85 + (0.04 * effect + j if norm == "batch" else -j)
                train = min(fit if noise == 1.0 else 1.0, 1.0)
                if effect == 0 and noise == 1.0:
                    train = 0.95 + PATTERN[seed] * 0.05
                run(root, seed=seed, norm=norm, label_noise=noise, test_acc=test, train_acc=train)


BUILDERS = {
    "bn-sigmoid": build_bn_sigmoid, "gn-batch-size": build_gn_batch_size, "gn-norms": build_gn_norms,
    "brn-small-batch": build_brn_small_batch,
    "gn-groups": build_gn_groups, "ln-batch": build_ln_batch, "wn-cnn": build_wn, "rbn-mnist": build_rbn_mnist,
    "rbn-text": build_rbn_text, "film-ablation": build_film_ablation, "film-norm": build_film_norm,
    "generalization": build_generalization,
}
EXPECTED = {1: REPRODUCED, -1: NOT_REPRODUCED, 0: INCONCLUSIVE}


def test_every_claim_has_a_builder():
    assert set(BUILDERS) == set(CLAIMS)


@pytest.mark.parametrize("effect", [1, -1, 0], ids=["reproduced", "not-reproduced", "inconclusive"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_verdict(tmp_path, name, effect):
    BUILDERS[name](tmp_path, effect)
    verdict = CLAIMS[name].verdict(load_runs([tmp_path]), CLAIMS[name].params)  # the spec's parameters
    assert verdict.checks, verdict.notes
    assert verdict.outcome == EXPECTED[effect], [(c.statement, c.outcome, c.text()) for c in verdict.checks]
    for check in verdict.checks:
        assert check.n_a >= 3 and (check.n_b >= 3 or check.b.startswith("threshold"))
        if check.outcome != INCONCLUSIVE:
            assert check.ci_lo <= check.diff <= check.ci_hi
        assert check.interval in check.text() or "95% t interval" in check.text()
        assert check.level == (0.90 if check.kind in ("equivalence", "bound") else 0.95)
        assert check.decides is False or not check.mde < 0  # NaN for a one-sample check
    for check in verdict.checks:  # an inconclusive check says how many seeds would settle it
        if check.outcome == INCONCLUSIVE and check.n_b and check.kind == "difference":
            assert "seeds a side" in check.text() or "no difference to settle" in check.text()
    assert all(m.passed for m in verdict.mechanism), [m.text() for m in verdict.mechanism]


def test_single_seed_is_inconclusive(tmp_path):
    run(tmp_path, seed=0, norm="batch", batch_size=2, test_acc=0.5)
    run(tmp_path, seed=0, norm="batch", batch_size=32, test_acc=0.9)
    run(tmp_path, seed=0, norm="group", batch_size=2, test_acc=0.9, groups=8)
    run(tmp_path, seed=0, norm="group", batch_size=32, test_acc=0.9, groups=8)
    verdict = CLAIMS["gn-batch-size"].verdict(load_runs([tmp_path]), {})
    assert verdict.outcome == INCONCLUSIVE
    assert all("fewer than 2 seeds" in c.text() for c in verdict.checks)


def test_failed_mechanism_makes_a_clear_effect_inconclusive(tmp_path):
    """A BN-LSTM whose evaluation does not score what training fits (running averages that lag):
    the proxy is out of the paper's regime, and its clear win does not count."""
    build_rbn_mnist(tmp_path, 1, step_loss=1.5)
    verdict = CLAIMS["rbn-mnist"].verdict(load_runs([tmp_path]), {})
    assert all(c.outcome == REPRODUCED for c in verdict.checks)
    assert [m.passed for m in verdict.mechanism] == [True, False]
    assert verdict.outcome == INCONCLUSIVE
    assert verdict.headline().startswith("mechanism check failed")


def test_gn_batch_size_needs_both_norms_on_one_plateau_at_batch_32(tmp_path):
    for seed in SEEDS:
        for bs in (32, 2):
            run(tmp_path, seed=seed, norm="batch", batch_size=bs, test_acc=0.94 if bs == 32 else 0.7 + 0.01 * seed,
                summary_extra={"values_per_batch_statistic": 3 * bs})
            run(tmp_path, seed=seed, norm="group", batch_size=bs, test_acc=0.85 + 0.01 * seed, groups=8)
    verdict = CLAIMS["gn-batch-size"].verdict(load_runs([tmp_path]), {})
    assert verdict.mechanism[0].passed is False and "gap" in verdict.mechanism[0].value
    assert verdict.outcome == INCONCLUSIVE


def test_diverged_runs_count_as_chance(tmp_path):
    """A plain net that diverges at the high learning rate loses to BN there."""
    for seed in SEEDS:
        for lr in (0.05, 1.5):
            j = jitter(seed, 1)
            run(tmp_path, seed=seed, norm="batch", model="mlp", test_acc=0.6 + j, config_extra={"optim.lr": lr},
                metrics=curve_records(0.6 + j, percentiles=lambda i: 0.1 * i, steps=range(0, 41, 10), ramp=10))
            status = "diverged" if lr == 1.5 else "completed"
            run(tmp_path, seed=seed, norm="none", model="mlp", test_acc=0.4 - j, status=status,
                config_extra={"optim.lr": lr},
                metrics=curve_records(0.42 - j, percentiles=lambda i: i * 1.0, steps=range(0, 41, 10), ramp=30))
    verdict = CLAIMS["bn-sigmoid"].verdict(load_runs([tmp_path]), {"chance": 0.1})
    high = verdict.checks[1]  # no 5x rate in this grid: speed, the high rate, the drift
    assert high.n_b == 3 and high.mean_b == pytest.approx(0.1)
    assert verdict.outcome == REPRODUCED


def test_bn_exact_statistics_measurement_is_paired_and_never_decides(tmp_path):
    build_gn_batch_size(tmp_path, 1)
    for summary in tmp_path.glob("*/summary.json"):  # every BN run also scored with exact statistics
        data = json.loads(summary.read_text())
        if data["norm"] == "batch":
            data["final"]["test_acc_exact"] = data["final"]["test_acc"] + 0.01 + 0.001 * data["seed"]
            summary.write_text(json.dumps(data))
    verdict = CLAIMS["gn-batch-size"].verdict(load_runs([tmp_path]), {})
    measured = [c for c in verdict.checks if not c.decides]
    assert len(measured) == 2 and measured[0].interval == "95% paired t interval"
    assert measured[0].outcome == REPRODUCED and measured[0].diff == pytest.approx(0.011)
    assert measured[1].a == "GN" and measured[1].b == "BN exact" and measured[1].interval == "95% Welch interval"
    assert verdict.outcome == REPRODUCED
    assert any("Exact population statistics remove" in n for n in verdict.notes)


def test_a_grid_is_selected_on_validation_and_reports_the_test_values_there(tmp_path):
    """At lr 0.01 the test accuracy is best, at lr 0.1 the validation accuracy: the grid point is
    the validation's, and the values returned are the test accuracies there."""
    from normbench.claims.checks import best_of_grid

    for seed in range(3):
        run(tmp_path, seed=seed, test_acc=0.90 + 0.01 * seed, val_acc=0.80, config_extra={"optim.lr": 0.01})
        run(tmp_path, seed=seed, test_acc=0.85 + 0.01 * seed, val_acc=0.82, config_extra={"optim.lr": 0.1})
    runs = load_runs([tmp_path]).runs
    test, lr = best_of_grid(runs, "final_test_acc", "final_val_acc")
    assert lr == 0.1 and sorted(test) == pytest.approx([0.85, 0.86, 0.87])
    # Without a validation column nothing is selected.
    assert len(best_of_grid(runs, "final_test_acc", "final_val_missing")[0]) == 0


def test_two_norms_on_one_test_set_are_compared_over_examples_and_seeds(tmp_path):
    """Real runs that recorded their test examples get the interval over examples and seeds;
    the same runs without the records (older runs) get Welch's over seeds."""
    from normbench.api import run as train
    from normbench.claims.checks import compare_runs

    common = ["model=mlp", "model.width=16", "trainer.max_steps=30", "trainer.eval_every=30", "trainer.progress=none"]
    for norm in ("batch", "layer"):
        for seed in range(3):
            train([*common, f"norm={norm}", f"seed={seed}"], tmp_path / f"{norm}{seed}")
    runs = load_runs([tmp_path]).runs
    bn, ln = runs[runs["norm"] == "batch"], runs[runs["norm"] == "layer"]
    check = compare_runs("BN vs LN", "test error", "BN", bn, "LN", ln, "final_test_error", better="lower")
    assert check.interval == "95% interval over test examples and seeds" and check.ci_lo < check.diff < check.ci_hi
    from normbench.report.tables import (
        difference_table,  # the reporter gives the same second interval
    )

    table = difference_table(load_runs([tmp_path]), "final_test_error")
    assert table["95% CI over test examples and seeds"].str.startswith("[").all()
    for d in tmp_path.glob("*/test_examples.npz"):
        d.unlink()
    welch = compare_runs("BN vs LN", "test error", "BN", bn, "LN", ln, "final_test_error", better="lower")
    assert welch.interval == "95% Welch interval" and welch.diff == check.diff


def test_a_claim_can_decide_on_the_median_of_the_last_evaluations(tmp_path):
    """median_of_last: K reads each run's median error over its last K evaluations, so one
    noisy final evaluation does not decide (the GN paper: the median of the final 5 epochs)."""
    from normbench.claims.checks import last_median

    accs = [0.5, 0.9, 0.8, 0.85, 0.1]  # the last evaluation is an outlier
    metrics = [{**r, "test_acc": a} for r, a in zip(curve_records(0.0, steps=(0, 10, 20, 30, 40)), accs, strict=True)]
    run(tmp_path, seed=0, test_acc=0.1, metrics=metrics)
    rs = load_runs([tmp_path])
    runs, column = last_median(rs, rs.runs, "test_error", 3)
    assert column == "median_last3_test_error" and runs[column].iloc[0] == pytest.approx(1 - 0.8)
    assert last_median(rs, rs.runs, "test_error", None)[1] == "final_test_error"


def test_the_eval_training_gap_is_judged_on_its_mean_and_facts_are_labelled(tmp_path):
    """One run of five with a gap above the limit does not fail the mechanism (a maximum over runs
    could only grow with seeds); the sequence length is a configuration fact and says so."""
    from normbench.claims.checks import eval_matches_training

    for seed, step_loss in enumerate([0.2, 0.2, 0.2, 0.2, -0.05]):  # gaps 0.1 (x4) and 0.35
        run(tmp_path, seed=seed, norm="batch", model="lstm", test_acc=0.8,
            summary_extra={**lstm_record(0.8, step_loss=step_loss),
                           "final": {"train_loss": 0.3, "train_acc": 0.8, "test_loss": 0.3, "test_acc": 0.8,
                                     "step_loss": step_loss}})
    mechanism = eval_matches_training(load_runs([tmp_path]).runs, "BN-LSTMs")
    assert mechanism.passed and "largest 0.350" in mechanism.value and not mechanism.fact
    verdict = CLAIMS["rbn-mnist"].verdict(load_runs([tmp_path]), {})
    length = next(m for m in verdict.mechanism if m.statement.startswith("sequences long enough"))
    assert length.fact and "(configuration fact)" in length.text()


def test_a_plateau_is_judged_by_a_longer_budget_on_the_pilot_seeds(tmp_path):
    """The pilot's setting that still gains 3 points from the longer budget has not plateaued."""
    from normbench.claims.checks import PLATEAU, plateau_by_budget

    for seed in (1000, 1001):
        for norm, base, longer in (("batch", 0.90, 0.905), ("group", 0.85, 0.88)):
            write_run(tmp_path / "base", f"{norm}{seed}", norm=norm, seed=seed, test_acc=base)
            write_run(tmp_path / "longer", f"{norm}{seed}", norm=norm, seed=seed, test_acc=longer)
    found = plateau_by_budget(load_runs([tmp_path / "base"]), load_runs([tmp_path / "longer"]), 0.01, "twice the steps")
    assert found.name == PLATEAU and not found.passed and "3.00" in found.value and "norm=group" in found.value
    kept = plateau_by_budget(load_runs([tmp_path / "base"]), load_runs([tmp_path / "longer"]), 0.05, "twice the steps")
    assert kept.passed


def test_a_pilot_uses_seeds_outside_every_verdict_and_a_longer_budget(monkeypatch, tmp_path):
    from normbench.claims import experiments, reproduce
    from normbench.errors import ConfigError

    spec = experiments.load_experiment("gn-norms")
    pilot = {"seeds": [1000, 1001, 1002], "longer": ["trainer.epochs=60"], "tolerance": 0.005}
    monkeypatch.setattr(experiments, "load_experiment", lambda name: {
        **spec, "scales": {**spec["scales"], "small": {**spec["scales"]["small"], "pilot": pilot}}})
    base, longer = reproduce.pilot_sweeps("gn-norms", "small", tmp_path, [])
    assert all("seed=1000,1001,1002" in s.args for s in base + longer)
    assert all("trainer.epochs=60" in s.args for s in longer) and not any("trainer.epochs=60" in s.args for s in base)
    # its own directories, apart from the verdict's sweeps and from each other
    dirs = [s.sweep_dir.name for s in base + longer]
    assert all(d.startswith("pilot") for d in dirs) and len(set(dirs)) == len(dirs)
    monkeypatch.setattr(experiments, "load_experiment", lambda name: {
        **spec, "scales": {**spec["scales"], "small": {**spec["scales"]["small"], "pilot": {**pilot, "seeds": [0, 1]}}}})
    with pytest.raises(ConfigError, match="at least two seeds of 1000 and up"):
        reproduce.pilot_plan("gn-norms", "small")


def test_steps_to_a_target_interpolates_between_evaluations_and_marks_runs_that_never_reach_it(tmp_path):
    from normbench.claims.checks import censored_note, steps_to
    for seed, accs in ((0, (0.1, 0.4, 0.8, 0.9)), (1, (0.1, 0.2, 0.3, 0.4))):
        records = curve_records(0.5)
        for r, acc in zip(records, accs, strict=True):
            r["test_acc"] = acc
        run(tmp_path, seed=seed, test_acc=accs[-1], metrics=records)
    runs, name = steps_to(rs := load_runs([tmp_path]), rs.runs, 0.6)
    by_seed = dict(zip(runs["seed"], runs[name], strict=True))
    assert by_seed[0] == pytest.approx(15.0)  # 0.4 at step 10, 0.8 at step 20: 0.6 halfway
    assert by_seed[1] == 30.0 and list(runs.sort_values("seed")[f"{name}_censored"]) == [False, True]
    assert censored_note(runs, name) == "1 of 2 runs never reached the target: counted at their last step"


def test_wn_cnn_needs_every_variant_on_its_plateau_at_its_chosen_rate(tmp_path):
    build_wn(tmp_path, 1, tau=400.0)  # still rising over the last quarter of training
    verdict = CLAIMS["wn-cnn"].verdict(load_runs([tmp_path]), CLAIMS["wn-cnn"].params)
    assert [m.name for m in verdict.mechanism if not m.passed] == ["plateau"]
    assert all(c.outcome == REPRODUCED for c in verdict.checks) and verdict.outcome == INCONCLUSIVE


def test_a_verdict_recomputes_from_its_archived_runs_alone_and_a_tampered_record_is_caught(tmp_path):
    from normbench.claims.reproduce import VERDICT_FILE, pilot_measure, recompute, write_claim

    sweep, pilot_base, pilot_longer = (tmp_path / "runs" / d for d in ("sweep0-ab", "pilot0-ab", "pilot-longer0-ab"))
    build_gn_norms(sweep, 1)
    build_gn_norms(pilot_base, 1)
    build_gn_norms(pilot_longer, 1)
    plan = {"seeds": [1000, 1001], "longer": ["trainer.epochs=40"], "tolerance": 0.005}
    pilot = pilot_measure(plan, [pilot_base], [pilot_longer])
    out = tmp_path / "out" / "gn-norms"
    verdict = write_claim("gn-norms", out, [sweep], "small", 3, "normbench reproduce gn-norms", 1.0, 0,
                          pilot=pilot, pilot_runs=[pilot_base, pilot_longer])
    assert verdict.outcome == REPRODUCED
    record = json.loads((out / VERDICT_FILE).read_text())
    assert record["params"] == dict(CLAIMS["gn-norms"].params) and record["pilot_plan"]["tolerance"] == 0.005
    archived = sorted(p.relative_to(out / "runs").parts[0] for p in (out / "runs").glob("*/*/summary.json"))
    assert set(archived) == {"sweep0-ab", "pilot0-ab", "pilot-longer0-ab"}
    assert not list((out / "runs").rglob("checkpoint*"))
    secret = tmp_path / "secret.txt"  # a record planted as a symlink is not archived
    secret.write_text("not a record")
    planted = next(sweep.glob("*/metrics.jsonl"))
    planted.unlink()
    planted.symlink_to(secret)
    write_claim("gn-norms", tmp_path / "out2" / "gn-norms", [sweep], "small", 3, "x", 1.0, 0)
    assert "not a record" not in "".join(p.read_text() for p in (tmp_path / "out2").rglob("metrics.jsonl"))
    shutil.rmtree(tmp_path / "runs")  # the archive alone
    assert recompute(out) == []
    metrics = next((out / "runs" / "sweep0-ab").glob("*/metrics.jsonl"))  # one run's history edited later
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    metrics.write_text("".join(json.dumps({**r, "test_acc": r["test_acc"] - 0.05}) + "\n" for r in rows))
    problems = recompute(out)
    assert problems and any("diff recorded" in p for p in problems)
