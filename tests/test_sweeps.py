"""Sweeps that survive: deterministic sweep directories, relaunch (skip/resume), preemption signal,
dry runs, failure isolation with the parallel local launcher, the missing-plugin message."""

import json
import signal
import sys

import pytest
import torch
from procs import LONG, LONG_STEPS, cli, normbench, signal_when_started

from normbench import records
from normbench.cli import sweeps


def test_sweep_name_is_stable_and_leaves_out_launcher_logger_and_display_keys():
    a = sweeps.sweep_name(sweeps.parse(["norm=batch,group", "seed=0,1", "trainer.progress=none"]))
    b = sweeps.sweep_name(sweeps.parse(["seed=0,1", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                        "norm=batch,group", "logger=wandb", "logger.project=x"]))
    assert a == b == "norm=batch,group_seed=0,1"
    assert sweeps.sweep_name(sweeps.parse([])) == "default"
    long = sweeps.sweep_name(sweeps.parse([f"optim.lr={x}" for x in ("0.1,0.2,0.3",)] + ["dataset.root=/data/mnist"] + ["seed=" + ",".join(map(str, range(40)))]))
    assert "/" not in long and len(long) <= 60 and long == sweeps.sweep_name(sweeps.parse(["seed=" + ",".join(map(str, range(40))), "dataset.root=/data/mnist", "optim.lr=0.1,0.2,0.3"]))


def test_relaunched_sweep_skips_finished_runs_and_resumes_the_interrupted_one(tmp_path):
    args = ["-m", "norm=batch,group", *LONG]
    sweep_dir = tmp_path / "multirun" / sweeps.sweep_name(sweeps.parse(args[1:]))
    group_dir = sweep_dir / sweeps.job_subdir(["norm=group", *LONG], sweeps.nuisance_keys())
    # The sweep is stopped (SIGUSR2) while its second run trains.
    code, _, err = signal_when_started([sys.executable, "-m", "normbench", "run", *args], tmp_path, group_dir)
    assert code == 128 + signal.SIGUSR2, err
    step = records.read_summary(group_dir)["steps"]
    assert 0 < step < LONG_STEPS

    dry = cli("run", *args, "--dry-run", cwd=tmp_path, check=True).stdout.splitlines()
    assert dry[0].startswith(f"dry run: 2 jobs in multirun/{sweep_dir.name} (") and "nothing launched" in dry[0]
    assert "norm=batch" in dry[1] and "completed: skipped" in dry[1]
    assert "norm=group" in dry[2] and f"running: resume from step {step}" in dry[2]

    batch_dir = sweep_dir / sweeps.job_subdir(["norm=batch", *LONG], sweeps.nuisance_keys())
    before = (batch_dir / "checkpoint.pt").stat().st_mtime_ns
    proc = normbench("run", *args, cwd=tmp_path, check=True)
    assert "skipped, already completed: batch norm" in proc.stdout
    assert f"resuming from step {step} of {LONG_STEPS}" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("sweep: 2 completed, 0 diverged, 0 failed")
    assert (batch_dir / "checkpoint.pt").stat().st_mtime_ns == before
    assert records.read_summary(group_dir)["status"] == "completed"

    again = cli("run", *args, cwd=tmp_path, check=True).stdout  # nothing to train: in this process
    assert again.count("skipped, already completed") == 2 and "resuming" not in again


def test_local_launcher_runs_in_parallel_and_isolates_a_failing_run(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason='needs pip install -e ".[cluster]"')
    # Enough fixed overrides that a run's name would pass the file system's 255-byte limit in full.
    fixed = ["norm=batch", "trainer.max_steps=20", "trainer.eval_every=10", "trainer.train_eval_samples=100",
             "trainer.eval_batch_size=500", "optim.weight_decay=0.0", "optim.momentum=0.9", "norm.eps=0.00001",
             "trainer.target_acc=0.5", "dataset.num_samples=4000", "model.channels=[32,64,64]", "optim.nesterov=false"]
    proc = normbench("run", "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "batch_size=1,4", *fixed,
                     "trainer.progress=none", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    sweep_dir = tmp_path / "sweep"
    summaries = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}
    assert sorted((s["batch_size"], s["status"]) for s in summaries.values()) == [(1, "failed"), (4, "completed")]
    names = {bs: sweeps.job_subdir(job, sweeps.nuisance_keys())  # what --dry-run looks for
             for bs, job in zip((1, 4), sweeps.expand(sweeps.parse(["batch_size=1,4", *fixed])), strict=True)}
    assert set(summaries) == set(names.values()) and all(len(n) <= 60 for n in names.values())  # prefix + hash
    assert "batch_size>=2" in summaries[names[1]]["error"]
    assert proc.stdout.strip().splitlines()[-1].startswith("sweep: 1 completed, 0 diverged, 1 failed")
    assert "Joblib" in proc.stdout + proc.stderr  # the local launcher ran it
    assert "Traceback" not in proc.stderr


