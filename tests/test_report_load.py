"""The reporter's loading: run directories -> tidy table, skipped and broken runs listed."""

from __future__ import annotations

import json

import pytest
from report_runs import write_run

from normbench.report.load import flatten, load_runs, varying_keys


def test_tidy_table_has_the_known_numbers_and_only_varying_keys(tmp_path):
    write_run(tmp_path, "a", norm="batch", batch_size=8, seed=0, test_acc=0.91, train_acc=0.97)
    write_run(tmp_path, "b", norm="group", batch_size=8, seed=1, test_acc=0.88, train_acc=0.99,
              groups=4)
    write_run(tmp_path, "c", norm="group", batch_size=16, seed=0, test_acc=0.87,
              train_acc=0.98, groups=4)
    rs = load_runs([tmp_path])
    runs = rs.runs.set_index("run_id")
    assert list(runs.index) == ["a", "b", "c"]
    assert runs.loc["a", "final_test_acc"] == pytest.approx(0.91)
    assert runs.loc["b", "final_train_acc"] == pytest.approx(0.99)
    assert runs.loc["c", "final_test_error"] == pytest.approx(0.13)
    assert runs.loc["a", "generalization_gap"] == pytest.approx(0.06)
    assert runs.loc["c", "batch_size"] == 16 and runs.loc["b", "seed"] == 1
    assert runs.loc["b", "norm"] == "group" and runs.loc["b", "label"] == "group"
    # norm.groups exists for group norm only and is constant there: not a swept key.
    assert "norm.groups" not in rs.runs.columns
    assert rs.swept_keys == ["norm", "batch_size"]
    assert rs.primary_metric == "acc"
    assert not rs.skipped
    assert set(rs.curves["run_id"]) == {"a", "b", "c"}
    assert {"step", "wall_time_s", "test_acc", "train_loss", "label"} <= set(rs.curves.columns)


def test_swept_group_count_and_label_noise_become_columns_and_labels(tmp_path):
    write_run(tmp_path, "g1", norm="group", groups=1, label_noise=0.0)
    write_run(tmp_path, "g8", norm="group", groups=8, label_noise=0.2)
    write_run(tmp_path, "bn", norm="batch", label_noise=0.2)
    rs = load_runs([tmp_path])
    assert "norm.groups" in rs.runs.columns and "dataset.label_noise" in rs.runs.columns
    assert "norm.groups" in rs.setting_keys
    labels = dict(zip(rs.runs["run_id"], rs.runs["label"], strict=True))
    assert labels == {"bn": "batch", "g1": "group (groups=1)", "g8": "group (groups=8)"}


def test_norms_are_labelled_as_papers_write_them_when_their_config_says_how(tmp_path):
    write_run(tmp_path, "gn", norm="group", groups=8, config_extra={"norm.label": "GN"})
    write_run(tmp_path, "bn", norm="batch", config_extra={"norm.label": "BN"})
    write_run(tmp_path, "old", norm="layer")  # a run recorded before norm.label: its name
    labels = dict(zip(*load_runs([tmp_path]).runs[["run_id", "label"]].T.values, strict=True))
    assert labels == {"gn": "GN", "bn": "BN", "old": "layer"}


def test_nuisance_keys_do_not_make_settings(tmp_path):
    write_run(tmp_path, "cpu", config_extra={"trainer.device": "cpu", "dataset.root": "/a"})
    write_run(tmp_path, "gpu", seed=1, config_extra={"trainer.device": "cuda",
                                                     "dataset.root": "/b"})
    rs = load_runs([tmp_path])
    assert rs.swept_keys == []
    assert "trainer.device" not in rs.runs.columns


def test_flatten_and_varying_keys():
    cfg = {"batch_size": 2, "norm": {"name": "group", "groups": 4}, "tags": [1, 2]}
    assert flatten(cfg) == {"batch_size": 2, "norm.name": "group", "norm.groups": 4,
                            "tags": [1, 2]}
    a = flatten({"seed": 0, "optim": {"name": "sgd", "lr": 0.1}})
    b = flatten({"seed": 1, "optim": {"name": "sgd", "lr": 0.2}})
    c = flatten({"seed": 1, "optim": {"name": "adam", "lr": 0.2, "betas": [0.9, 0.99]}})
    assert varying_keys([a, b]) == ["seed", "optim.lr"]
    # betas exists for adam only: not varying; the optimizer name is.
    assert varying_keys([b, c]) == ["optim.name"]


