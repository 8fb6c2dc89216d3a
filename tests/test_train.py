"""The trainer through the Python API: records, resume, divergence, batches, learning rates.
(Damaged, forged and interrupted run directories are in test_faults.py.)"""

import json
import math

import pytest
import torch

from normbench import records
from normbench.api import compose, run
from normbench.errors import ConfigError
from normbench.training.trainer import Trainer, train

SUMMARY_KEYS = {"status", "dataset", "model", "norm", "batch_size", "seed", "steps", "final", "best_val_acc",
                "steps_to_target", "time_to_target_s", "generalization_gap", "wall_time_s", "samples_per_s",
                "error", "env", "selected_step", "selected_test_acc"}
METRIC_KEYS = {"step", "epoch", "samples_seen", "wall_time_s", "train_loss", "train_acc", "val_loss", "val_acc",
               "test_loss", "test_acc", "lr"}


def test_run_record_follows_the_contract(tmp_path, tiny_overrides):
    summary = run(["norm=group", "batch_size=8", *tiny_overrides], tmp_path)
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["status"] == "completed" and summary["error"] is None
    assert (summary["norm"], summary["batch_size"], summary["steps"]) == ("group", 8, 20)
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    metrics = records.read_metrics(tmp_path)
    assert [m["step"] for m in metrics] == [0, 10, 20]
    for m in metrics:
        assert METRIC_KEYS <= m.keys()
        assert 0 <= m["train_acc"] <= 1 and 0 <= m["test_acc"] <= 1
        assert m["samples_seen"] == m["step"] * 8
    final = summary["final"]
    assert final["test_acc"] == metrics[-1]["test_acc"]
    # Selection reads validation only: the best validation score and the test score at its step.
    best = max(metrics, key=lambda m: m["val_acc"])
    assert summary["best_val_acc"] == best["val_acc"] and summary["selected_step"] == best["step"]
    assert summary["selected_test_acc"] == best["test_acc"] and "best_test_acc" not in summary
    assert math.isclose(summary["generalization_gap"], final["train_acc"] - final["test_acc"])
    assert summary["env"]["torch"] == torch.__version__ and summary["env"]["seed"] == 0
    assert "deterministic_algorithms" in summary["env"]
    cfg = (tmp_path / "config.yaml").read_text()
    assert "name: group" in cfg and "batch_size: 8" in cfg
    assert (tmp_path / "checkpoint.pt").exists()
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary files


def test_steps_to_target_is_the_first_evaluation_at_the_target(tmp_path, tiny_overrides):
    summary = run(["trainer.target_acc=0.0", *tiny_overrides], tmp_path / "reached")
    assert summary["steps_to_target"] == 0 and summary["time_to_target_s"] == 0
    summary = run(["trainer.target_acc=1.0", *tiny_overrides], tmp_path / "never")
    assert summary["steps_to_target"] is None and summary["time_to_target_s"] is None