def test_a_launcher_without_its_plugin_says_what_to_install(monkeypatch):
    import importlib.util

    from normbench.cli import usage

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("hydra_plugins.hydra_") else real(name, *a))
    for preset in ("slurm", "local"):
        with pytest.raises(usage.UsageError, match=r'needs the hydra-.*-launcher plugin.*pip install -e "\.\[cluster\]"'):
            usage.check_launcher(usage.parse(["-m", f"hydra/launcher={preset}", "norm=batch"]))
    usage.check_launcher(usage.parse(["-m", "hydra/launcher=basic"]))  # Hydra's own: nothing to install


def test_sweep_jobs_take_the_gpus_round_robin_when_there_are_several(monkeypatch):
    from normbench.api import compose
    from normbench.cli.hydra_app import round_robin_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    devices = []
    for num in range(6):
        cfg = compose([])
        round_robin_device(cfg, num)
        devices.append(cfg.trainer.device)
    assert devices == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    cfg = compose(["trainer.device=cpu"])
    round_robin_device(cfg, 3)
    assert cfg.trainer.device == "cpu"  # an explicit device is kept
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = compose([])
    round_robin_device(cfg, 3)
    assert cfg.trainer.device == "auto"


def test_a_run_gives_a_sweeper_its_objective():
    from normbench.cli.hydra_app import WORST_OBJECTIVE, objective

    # auto: the validation metric, never the test set's
    done = {"status": "completed", "primary_metric": "acc", "final": {"test_acc": 0.8, "val_acc": 0.7, "val_loss": 0.6}}
    assert objective(done) == 0.7 and objective(done, "val_loss") == -0.6
    text = {"status": "completed", "primary_metric": "bpc", "final": {"test_bpc": 1.4, "val_bpc": 1.5}}
    assert objective(text) == -1.5  # higher is better: minus bits per character
    assert objective({**done, "status": "diverged"}) == objective(None) == WORST_OBJECTIVE
    assert objective(done, "val_acc_missing") == WORST_OBJECTIVE


def test_an_objective_the_run_does_not_measure_is_said(tmp_path):
    """A run on MNIST-1D has no relational accuracy: the sweeper would tune nothing; say so."""
    from typer.testing import CliRunner

    from normbench.cli.commands import app

    result = CliRunner().invoke(app, ["run", "objective=val_acc_relational", "trainer.max_steps=5",
                                      "trainer.progress=none", f"hydra.run.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert "objective=val_acc_relational is not among this run's final metrics (" in result.stderr


def test_optuna_tunes_the_learning_rate_of_each_norm(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='needs pip install -e ".[optuna]"')
    import yaml

    for norm in ("batch", "group"):
        sweep = tmp_path / norm
        proc = cli("run", "-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
                   "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=0", "optim.lr=tag(log,interval(0.01,1.0))",
                   f"norm={norm}", "model=mlp", "model.width=16", "trainer.max_steps=20", "trainer.eval_every=20",
                   "trainer.progress=none", "hydra.callbacks.report.enabled=false", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
        assert proc.exit_code == 0, proc.output
        summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
        lrs = {s["lr"] for s in summaries}
        assert len(summaries) == 3 and len(lrs) == 3 and all(0.01 <= lr <= 1.0 for lr in lrs)
        best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
        assert best["best_value"] == max(s["final"]["val_acc"] for s in summaries)  # selected on validation
        assert proc.stdout.strip().splitlines()[-1].startswith("sweep: 3 completed")
        assert "alembic" not in proc.output  # the storage's library setup lines are not shown


def test_hydra_logs_no_library_setup_lines():
    from omegaconf import OmegaConf

    from normbench.config.catalog import CONFIG_DIR

    logging_cfg = OmegaConf.load(CONFIG_DIR / "hydra" / "hydra_logging" / "normbench.yaml")
    assert logging_cfg.loggers.alembic.level == "WARNING" and logging_cfg.root.level == "INFO"
    assert "override hydra/hydra_logging: normbench" in (CONFIG_DIR / "config.yaml").read_text()


def test_a_single_run_without_a_validation_split_says_nothing_of_the_objective(tmp_path):
    from typer.testing import CliRunner

    from normbench.cli.commands import app

    result = CliRunner().invoke(app, ["run", "dataset.val_fraction=0", "trainer.max_steps=5", "trainer.progress=none",
                                      f"hydra.run.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert "objective" not in result.stderr


def test_sweep_and_run_directory_names_hold_no_shell_metacharacters():
    name = sweeps.sweep_name(sweeps.parse(["model.channels=[32,64]", "norm=batch,group"]))
    assert not set(name) & set("[]*?(){}$`'\"\\|&;<> ") and name.startswith("model.channels=-32,64-_norm=batch")
    assert sweeps.short_name("model.channels=[32,64],seed=0") != sweeps.short_name("model.channels=[32,65],seed=0")
