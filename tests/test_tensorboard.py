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
    logged = [(e.step, e.value) for e in events.Scalars("test_acc")]
    assert [step for step, _ in logged] == [r["step"] for r in history] == [0, 10, 20]
    assert [value for _, value in logged] == pytest.approx([r["test_acc"] for r in history])
    assert {"train_loss", "test_loss", "lr"} <= set(events.Tags()["scalars"])
    assert {"config/text_summary", "summary/text_summary"} <= set(events.Tags()["tensors"])
