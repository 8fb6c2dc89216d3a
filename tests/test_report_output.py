"""Reports end to end: plots, report.md, CSVs, terminal table, CLI module, Hydra callback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_runs import gn_sweep, write_run
from rich.console import Console

from normbench.report import ReportError, build_report, load_runs, make_report, print_summary
from normbench.report.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    # The subprocess must import this checkout's normbench, not an installed one.
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def tiny_sweep(root: Path) -> Path:
    """Two norms, two batch sizes, two seeds: the issue's "real tiny sweep" shape."""
    for i, (norm, bs, seed) in enumerate(
            (n, b, s) for n in ("batch", "group") for b in (2, 32) for s in (0, 1)):
        acc = {("batch", 2): 0.62, ("batch", 32): 0.90, ("group", 2): 0.86,
               ("group", 32): 0.88}[norm, bs] + 0.01 * seed
        write_run(root, str(i), norm=norm, batch_size=bs, seed=seed, test_acc=acc,
                  train_acc=acc + 0.05 + 0.01 * seed, target_acc=0.5,
                  tau=60.0 if norm == "batch" else 90.0)
    return root


def _check_png(path: Path) -> None:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
        assert im.format == "PNG"
    assert 800 <= w <= 6000 and 500 <= h <= 4000, (path.name, w, h)


def test_tiny_sweep_writes_every_plot_and_table(tmp_path):
    sweep = tiny_sweep(tmp_path / "sweep")
    report = build_report([sweep], tmp_path / "out")
    assert report.path == tmp_path / "out" / "report.md"
    assert set(report.figures) == {"convergence_steps", "convergence_time", "batch_size",
                                   "generalization"}
    for png, svg, pdf in report.figures.values():
        _check_png(png)
        assert svg.suffix == ".svg" and svg.read_text().lstrip().startswith("<?xml")
        assert pdf.suffix == ".pdf" and pdf.read_bytes().startswith(b"%PDF")
    assert "[PDF](plots/batch_size.pdf)" in report.path.read_text()
    out = tmp_path / "out"
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and {"norm", "batch_size", "seed", "final_test_acc"} <= set(runs)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4
    row = summary[(summary["label"] == "batch") & (summary["batch_size"] == 2)].iloc[0]
    assert row["final_test_acc_mean"] == pytest.approx(0.625)
    assert row["final_test_acc_n"] == 2
    diffs = pd.read_csv(out / "differences.csv")
    assert set(diffs["batch_size"]) == {2, 32}
    md = report.path.read_text()
    for needle in ("## Summary over seeds", "## 1. Convergence speed",
                   "## 2. Batch-size sensitivity", "## 3. Generalization",
                   "plots/batch_size.png", "plots/convergence_time.png",
                   "plots/generalization.svg", "Steps and time to reach 50% test accuracy",
                   "below batch size **32**", "group − batch", "8 runs** (8 completed)"):
        assert needle in md, needle


def test_gn_sweep_report_states_threshold_and_svg_has_labels(tmp_path):
    # Only the batch-size plot: the convergence plots of 15 settings are slow to draw.
    report = build_report([gn_sweep(tmp_path / "sweep")], tmp_path / "out",
                          plots=["batch_size"])
    md = report.path.read_text()
    assert "falls behind the best batch-independent norm below batch size **16**" in md
    svg = report.figures["batch_size"][1].read_text()
    assert "test error (%), lower is better" in svg
    assert "batch size (examples per batch)" in svg
    for tick in (">2<", ">4<", ">8<", ">16<", ">32<"):
        assert tick in svg  # log-2 axis with a tick at every batch size
    _check_png(report.figures["batch_size"][0])


def test_corrupt_and_broken_runs_are_reported(tmp_path):
    sweep = tiny_sweep(tmp_path / "sweep")
    (sweep / "0" / "summary.json").write_text("{not json")
    write_run(sweep, "8", norm="batch", batch_size=2, seed=5, status="diverged",
              error="loss became nan at step 12")
    write_run(sweep, "9", norm="group", batch_size=2, seed=6, status="failed",
              error="RuntimeError: boom", metrics=[])
    report = build_report([sweep], tmp_path / "out")
    md = report.path.read_text()
    assert "1 directory skipped" in md and "corrupt summary.json" in md
    assert "## Runs that did not complete" in md
    assert "loss became nan at step 12" in md and "RuntimeError: boom" in md
    assert "1 diverged" in md and "1 failed" in md
    # batch norm at batch 2: seed 0 unreadable, seed 1 completed, seed 5 diverged.
    assert "1/2 (1 diverged)" in md
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert len(skipped) == 1 and skipped["directory"].iloc[0].endswith("0")


