"""Vision runs through the trainer: CIFAR-10 with augmentation, resume, GPU options, ImageNet folders, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from vision_data import write_cifar, write_image_folders

from normbench import records
from normbench.api import compose, run
from normbench.models import build_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, per_batch=20, n_test=20)  # 100 training images: 12 steps of 8 per epoch
    return root


def cifar(root, *extra, norm=("norm=group", "norm.groups=4")):
    return ["dataset=cifar10", f"dataset.root={root}", "model=resnet", "model.depth=8", "model.width=8",
            *norm, "batch_size=8", "trainer.progress=none", "trainer.eval_batch_size=50",
            *extra]


def test_cifar_resnet_run_records_the_gpu_options(tmp_path, cifar_root):
    summary = run(cifar(cifar_root, "trainer.max_steps=6", "trainer.eval_every=3", "optim.schedule=step",
                        "optim.milestones=[0.25]", "optim.warmup_steps=2"), tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 6
    env = summary["env"]
    assert (env["amp"], env["channels_last"], env["compile"], env["world_size"]) == (None, False, False, 1)
    assert "cudnn_benchmark" in env and "deterministic_algorithms" in env and "cifar-10-batches-py" in env["dataset_source"]
    lrs = [m["lr"] for m in records.read_metrics(tmp_path)]
    # warm-up 0.025, 0.05 then 0.05; x0.1 from step 3 (a quarter of the 12-step epoch)
    assert lrs == pytest.approx([0.025, 0.005, 0.005])


def test_resume_with_augmentation_is_bit_exact(tmp_path, cifar_root):
    common = cifar(cifar_root, "trainer.eval_every=4")
    straight = run([*common, "trainer.max_steps=16"], tmp_path / "straight")  # crosses the epoch at 12
    first = run([*common, "trainer.max_steps=8"], tmp_path / "resumed")
    assert first["steps"] == 8
    resumed = run([*common, "trainer.max_steps=16"], tmp_path / "resumed")
    assert resumed["final"] == straight["final"]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The augmentation does act: without it the run ends elsewhere.
    plain = run([*common, "trainer.max_steps=16", "dataset.augment=false"], tmp_path / "plain")
    assert plain["final"] != straight["final"]


def test_amp_and_channels_last_train_on_cpu(tmp_path, cifar_root):
    summary = run(cifar(cifar_root, "trainer.max_steps=4", "trainer.eval_every=4", "trainer.amp=true",
                        "trainer.channels_last=true", norm=["norm=batch"]), tmp_path)
    assert summary["status"] == "completed"
    assert summary["env"]["amp"] == "bf16" and summary["env"]["channels_last"] is True
    assert 0 <= summary["final"]["test_acc"] <= 1 and summary["final"]["train_loss"] < 10


@pytest.mark.slow  # torch.compile on 2 CPU cores: about a minute
def test_compiled_model_checkpoints_the_plain_module(tmp_path, cifar_root):
    pytest.importorskip("torch._inductor")
    summary = run(cifar(cifar_root, "trainer.max_steps=2", "trainer.eval_every=2", "trainer.compile=true"), tmp_path)
    assert summary["status"] == "completed" and summary["env"]["compile"] is True
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    assert not any(k.startswith(("_orig_mod", "module.")) for k in state)
    cfg = compose(cifar(ROOT))
    assert set(state) == set(build_model(cfg.model, cfg.norm, _cifar_like()).state_dict())


def _cifar_like():
    from normbench.data import TensorData

    x = torch.zeros(2, 3, 32, 32)
    y = torch.zeros(2, dtype=torch.long)
    return TensorData("cifar10", "image", x, y, x, y, 10)


def test_imagenet_folders_train_and_resume_mid_epoch(tmp_path):
    write_image_folders(tmp_path / "data")
    common = ["dataset=imagenet", f"dataset.root={tmp_path / 'data'}", "dataset.workers=1", "dataset.crop=32",
              "dataset.resize=36", "model=resnet", "model.depth=8", "model.width=8", "norm=group", "norm.groups=4",
              "batch_size=4", "trainer.eval_every=3", "trainer.progress=none", "trainer.eval_batch_size=8"]
    first = run([*common, "trainer.max_steps=3"], tmp_path / "run")  # 4 steps per epoch: stops at batch 3
    assert first["status"] == "completed" and first["steps"] == 3
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert (ckpt["state"]["epoch"], ckpt["state"]["position"]) == (0, 3)
    resumed = run([*common, "trainer.max_steps=6"], tmp_path / "run")
    assert resumed["steps"] == 6 and resumed["epochs"] == 1.5
    metrics = records.read_metrics(tmp_path / "run")
    assert [m["step"] for m in metrics] == [0, 3, 6]
    assert all(0 <= m["test_acc"] <= 1 for m in metrics)


def test_torchrun_two_processes_on_cpu(tmp_path, cifar_root):
    """DDP over gloo: rank 0 writes the one record; both ranks end with the same weights."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "NORMBENCH_DUMP_RANK_STATE": str(tmp_path / "rank")}
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "normbench", "run", *cifar(cifar_root, "trainer.max_steps=6", "trainer.eval_every=3",
                                             "trainer.device=cpu", norm=["norm=batch"]), f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 6
    assert summary["env"]["world_size"] == 2 and summary["env"]["distributed_backend"] == "gloo"
    assert [m["step"] for m in records.read_metrics(run_dir)] == [0, 3, 6]
    assert proc.stdout.count("completed:") == 1  # one final line, from rank 0
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]
    assert not any(k.startswith("module.") for k in ckpt)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    params = [k for k in ckpt if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) and torch.equal(ranks[0][k], ckpt[k]) for k in params)
    # Each rank had its own shard: the per-device batch norm statistics differ.
    assert not torch.equal(ranks[0]["net.norm1.running_mean"], ranks[1]["net.norm1.running_mean"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "rank0.pt", "rank1.pt"]  # nothing else written


@pytest.mark.parametrize("override,message", [
    ("trainer.compile_mode=fast", "trainer.compile_mode=fast is not one of default, reduce-overhead"),
    ("trainer.amp=yes", "trainer.amp=yes must be true or false"),
    ("dataset.root=/nonexistent/cifar", "lacks CIFAR-10's files"),
])
def test_bad_vision_options_fail_before_training(tmp_path, cifar_root, override, message):
    from normbench.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        run(cifar(cifar_root, "trainer.max_steps=2", override), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_channels_last_needs_images(tmp_path):
    from normbench.errors import ConfigError

    with pytest.raises(ConfigError, match="channels_last=true needs image data"):
        run(["trainer.channels_last=true", "trainer.max_steps=2", "trainer.progress=none"], tmp_path / "run")


def test_sync_batch_norm_on_cpu_is_refused(tmp_path, cifar_root):
    from normbench.errors import ConfigError
    from normbench.training.distributed import Context
    from normbench.training.trainer import Trainer

    cfg = compose(cifar(cifar_root, "norm.sync=true", "trainer.device=cpu", norm=["norm=batch"]))
    with pytest.raises(ConfigError, match="norm.sync=true .* needs CUDA"):
        Trainer(cfg, tmp_path / "run", Context(rank=0, world=2))


def test_mlp_probe_reads_a_test_batch_of_imagenet_folders(tmp_path):
    # The probe's fixed test batch comes from the batch source: FolderData has no x_test.
    write_image_folders(tmp_path / "data")
    summary = run(["dataset=imagenet", f"dataset.root={tmp_path / 'data'}", "dataset.workers=0", "dataset.crop=8",
                   "dataset.resize=8", "model=mlp", "model.depth=1", "model.width=8", "norm=none", "batch_size=4",
                   "trainer.max_steps=2", "trainer.progress=none", "trainer.eval_batch_size=8"], tmp_path / "run")
    assert summary["status"] == "completed"
    metrics = records.read_metrics(tmp_path / "run")
    assert all("preact_p50" in m and m["preact_p15"] <= m["preact_p85"] for m in metrics)
