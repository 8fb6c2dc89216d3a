"""Packed sweeps and the run cache from the command line: the same run directories as an unpacked
sweep, resume after SIGKILL mid-pack, edited configs refused, identical runs reused."""

from __future__ import annotations

import signal

import pytest
import torch
from procs import LONG, cli, normbench, spawn, wait_for

from normbench import records
from normbench.training.checkpoints import read_checkpoint

TINY = ["trainer.max_steps=6", "trainer.eval_every=3", "trainer.progress=none", "trainer.train_eval_samples=100"]


def files(sweep):
    return sorted(str(p.relative_to(sweep)) for p in sweep.rglob("*") if p.is_file() and "report" not in p.parts
                  and p.name not in ("multirun.yaml", records.OUTCOME_FILE))


def test_a_packed_sweep_leaves_the_unpacked_sweeps_run_directories(tmp_path):
    plain = cli("run", "-m", "seed=0,1,2", *TINY, f"hydra.sweep.dir={tmp_path / 'plain'}", check=True)
    packed = cli("run", "-m", "seed=0,1,2", *TINY, "trainer.pack=seed", f"hydra.sweep.dir={tmp_path / 'packed'}",
                 check=True)
    assert "packed seeds 0,1,2 into one job" in packed.stdout
    assert packed.stdout.count("completed: batch norm") == 3 and "sweep: 3 completed" in packed.stdout
    assert "packed seeds" not in plain.stdout
    assert files(tmp_path / "plain") == files(tmp_path / "packed")
    for run in (tmp_path / "plain").iterdir():
        if not run.is_dir():
            continue
        twin = tmp_path / "packed" / run.name
        a_cfg, b_cfg = records.read_config(run), records.read_config(twin)
        assert (a_cfg["trainer"].pop("pack"), b_cfg["trainer"].pop("pack")) == ("none", "seed")
        assert a_cfg == b_cfg
        a, b = records.read_summary(run), records.read_summary(twin)
        assert a["status"] == b["status"] == "completed" and a["steps"] == b["steps"] == 6
        assert abs(a["final"]["train_loss"] - b["final"]["train_loss"]) < 1e-4
    again = cli("run", "-m", "seed=0,1,2", *TINY, "trainer.pack=seed", f"hydra.sweep.dir={tmp_path / 'packed'}",
                check=True)
    assert again.stdout.count("skipped, already completed") == 3


def test_the_dry_run_shows_the_packs(tmp_path):
    out = cli("run", "-m", "norm=batch,group", "seed=0,1,2", "trainer.pack=seed", "trainer.pack_size=2", "--dry-run",
              f"hydra.sweep.dir={tmp_path}", check=True).stdout
    assert "2 packs of seeds" in out
    assert out.count("(pack 1)") == 2 and out.count("(pack 2)") == 2


@pytest.mark.slow  # 45 s: `pytest -m slow tests/test_pack_sweeps.py`
def test_a_killed_pack_resumes_bit_for_bit(tmp_path):
    args = ["run", "-m", "seed=0,1", "trainer.pack=seed", *LONG, "model.width=64", "trainer.eval_every=100",
            "hydra.sweep.subdir=${seed}"]
    normbench(*args, f"hydra.sweep.dir={tmp_path / 'whole'}", check=True)
    sweep = tmp_path / "killed"
    proc = spawn(*args, f"hydra.sweep.dir={sweep}")
    digest = sweep / "0" / (records.CHECKPOINT_FILE + records.DIGEST_SUFFIX)

    def part_way():
        _, d, _ = records.verified_checkpoint(sweep / "0")
        return d is not None and 100 <= d["step"] < 600

    try:
        wait_for(part_way, timeout_s=240)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert digest.exists()
    assert records.read_summary(sweep / "0")["status"] == "running"
    resumed = normbench(*args, f"hydra.sweep.dir={sweep}", check=True)
    assert "resuming from step" in resumed.stdout
    for seed in (0, 1):
        a = read_checkpoint(tmp_path / "whole" / f"{seed}" / records.CHECKPOINT_FILE)
        b = read_checkpoint(sweep / f"{seed}" / records.CHECKPOINT_FILE)
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]), (seed, k)
        timeless = [{k: v for k, v in r.items() if not k.endswith("time_s")}
                    for r in records.read_metrics(tmp_path / "whole" / f"{seed}")]
        assert timeless == [{k: v for k, v in r.items() if not k.endswith("time_s")}
                            for r in records.read_metrics(sweep / f"{seed}")]


def test_a_sweep_over_runs_of_an_edited_config_is_refused(tmp_path):
    common = [*TINY, f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=${seed}"]
    cli("run", "-m", "seed=0,1", *common, check=True)
    edited = cli("run", "-m", "seed=0,1", "batch_size=16", *common)
    assert edited.exit_code == 2
    assert edited.stderr.strip().count("\n") == 0
    assert "holds a run with another config (batch_size: 32 there, 16 now), as do 1 more" in edited.stderr
    assert records.read_summary(tmp_path / "0")["batch_size"] == 32


@pytest.fixture
def run_index(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMBENCH_RUN_INDEX", str(tmp_path / "index"))
    return tmp_path / "index"


@pytest.mark.slow  # 25 s; the cache's verification is tested in test_run_cache.py
def test_an_identical_run_is_reused_across_sweeps_and_verified_first(tmp_path, run_index):
    first = cli("run", "-m", "seed=0,1", *TINY, "trainer.pack=seed", f"hydra.sweep.dir={tmp_path / 'a'}", check=True)
    assert "reused" not in first.stdout
    # Another sweep (other display keys, a wider grid) holding the same two runs.
    second = cli("run", "-m", "seed=0,1", "norm=batch,group", *TINY, "trainer.log_every=2",
                 f"hydra.sweep.dir={tmp_path / 'b'}", check=True)
    assert second.stdout.count("reused: the same run completed in") == 2
    source = next((tmp_path / "a").glob("seed=0,*"))
    reused = records.read_summary(next((tmp_path / "b").glob("norm=batch,seed=0,*")))
    assert reused["reused_from"] == str(source.absolute())
    assert reused["final"] == records.read_summary(source)["final"]
    assert records.read_summary(next((tmp_path / "b").glob("norm=group,seed=0,*"))).get("reused_from") is None
    # A source edited after the fact is never served: the run trains.
    metrics = next((tmp_path / "a").glob("seed=1,*")) / records.METRICS_FILE
    metrics.write_text(metrics.read_text().replace('"test_acc": 0.', '"test_acc": 0.9'), encoding="utf-8")
    third = cli("run", "-m", "seed=1", *TINY, f"hydra.sweep.dir={tmp_path / 'c'}", check=True)
    assert "reused" not in third.stdout and "completed: batch norm" in third.stdout
    off = cli("run", "-m", "seed=0", *TINY, "trainer.reuse=false", f"hydra.sweep.dir={tmp_path / 'd'}", check=True)
    assert "reused" not in off.stdout