def test_bpc_runs_plot_lower_is_better(tmp_path):
    for i, (norm, bs, seed, bpc) in enumerate([
            ("batch", 16, 0, 1.40), ("batch", 16, 1, 1.42), ("batch", 16, 2, 1.41),
            ("layer", 16, 0, 1.35), ("layer", 16, 1, 1.36), ("layer", 16, 2, 1.355),
            ("batch", 64, 0, 1.33), ("batch", 64, 1, 1.34), ("batch", 64, 2, 1.335),
            ("layer", 64, 0, 1.36), ("layer", 64, 1, 1.37), ("layer", 64, 2, 1.365)]):
        write_run(tmp_path / "lm", str(i), norm=norm, batch_size=bs, seed=seed, bpc=True,
                  test_acc=bpc, train_acc=bpc - 0.05, model="lstm")
    report = build_report([tmp_path / "lm"], tmp_path / "out")
    md = report.path.read_text()
    assert "lower is better" in md and "test bits per character" in md
    svg = report.figures["batch_size"][1].read_text()
    assert "test bits per character, lower is better" in svg
    conv = report.figures["convergence_steps"][1].read_text()
    assert "lower is better" in conv
    # Layer norm is better (lower bpc) than batch norm at batch 16: BN behind there only.
    assert "below batch size **64**" in md


def test_label_noise_plot_when_swept_and_explicit_plot_selection(tmp_path):
    for i, (norm, noise, seed) in enumerate(
            (n, p, s) for n in ("batch", "none") for p in (0.0, 0.5) for s in (0, 1)):
        test = 0.9 - noise * (0.8 if norm == "none" else 0.7) + 0.01 * seed
        write_run(tmp_path / "z", str(i), norm=norm, label_noise=noise, seed=seed,
                  test_acc=test, train_acc=0.99)
    report = build_report([tmp_path / "z"], tmp_path / "out")
    assert "label_noise" in report.figures and "batch_size" not in report.figures
    _check_png(report.figures["label_noise"][0])
    only = build_report([tmp_path / "z"], tmp_path / "out2", plots=["generalization"])
    assert set(only.figures) == {"generalization"}
    assert not (tmp_path / "out2" / "plots" / "convergence_steps.png").exists()


def test_x_and_metric_options(tmp_path):
    for i, (norm, lr, seed) in enumerate(
            (n, lr, s) for n in ("batch", "layer") for lr in (0.01, 0.1, 1.0) for s in (0, 1)):
        write_run(tmp_path / "lr", str(i), norm=norm, seed=seed, test_acc=0.8 + 0.05 * seed,
                  config_extra={"optim.lr": lr})
    report = build_report([tmp_path / "lr"], tmp_path / "out", x="optim.lr", metric="selected_test_acc")
    assert "sweep" in report.figures
    assert report.figures["sweep"][0].name == "selected_test_acc_vs_optim_lr.png"
    _check_png(report.figures["sweep"][0])
    md = report.path.read_text()
    assert "Differences between norms: test accuracy at the best validation step" in md
    with pytest.raises(ReportError, match="unknown metric 'nope'"):
        make_report([tmp_path / "lr"], tmp_path / "o", metric="nope")
    with pytest.raises(ReportError, match="unknown plot 'pie'"):
        make_report([tmp_path / "lr"], tmp_path / "o", plots=["pie"])
    with pytest.raises(ReportError, match="not a config key"):
        make_report([tmp_path / "lr"], tmp_path / "o", x="momentum_of_doom")


