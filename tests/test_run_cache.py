"""The run cache (normbench/training/cache.py): reuse of a verified identical run, in this process."""

from __future__ import annotations

import pytest

from normbench import records
from normbench.api import compose
from normbench.training import cache
from normbench.training.trainer import train

STEPS = ["trainer.max_steps=4", "trainer.eval_every=2", "trainer.progress=none", "trainer.train_eval_samples=100"]


@pytest.fixture(autouse=True)
def run_index(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMBENCH_RUN_INDEX", str(tmp_path / "index"))


def test_a_completed_run_is_reused_by_an_identical_one_and_never_when_edited(tmp_path, capsys):
    first = train(compose(STEPS), tmp_path / "a")
    # Display keys do not change the identity; the step budget does.
    assert cache.identity(records.read_config(tmp_path / "a")) == cache.identity(
        {**records.read_config(tmp_path / "a"), "objective": "val_loss"})
    second = train(compose([*STEPS, "trainer.log_every=1"]), tmp_path / "b")
    assert "reused: the same run completed in" in capsys.readouterr().out
    assert second["reused_from"] == str((tmp_path / "a").absolute()) and second["final"] == first["final"]
    copied = records.read_examples(tmp_path / "b", second["steps"])  # the per-example record comes along
    assert (copied["correct"] == records.read_examples(tmp_path / "a", first["steps"])["correct"]).all()
    assert train(compose([*STEPS, "trainer.log_every=1"]), tmp_path / "b")["final"] == first["final"]  # it verifies
    assert train(compose([*STEPS, "trainer.max_steps=2"]), tmp_path / "c").get("reused_from") is None
    # A forged source is not served: the checkpoint no longer stands behind the summary.
    summary = records.read_summary(tmp_path / "a")
    summary["final"]["test_acc"] = 0.999
    records.write_summary(tmp_path / "a", summary)
    assert train(compose(STEPS), tmp_path / "d").get("reused_from") is None
    assert train(compose([*STEPS, "trainer.reuse=false"]), tmp_path / "e").get("reused_from") is None