def test_default_run_learns_mnist1d(tmp_path):
    """The default CNN with batch norm learns MNIST-1D well above chance in a few epochs."""
    summary = run(["trainer.epochs=3", "trainer.progress=none"], tmp_path)
    assert summary["final"]["test_acc"] > 0.8
    assert summary["steps"] == 3 * (3600 // 32)  # 4000 training signals, 400 held out for validation


def test_resume_continues_bit_for_bit(tmp_path):
    common = ["model=mlp", "norm=batch", "trainer.eval_every=15", "trainer.progress=none"]
    straight = run([*common, "trainer.max_steps=60"], tmp_path / "straight")
    first = run([*common, "trainer.max_steps=30"], tmp_path / "resumed")
    assert first["steps"] == 30
    resumed = run([*common, "trainer.max_steps=60"], tmp_path / "resumed")  # extends the budget
    assert resumed["steps"] == 60
    assert resumed["final"] == straight["final"]
    strip = lambda ms: [{k: v for k, v in m.items() if "time" not in k} for m in ms]  # noqa: E731
    assert strip(records.read_metrics(tmp_path / "resumed")) == strip(records.read_metrics(tmp_path / "straight"))
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_completed_run_is_returned_without_training_again(tmp_path, tiny_overrides):
    first = run(tiny_overrides, tmp_path)
    metrics_before = (tmp_path / "metrics.jsonl").read_text()
    again = run(tiny_overrides, tmp_path)
    assert again == json.loads(json.dumps(first))
    assert (tmp_path / "metrics.jsonl").read_text() == metrics_before


def test_run_dir_with_another_config_is_refused_and_kept(tmp_path, tiny_overrides):
    run(tiny_overrides, tmp_path)
    before = (tmp_path / "summary.json").read_text()
    with pytest.raises(ConfigError, match="another config"):
        run(["norm=group", *tiny_overrides], tmp_path)
    assert (tmp_path / "summary.json").read_text() == before


def test_divergence_is_a_recorded_result(tmp_path):
    summary = run(["model=mlp", "norm=none", "optim.lr=1e6", "trainer.max_steps=200", "trainer.log_every=10",
                   "trainer.progress=none"], tmp_path)
    assert summary["status"] == "diverged"
    assert "nan" in summary["error"] or "inf" in summary["error"]
    assert summary["steps"] < 200
    assert records.read_summary(tmp_path)["status"] == "diverged"
    # The record keeps the last finite evaluation and says where the loss blew up.
    assert summary["diverged_at_step"] == summary["steps"] > summary["final"].get("step", 0)
    assert summary["final"]["test_acc"] == records.read_metrics(tmp_path)[-1]["test_acc"]


def test_batches_are_full_so_batch_norm_never_sees_one_sample(tmp_path):
    # digits has 1437 training samples, 144 of them held out for validation: at batch 2 one sample
    # per epoch is left over.
    cfg = compose(["dataset=digits", "model=mlp", "batch_size=2", "trainer.epochs=2", "trainer.progress=none",
                   "trainer.eval_every=100000"])
    trainer = Trainer(cfg, tmp_path)
    sizes = []
    trainer.model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]) if m.training else None)
    summary = trainer.fit()
    assert summary["steps"] == 2 * 646
    assert set(sizes) == {2} and len(sizes) == 2 * 646


def test_linear_lr_scaling(tmp_path, tiny_overrides):
    summary = run(["optim.lr=0.1", "optim.lr_scaling=linear", "optim.base_batch_size=32", "batch_size=8",
                   *tiny_overrides], tmp_path)
    assert math.isclose(summary["lr"], 0.025)
    assert math.isclose(records.read_metrics(tmp_path)[-1]["lr"], 0.025)


@pytest.mark.parametrize("optim", ["sgd", "adam", "rmsprop"])
def test_every_optimizer_trains(tmp_path, optim):
    summary = run([f"optim={optim}", "model=mlp", "norm=layer", "trainer.max_steps=100", "trainer.progress=none"],
                  tmp_path)
    assert summary["final"]["test_acc"] > 0.2


def test_weight_norm_with_data_init_and_mean_only_bn_trains(tmp_path):
    summary = run(["norm=weight", "norm.mean_only=true", "trainer.max_steps=100", "trainer.progress=none"], tmp_path)
    assert summary["status"] == "completed" and summary["final"]["test_acc"] > 0.2


def test_cosine_schedule_reaches_zero(tmp_path, tiny_overrides):
    run(["optim.schedule=cosine", *tiny_overrides], tmp_path)
    assert records.read_metrics(tmp_path)[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("override,message", [
    ("batch_size=0", "batch_size=0 must be a positive integer"),
    ("trainer.max_steps=-3", "trainer.max_steps=-3"),
    ("batch_size=1", "needs batch_size>=2"),
    ("batch_size=5000", "exceeds the 3600 training samples"),
    ("optim.lr=-1", "optim.lr=-1"),
    ("trainer.device=tpu", "trainer.device=tpu is not a device"),
    ("trainer.target_acc=2", "trainer.target_acc=2"),
])
def test_bad_values_raise_before_anything_is_written(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train(compose([override]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_final_evaluation_records_each_test_example(tmp_path, tiny_overrides):
    """test_examples.npz: one entry per test example of the final evaluation, agreeing with the
    run's test accuracy and loss; behind a digest, so a modified file is not read."""
    summary = run(tiny_overrides, tmp_path)
    found = records.read_examples(tmp_path, summary["steps"])
    final = summary["final"]
    assert len(found["correct"]) == len(found["loss"]) == 1000  # MNIST-1D's test set
    assert found["correct"].mean() == pytest.approx(final["test_acc"], abs=1e-12)
    assert found["loss"].mean() == pytest.approx(final["test_loss"], rel=1e-5)
    assert records.read_examples(tmp_path, summary["steps"] - 1) is None  # not the final step's
    path = tmp_path / records.EXAMPLES_FILE
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    assert records.read_examples(tmp_path, summary["steps"]) is None