def test_errors_for_missing_or_empty_directories(tmp_path):
    with pytest.raises(ReportError, match="no such directory"):
        make_report([tmp_path / "nope"], tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no runs found"):
        make_report([tmp_path / "empty"], tmp_path / "o")


def test_print_summary_terminal_table(tmp_path):
    sweep = tiny_sweep(tmp_path / "sweep")
    write_run(sweep, "8", norm="batch", batch_size=2, seed=5, status="diverged")
    console = Console(record=True, width=200)
    print_summary(load_runs([sweep]), console)
    text = console.export_text()
    assert "batch" in text and "group" in text and "2/3 (1 diverged)" in text
    assert "62.5" in text  # batch norm at batch 2: mean test accuracy in percent
    # A bare run table (as runs.csv holds it) works too: a laptop needs only the CSV.
    make_report([sweep], tmp_path / "out", plots=["batch_size"])
    console = Console(record=True, width=200)
    print_summary(pd.read_csv(tmp_path / "out" / "runs.csv"), console)
    text = console.export_text()
    assert "62.5" in text and "2/3 (1 diverged)" in text


def test_module_main_success_and_one_line_errors(tmp_path, capsys):
    sweep = tiny_sweep(tmp_path / "sweep")
    assert main([str(sweep), "-o", str(tmp_path / "out"), "-q", "--plot", "batch"]) == 0
    assert (tmp_path / "out" / "report.md").exists()
    assert main([str(tmp_path / "nope"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("normbench: error: no such directory")
    proc = subprocess.run([sys.executable, "-m", "normbench.report", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "no such directory" in proc.stderr


def test_reporter_does_not_import_torch():
    code = ("import sys, normbench.report, normbench.report.callback, normbench.report.__main__;"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')"
            " or m in ('normbench.training.trainer', 'normbench.models', 'normbench.norms')];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hydra_callback_writes_report_and_never_raises(tmp_path, caplog, monkeypatch):
    from omegaconf import OmegaConf

    from normbench.report.callback import ReportCallback

    sweep = tiny_sweep(tmp_path / "sweep")
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    cb = ReportCallback()
    cb.on_multirun_end(config=cfg)
    assert (sweep / "report" / "report.md").exists()
    assert cb.last_report == sweep / "report" / "report.md"
    # A later report of the same sweep does not pick up the report folder as a run.
    assert len(load_runs([sweep]).runs) == 8

    bad = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "gone")}}})
    with caplog.at_level(logging.WARNING):
        ReportCallback().on_multirun_end(config=bad)
    assert "no report for this sweep" in caplog.text
    ReportCallback().on_multirun_end(config=OmegaConf.create({}))  # no hydra key: warns

    off = tmp_path / "off"
    tiny_sweep(off)
    ReportCallback(enabled=False).on_multirun_end(
        config=OmegaConf.create({"hydra": {"sweep": {"dir": str(off)}}}))
    monkeypatch.setenv("NORMBENCH_NO_REPORT", "1")
    ReportCallback().on_multirun_end(
        config=OmegaConf.create({"hydra": {"sweep": {"dir": str(off)}}}))
    assert not (off / "report").exists()


def test_convergence_against_epochs_and_samples_with_each_seed_and_honest_interval_notes(tmp_path):
    sweep = tiny_sweep(tmp_path / "sweep")
    report = build_report([sweep], tmp_path / "out", plots=["convergence_epochs", "convergence_samples",
                                                            "generalization"], seed_lines=True)
    assert set(report.figures) == {"convergence_epochs", "convergence_samples", "generalization"}
    epochs_svg = report.figures["convergence_epochs"][1].read_text()
    assert "against epochs" in epochs_svg and "thin: each seed" in epochs_svg
    assert "mean over 2 seeds, each seed drawn: no interval below 3 seeds" in epochs_svg
    assert "training samples seen" in report.figures["convergence_samples"][1].read_text()
    generalization = report.figures["generalization"][1].read_text()
    assert "batch 2<" in generalization and "batch 32<" in generalization  # one marker per batch size, in the legend
    md = report.path.read_text()
    assert "plots/convergence_epochs.png" in md and "plots/convergence_samples.png" in md


def test_a_setting_with_one_seed_is_said_to_have_no_interval():
    from normbench.report.plots import seeds_note

    runs = pd.DataFrame({"label": ["BN", "BN", "GN"], "batch_size": [2, 2, 2], "run_id": ["a", "b", "c"]})
    assert seeds_note(runs, ["batch_size"], "shaded: 95% t band") == (
        "mean over 1 to 2 seeds, each seed drawn: no interval below 3 seeds")
    more = pd.DataFrame({"label": ["BN"] * 3 + ["GN"], "run_id": list("abcd")})
    assert seeds_note(more, [], "shaded: 95% t band") == (
        "mean over 1 to 3 seeds; shaded: 95% t band; settings with fewer than 3 seeds show each seed, no interval")


def _curves(values: dict[str, list[float]], metric: str) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": run, "step": 10 * i, metric: v} for run, vs in values.items()
                         for i, v in enumerate(vs)])


