"""Sweeps through ``hydra/launcher=slurm`` on a real single-node Slurm started on this machine.

The fixture runs ``scripts/slurm_local.sh start`` (munge, slurmctld, slurmd from Debian's
slurm-wlm; ``scripts/slurm_local.sh install`` or ``.ci/run`` installs them). Where Slurm cannot
be started (not root, not installed) the tests are skipped with the reason, unless
``NORMBENCH_REQUIRE_SLURM=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from procs import normbench, spawn, wait_for

from normbench import records
from normbench.cli import sweeps

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
# One Slurm for the module: its tests run on one worker, one after the other.
pytestmark = pytest.mark.xdist_group("slurm")

SMALL_JOBS = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
              "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]


def _unavailable(reason: str):
    if os.environ.get("NORMBENCH_REQUIRE_SLURM", "") not in ("", "0"):
        pytest.fail(f"Slurm is required here (NORMBENCH_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(f"no local Slurm: {reason}")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node Slurm; yields the environment for its client commands."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason='needs pip install -e ".[cluster]"')
    if os.geteuid() != 0:
        _unavailable("starting slurmctld and slurmd needs root")
    if not shutil.which("slurmctld") or not shutil.which("munged"):
        _unavailable("slurm-wlm and munge are not installed (scripts/slurm_local.sh install)")
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=120)
    if start.returncode != 0:
        _unavailable(f"scripts/slurm_local.sh start failed: {(start.stderr or start.stdout).strip()[-500:]}")
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NORMBENCH_NO_REPORT": "1"}
    try:
        yield env
    finally:
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=60)


def squeue(env, *fields):
    out = subprocess.run(["squeue", "-h", "-r", "-o", " ".join(fields)], env=env, capture_output=True, text=True)
    return [line.split() for line in out.stdout.splitlines()]


def test_a_four_run_sweep_through_the_slurm_launcher(slurm, tmp_path):
    args = ["-m", *SMALL_JOBS, "norm=batch,group", "seed=0,1", "trainer.max_steps=20", "trainer.eval_every=10",
            "trainer.progress=none"]
    proc = normbench("run", *args, cwd=tmp_path, env=slurm)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sweep_dir = tmp_path / "multirun" / sweeps.sweep_name(sweeps.parse(args[1:]))
    summaries = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
    assert sorted((s["norm"], s["seed"], s["status"], s["steps"]) for s in summaries) == [
        ("batch", 0, "completed", 20), ("batch", 1, "completed", 20),
        ("group", 0, "completed", 20), ("group", 1, "completed", 20)]
    assert all(len(records.read_metrics(p.parent)) == 3 for p in sweep_dir.glob("*/summary.json"))
    assert "submitted 4 Slurm jobs" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("sweep: 4 completed, 0 diverged, 0 failed")
    assert len(list((sweep_dir / ".submitit").glob("*/*_log.out"))) == 4  # one Slurm job per run


def test_usr2_on_a_running_slurm_job_checkpoints_requeues_and_resumes(slurm, tmp_path):
    # Evaluations (and their checkpoints) only at steps 0 and 2000: a resume from a step in between
    # can only come from the checkpoint the signal asked for.
    train = ["model=mlp", "model.width=256", "trainer.max_steps=2000", "trainer.eval_every=2000",
             "trainer.train_eval_samples=200", "trainer.progress=none"]
    args = ["-m", *SMALL_JOBS, *train]
    run_dir = tmp_path / "multirun" / sweeps.sweep_name(sweeps.parse(args[1:])) / sweeps.job_subdir(train, sweeps.nuisance_keys())
    sweep = spawn("run", *args, cwd=tmp_path, env=slurm)
    try:
        wait_for(lambda: (run_dir / records.CHECKPOINT_FILE).exists(), timeout_s=120, poll_s=0.02)
        # The step-0 checkpoint comes after the run's signal handler is in place; poll until
        # Slurm reports the job as running too.
        wait_for(lambda: [j[1] for j in squeue(slurm, "%i", "%T")] == ["RUNNING"], timeout_s=30, poll_s=0.05)
        jobs = squeue(slurm, "%i", "%T")
        job_id = jobs[0][0]
        subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm, check=True)
        # submitit requeues the job; Slurm holds a requeued job for two minutes: let it start now.
        def job_info() -> str:
            return subprocess.run(["scontrol", "show", "job", job_id], env=slurm, capture_output=True, text=True).stdout

        wait_for(lambda: "JobState=PENDING" in (info := job_info()) and "Restarts=0" not in info, timeout_s=60,
                 poll_s=0.1)
        info = job_info()
        assert "Restarts=1" in info, info
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], env=slurm, check=True)
        out, _ = sweep.communicate(timeout=240)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, out[-3000:]
    assert out.strip().splitlines()[-1].startswith("sweep: 1 completed, 0 diverged, 0 failed"), out[-3000:]

    log = "".join(p.read_text() for p in (run_dir.parent / ".submitit").glob("*/*_log.*"))
    assert "Caught signal SIGUSR2" in log  # submitit calls it a timeout or a preemption: both requeue
    resumed = [line for line in log.splitlines() if line.startswith("resuming from step ")]
    assert len(resumed) == 1, log[-3000:]
    step = int(resumed[0].split()[3])
    assert 0 < step < 2000

    straight = tmp_path / "straight"
    normbench("run", *train, f"hydra.run.dir={straight}", cwd=tmp_path, env=slurm, check=True)
    a, b = records.read_summary(straight), records.read_summary(run_dir)
    assert b["status"] == "completed" and b["steps"] == 2000 and a["final"] == b["final"]
    wa = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    wb = torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_job_killed_by_slurm_is_recorded_as_failed_and_the_others_complete(slurm, tmp_path):
    # norm=batch is cancelled while it trains (submitit ignores the SIGTERM; Slurm kills it
    # KillWait=5 s later); norm=group runs to the end.
    train = ["model=mlp", "model.width=64", "trainer.max_steps=8000", "trainer.eval_every=8000",
             "trainer.train_eval_samples=200", "trainer.progress=none"]
    args = ["-m", *SMALL_JOBS, "norm=batch,group", *train]
    sweep_dir = tmp_path / "multirun" / sweeps.sweep_name(sweeps.parse(args[1:]))
    victim = sweep_dir / sweeps.job_subdir(["norm=batch", *train], sweeps.nuisance_keys())
    sweep = spawn("run", *args, cwd=tmp_path, env=slurm)
    try:
        wait_for(lambda: (victim / records.CHECKPOINT_FILE).exists(), timeout_s=120, poll_s=0.02)
        jobs = [fields[0] for fields in squeue(slurm, "%i")]
        assert any(j.endswith("_0") for j in jobs), jobs
        subprocess.run(["scancel", next(j for j in jobs if j.endswith("_0"))], env=slurm, check=True)
        out, _ = sweep.communicate(timeout=240)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 1, out[-3000:]
    assert out.strip().splitlines()[-1].startswith("sweep: 1 completed, 0 diverged, 1 failed"), out[-3000:]
    failed = records.read_summary(victim)
    assert failed["status"] == "failed" and "left the queue without a result" in failed["error"]
    assert "Traceback" not in out


def test_jobs_no_node_can_hold_are_refused_in_one_line_before_anything_is_written(slurm, tmp_path):
    cpus = int(subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], env=slurm, capture_output=True, text=True,
                              check=True).stdout.split()[0])
    args = ["run", "-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", f"hydra.launcher.cpus_per_task={cpus + 1}",
            "trainer.max_steps=20", "trainer.progress=none"]
    proc = normbench(*args, cwd=tmp_path, env=slurm, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == (f"normbench: error: hydra.launcher.cpus_per_task={cpus + 1} asks for more than any node of "
                           f"the default partition has ({cpus} CPUs at most), so the jobs would wait forever; ask for "
                           "less, or choose another partition with hydra.launcher.partition=NAME\n")
    proc = normbench(*args[:-3], "hydra.launcher.partition=nope", "trainer.max_steps=20", cwd=tmp_path, env=slurm,
                     timeout=120)
    assert proc.returncode == 2 and "hydra.launcher.partition=nope names no partition with nodes" in proc.stderr
    assert squeue(slurm, "%i") == [] and list(tmp_path.iterdir()) == []


def test_a_relaunched_sweep_submits_only_the_runs_that_are_not_finished(slurm, tmp_path):
    train = ["trainer.max_steps=20", "trainer.eval_every=10", "trainer.progress=none", "hydra.sweep.dir=sweep"]
    first = normbench("run", "-m", *SMALL_JOBS, *train, "seed=0", cwd=tmp_path, env=slurm)
    assert first.returncode == 0 and "submitted 1 Slurm job " in first.stdout, first.stderr[-2000:]
    args = ["run", "-m", *SMALL_JOBS, *train, "seed=0,1"]
    second = normbench(*args, cwd=tmp_path, env=slurm)
    lines = second.stdout.splitlines()
    assert second.returncode == 0, second.stderr[-2000:]
    assert lines[0].startswith("skipped, already completed: batch norm, cnn on mnist1d, batch 32, seed 0 |")
    assert "submitted 1 Slurm job " in second.stdout and lines[-1].startswith("sweep: 2 completed, 0 diverged")
    third = normbench(*args, cwd=tmp_path, env=slurm)
    assert third.stdout.count("skipped, already completed") == 2 and "submitted" not in third.stdout
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))) == 2  # two Slurm jobs in all