def test_corrupt_and_missing_summaries_are_listed_and_skipped(tmp_path):
    write_run(tmp_path, "good")
    bad = write_run(tmp_path, "corrupt")
    (bad / "summary.json").write_text('{"status": "compl', encoding="utf-8")
    missing = write_run(tmp_path, "missing")
    (missing / "summary.json").unlink()
    notdict = write_run(tmp_path, "list")
    (notdict / "summary.json").write_text("[1, 2]", encoding="utf-8")
    badcfg = write_run(tmp_path, "badcfg")
    (badcfg / "config.yaml").write_text("a: [1, 2\n", encoding="utf-8")
    rs = load_runs([tmp_path])
    assert list(rs.runs["run_id"]) == ["good"]
    reasons = {p.name: why for p, why in rs.skipped}
    assert set(reasons) == {"corrupt", "missing", "list", "badcfg"}
    assert reasons["missing"] == "no summary.json"
    assert reasons["corrupt"].startswith("corrupt summary.json")
    assert reasons["badcfg"].startswith("corrupt config.yaml")


def test_failed_and_diverged_runs_are_kept_with_their_status(tmp_path):
    write_run(tmp_path, "ok")
    write_run(tmp_path, "nan", seed=1, status="diverged", error="loss is nan at step 30",
              summary_extra={"final": {"train_loss": None, "train_acc": None,
                                       "test_loss": None, "test_acc": None}})
    write_run(tmp_path, "oom", seed=2, status="failed", error="CUDA out of memory",
              metrics=[])
    rs = load_runs([tmp_path])
    status = dict(zip(rs.runs["run_id"], rs.runs["status"], strict=True))
    assert status == {"ok": "completed", "nan": "diverged", "oom": "failed"}
    nan_row = rs.runs.set_index("run_id").loc["nan"]
    assert nan_row["final_test_acc"] != nan_row["final_test_acc"]  # NaN, from null
    assert nan_row["error"] == "loss is nan at step 30"


def test_summary_only_run_dir_and_hydra_folders(tmp_path):
    run = write_run(tmp_path, "sweep/0")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    lone = write_run(tmp_path, "sweep/1", seed=1)
    (lone / "config.yaml").unlink()
    rs = load_runs([tmp_path / "sweep"])
    assert sorted(rs.runs["run_id"]) == ["0", "1"]
    # The run without config still has its identity from the summary.
    assert set(rs.runs["norm"]) == {"batch"}


def test_mixed_run_and_sweep_dirs_and_extra_summary_keys(tmp_path):
    single = write_run(tmp_path / "runs", "single",
                       summary_extra={"test_acc_count": 0.5, "new_thing": {"x": 1}})
    write_run(tmp_path / "multirun", "0", seed=3)
    rs = load_runs([single, tmp_path / "multirun"])
    assert len(rs.runs) == 2
    row = rs.runs.set_index("run_id").loc["runs/single"]
    assert row["test_acc_count"] == pytest.approx(0.5)  # later issues' keys come through
    assert "new_thing" not in rs.runs.columns  # nested extras are not metrics


def test_bpc_runs_are_detected(tmp_path):
    write_run(tmp_path, "lm", bpc=True, test_acc=1.45, train_acc=1.30, model="lstm")
    rs = load_runs([tmp_path])
    assert rs.primary_metric == "bpc"
    row = rs.runs.iloc[0]
    assert row["final_test_bpc"] == pytest.approx(1.45)
    assert row["generalization_gap"] == pytest.approx(0.15)
    assert "test_bpc" in rs.curves.columns


def test_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_runs([tmp_path / "nope"])


def test_torn_metrics_line_is_ignored(tmp_path):
    run = write_run(tmp_path, "a")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 99')
    rs = load_runs([tmp_path])
    assert len(rs.curves) == len([json.loads(x) for x in
                                  (run / "metrics.jsonl").read_text().splitlines()[:-1]])


def test_a_completed_run_with_a_truncated_history_is_reported_as_damaged(tmp_path):
    whole, cut = write_run(tmp_path, "whole"), write_run(tmp_path, "cut", seed=1)
    metrics = cut / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes()[:200])
    rs = load_runs([tmp_path])
    assert [p.rsplit("/", 1)[-1] for p in rs.runs["run_dir"].astype(str)] == [whole.name]
    (where, why), = rs.skipped
    assert where.name == "cut" and why.startswith("damaged metrics.jsonl: its last evaluation is at step")
