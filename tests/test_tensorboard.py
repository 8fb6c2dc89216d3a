"""``logger=tensorboard``: the event files hold every evaluation's numbers at their step, the config and the summary."""

import pytest

from normbench import records
from normbench.api import run


def test_tensorboard_events_hold_every_evaluation(tmp_path):
    pytest.importorskip("tensorboard", reason='needs pip install -e ".[tensorboard]"')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    run(["logger=tensorboard", "model=mlp", "model.width=16", "trainer.max_steps=20", "trainer.eval_every=10",
         "trainer.progress=none"], run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    history = records.read_metrics(run_dir)
    logged = [(e.step, e.value) for e in events.Scalars("test/acc")]
    assert [step for step, _ in logged] == [r["step"] for r in history] == [0, 10, 20]
    assert [value for _, value in logged] == pytest.approx([r["test_acc"] for r in history])
    assert {"train/loss", "train/step_loss", "test/loss", "val/acc", "optim/lr", "progress/epoch",
            "progress/train_time_s"} <= set(events.Tags()["scalars"])
    assert {"config/text_summary", "summary/text_summary"} <= set(events.Tags()["tensors"])
    # the HParams tab: the config against the final numbers
    final = records.read_summary(run_dir)["final"]
    assert events.Scalars("hparam/final_test_acc")[0].value == pytest.approx(final["test_acc"])
    from tensorboard.backend.event_processing.plugin_event_accumulator import (
        EventAccumulator as Plugins,
    )

    plugins = Plugins(str(run_dir / "tensorboard"))
    plugins.Reload()
    start = plugins.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert b"\nbatch_size" in start and b"norm/name" in start and b"optim/lr" in start