def test_bands_stay_inside_the_metrics_range_and_need_three_seeds():
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    from normbench.report.plots import _band

    ax = Figure().add_subplot()
    _band(ax, _curves({"a": [0.1, 0.95], "b": [0.1, 0.99], "c": [0.1, 0.30]}, "test_acc"), "step", "test_acc",
          "C0", "BN")
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() >= 0 and ys.max() <= 100 and ys.max() == 100  # the t band ran past 100%: clipped
    two = Figure().add_subplot()
    _band(two, _curves({"a": [0.1, 0.95], "b": [0.1, 0.30]}, "test_acc"), "step", "test_acc", "C0", "BN")
    assert not [c for c in two.collections if isinstance(c, PolyCollection)]  # no band at 2 seeds
    assert len(two.lines) == 3  # each seed and the mean
    log = Figure().add_subplot()
    log.set_yscale("log")
    _band(log, _curves({"a": [2.3, 0.01], "b": [2.3, 0.5], "c": [2.3, 0.002]}, "train_loss"), "step", "train_loss",
          "C0", "BN", log=True)
    (band,) = [c for c in log.collections if isinstance(c, PolyCollection)]
    assert band.get_paths()[0].vertices[:, 1].min() > 0  # a band over log values stays positive


def test_a_table_interval_never_leaves_the_metrics_range_and_says_when_clipped():
    from normbench.report.stats import aggregate
    from normbench.report.tables import fmt_stat

    runs = pd.DataFrame({"status": ["completed"] * 2, "norm": ["batch"] * 2, "final_test_acc": [0.91, 0.95]})
    row = aggregate(runs, ["final_test_acc"], ["norm"]).iloc[0]
    assert row["final_test_acc_ci_hi"] == 1.0 and row["final_test_acc_clipped"]
    assert fmt_stat(row, "final_test_acc") == "93.0 ± 2.8 [67.6, 100.0 clipped to the range]"


def test_norms_at_a_shared_x_are_dodged_and_a_log_axis_is_ticked_at_the_rates_run(tmp_path):
    from matplotlib.figure import Figure

    from normbench.report.plots import _dodge, _set_log_axis

    left, right = _dodge(0, 2, True, None), _dodge(1, 2, True, None)
    assert left(np.array([0.01]))[0] < 0.01 < right(np.array([0.01]))[0]
    assert _dodge(0, 2, False, np.array([2.0, 8.0]))(np.array([8.0]))[0] == pytest.approx(8 - 0.18)
    ax = Figure().add_subplot()
    ax.plot([0.001, 0.003, 0.01], [1, 2, 3])
    _set_log_axis(ax, [0.001, 0.003, 0.01])
    assert list(ax.get_xticks()) == [0.001, 0.003, 0.01]


def test_report_csvs_keep_integers_and_hold_relative_paths_only(tmp_path):
    import csv

    sweep = tiny_sweep(tmp_path / "sweep")
    (sweep / "broken").mkdir()
    (sweep / "broken" / "summary.json").write_text("{not json")
    build_report([sweep], tmp_path / "out")
    runs = list(csv.DictReader((tmp_path / "out" / "runs.csv").open()))
    assert all(not r["steps"].endswith(".0") and not r["batch_size"].endswith(".0") for r in runs)
    assert all(not r["run_dir"].startswith("/") for r in runs)
    (skipped,) = list(csv.DictReader((tmp_path / "out" / "skipped.csv").open()))
    assert skipped["directory"] == "../sweep/broken"


def test_facet_titles_leave_out_unset_keys_and_wrap():
    from normbench.report.plots import facet_title

    assert facet_title(["batch_size", "trainer.epochs"], [32.0, float("nan")]) == "batch 32"
    assert facet_title(["trainer.epochs"], [float("nan")]) == "(defaults)"
    long = facet_title(["optim.weight_decay", "model.channels", "trainer.epochs"], [0.0001, "[32,64,128,128]", 20])
    assert "\n" in long and all(len(line) <= 34 for line in long.splitlines())
