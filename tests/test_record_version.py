"""Versioned records: what this normbench writes carries ``record_version``, and a run directory
written before records had a version (main at 5d765cc, ``tests/data/record_v1``) still loads,
reports, is skipped as finished, and resumes bit for bit."""

import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from normbench import records
from normbench.api import compose
from normbench.report.load import load_runs
from normbench.training.checkpoints import finished_summary, read_checkpoint
from normbench.training.trainer import train

V1_RUN = Path(__file__).parent / "data" / "record_v1"
# The command that wrote it (normbench at 5d765cc): 20 steps, evaluated at 0, 10 and 20.
V1_OVERRIDES = ["model=mlp", "model.width=16", "model.depth=2", "trainer.eval_every=10", "trainer.progress=none",
                "trainer.train_eval_samples=200",
                # runs before the validation split trained on all the training data (records.upgrade)
                "dataset.val_fraction=0"]


def test_the_fixture_is_a_record_without_a_version():
    assert "record_version" not in json.loads((V1_RUN / records.SUMMARY_FILE).read_text())
    assert "record_version" not in read_checkpoint(V1_RUN / records.CHECKPOINT_FILE)


def test_new_records_carry_their_version(tmp_path, tiny_overrides):
    train(compose(["model=mlp", "model.width=16", *tiny_overrides]), tmp_path)
    assert json.loads((tmp_path / records.SUMMARY_FILE).read_text())["record_version"] == records.RECORD_VERSION
    assert read_checkpoint(tmp_path / records.CHECKPOINT_FILE)["record_version"] == records.RECORD_VERSION


def test_a_version_1_run_is_reported_and_skipped_as_finished(tmp_path):
    run = shutil.copytree(V1_RUN, tmp_path / "run")
    summary = records.read_summary(run)
    assert summary["record_version"] == records.RECORD_VERSION and summary["status"] == "completed"
    rs = load_runs([run])
    assert len(rs.runs) == 1 and rs.runs.iloc[0]["status"] == "completed" and not rs.skipped
    assert rs.runs.iloc[0]["batch_dependent"]  # batch norm
    finished = finished_summary(compose([*V1_OVERRIDES, "trainer.max_steps=20"]), run)
    assert finished is not None and finished["steps"] == 20


def test_a_version_1_checkpoint_resumes_bit_for_bit(tmp_path):
    """Resuming the version-1 checkpoint ends bit for bit where resuming the same state written
    as a current checkpoint does (everything it lacked is filled in as it was); and as a run
    trained straight here, up to float rounding: the fixture's first 20 steps ran on another
    CPU, whose kernels round differently in the last bit."""
    run = shutil.copytree(V1_RUN, tmp_path / "run")
    current = shutil.copytree(V1_RUN, tmp_path / "current")
    state = records.upgrade("checkpoint", read_checkpoint(V1_RUN / records.CHECKPOINT_FILE))
    buffer = io.BytesIO()
    torch.save({**state, "record_version": records.RECORD_VERSION}, buffer)
    records.write_checkpoint(current, buffer.getvalue(), 20, state["state"].get("evaluated_steps"))
    resumed = train(compose([*V1_OVERRIDES, "trainer.max_steps=40"]), run)
    again = train(compose([*V1_OVERRIDES, "trainer.max_steps=40"]), current)
    straight = train(compose([*V1_OVERRIDES, "trainer.max_steps=40"]), tmp_path / "straight")
    assert resumed["steps"] == again["steps"] == straight["steps"] == 40
    assert resumed["record_version"] == records.RECORD_VERSION
    a, b, c = (read_checkpoint(d / records.CHECKPOINT_FILE)["model"] for d in (run, current, tmp_path / "straight"))
    assert a.keys() == b.keys() == c.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k].float(), c[k].float(), rtol=1e-5, atol=1e-6) for k in a)
    same = ("step", "train_loss", "train_acc", "test_loss", "test_acc", "step_loss")
    assert ([{k: r.get(k) for k in same} for r in records.read_metrics(run)]
            == [{k: r.get(k) for k in same} for r in records.read_metrics(current)])


def test_upgrade_fills_in_what_version_1_did_not_record():
    summary = records.upgrade("summary", {"status": "failed", "final": {"test_bpc": 2.0}})
    assert summary["primary_metric"] == "bpc" and summary["higher_is_better"] is False
    assert summary["record_version"] == records.RECORD_VERSION
    config = records.upgrade("config", {"norm": {"name": "group"}})
    assert config["norm"]["batch_dependent"] is False
    assert records.upgrade("config", {"norm": {"name": "weight", "mean_only": True}})["norm"]["batch_dependent"]
    assert "batch_dependent" not in records.upgrade("config", {"norm": {"name": "mine"}})["norm"]  # unknown: left
    rng = torch.get_rng_state()
    ckpt = records.upgrade("checkpoint", {"shuffle_rng": rng, "state": {"perm": None}})
    assert torch.equal(ckpt["source"]["shuffle_rng"], rng) and ckpt["source"]["perm"] is None


@pytest.mark.parametrize("version", [records.RECORD_VERSION + 1, 0, "2", True])
def test_a_record_of_an_unknown_version_is_refused(tmp_path, version):
    with pytest.raises(ValueError, match="record_version"):
        records.upgrade("summary", {"record_version": version})
    (tmp_path / records.SUMMARY_FILE).write_text(json.dumps({"record_version": version, "status": "completed"}))
    with pytest.raises(ValueError, match="record_version"):
        records.read_summary(tmp_path)
    assert load_runs([tmp_path]).skipped[0][1].startswith("corrupt summary.json")


def test_a_summary_records_the_git_commit_and_when_the_run_started_and_ended(tmp_path, tiny_overrides):
    import datetime
    import subprocess

    summary = train(compose(tiny_overrides), tmp_path / "run")
    head = subprocess.run(["git", "-C", str(Path(records.__file__).parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert summary["env"]["git"]["commit"] == head and isinstance(summary["env"]["git"]["dirty"], bool)
    started, ended = (datetime.datetime.fromisoformat(t) for t in (summary["env"]["started_at"], summary["ended_at"]))
    assert started <= ended and ended.tzinfo is not None
    older = {**summary, "record_version": 2, "env": {"torch": "2.3.0"}}
    del older["ended_at"]
    upgraded = records.upgrade("summary", older)
    assert upgraded["ended_at"] is None and upgraded["env"] == {"git": None, "started_at": None, "torch": "2.3.0"}
