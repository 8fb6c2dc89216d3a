"""Fault injection: the run directory as a record you can trust.

Each test breaks a run the way a scheduler, a user, a colleague's files or a full disk does and
asserts the exact outcome: the line printed, the exit code, what is left on disk, and that the
same command then ends bit-identical to an uninterrupted run, or refuses and says why.
(The Slurm cases, requeue and resources, are in ``test_slurm.py``.)
"""

import io
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from procs import ENV, LONG, LONG_STEPS, normbench, signal_when_started, spawn, wait_for
from typer.testing import CliRunner

from normbench import records
from normbench.api import run
from normbench.cli.commands import app
from normbench.errors import ConfigError

# Five evaluations (steps 0, 25, 50, 75, 100), each checkpointed.
SHORT = ["model=mlp", "model.width=256", "trainer.max_steps=100", "trainer.eval_every=25",
         "trainer.train_eval_samples=200", "trainer.progress=none"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """SHORT, run once without interruption: what every faulted run must end as."""
    run_dir = tmp_path_factory.mktemp("straight")
    normbench("run", *SHORT, f"hydra.run.dir={run_dir}", cwd=run_dir, check=True)
    return run_dir


@pytest.fixture(scope="module")
def straight_long(tmp_path_factory) -> Path:
    """LONG (checkpoints at steps 0 and LONG_STEPS only), run once without interruption."""
    run_dir = tmp_path_factory.mktemp("straight_long")
    normbench("run", *LONG, f"hydra.run.dir={run_dir}", cwd=run_dir, check=True)
    return run_dir


def _untimed(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.endswith("_s")}


def assert_same_run(expected: Path, got: Path) -> None:
    """Bit-identical results: summary, every evaluation, the final weights; no temporaries left."""
    a, b = records.read_summary(expected), records.read_summary(got)
    assert b["status"] == "completed" and b["steps"] == a["steps"]
    assert _untimed(b["final"]) == _untimed(a["final"])
    assert (b["best_val_acc"], b["selected_test_acc"], b["steps_to_target"]) == (
        a["best_val_acc"], a["selected_test_acc"], a["steps_to_target"])
    assert [_untimed(r) for r in records.read_metrics(got)] == [_untimed(r) for r in records.read_metrics(expected)]
    wa, wb = (torch.load(d / records.CHECKPOINT_FILE, weights_only=True)["model"] for d in (expected, got))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not list(got.glob(".*.tmp"))


def cli(*args) -> tuple[int, str, str]:
    """``normbench`` in this process (usage errors and refusals need no subprocess)."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


# -- SIGKILL at chosen points ------------------------------------------------------------------

# Runs normbench with one function of normbench.records replaced: its nth call (of those that
# match) kills the process with SIGKILL at the named point.
KILL = r'''
import os, signal, sys
from pathlib import Path
from normbench import records
from normbench.cli import commands as cli

point, nth, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
seen = 0

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def on_call(name, act, which=lambda *a: True):
    original = getattr(records, name)
    def wrapper(*a):
        global seen
        seen += bool(which(*a))
        return act(original, *a) if which(*a) and seen == nth else original(*a)
    setattr(records, name, wrapper)

def torn(original, path, data):  # half the bytes in the temporary file: killed mid-write
    Path(path).with_name(f".{Path(path).name}.killed.tmp").write_bytes(data[: len(data) // 2])
    die()

if point == "start-up":  # the step-0 evaluation is recorded, its checkpoint not yet written
    on_call("write_checkpoint", lambda original, *a: die())
elif point == "checkpoint-write":  # the new digest is written, the new bytes half
    on_call("atomic_write_bytes", torn, which=lambda path, data: Path(path).name == records.CHECKPOINT_FILE)
elif point == "after-last-metrics":  # the last evaluation is in metrics.jsonl, its checkpoint not
    on_call("append_metrics", lambda original, *a: (original(*a), die()))
sys.argv = ["normbench", "run", *args]
cli.main()
'''


@pytest.mark.parametrize("point,nth,resumes_from", [
    ("start-up", 1, None), ("checkpoint-write", 3, 25), ("after-last-metrics", 5, 75)])
def test_sigkill_at_a_chosen_point_then_the_same_command_ends_bit_identical(tmp_path, straight, point, nth,
                                                                           resumes_from):
    run_dir = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILL, point, str(nth), *SHORT, f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    evaluations = [r["step"] for r in records.read_metrics(run_dir)]
    if resumes_from is None:
        assert evaluations == [0] and not (run_dir / records.CHECKPOINT_FILE).exists()
        assert not (run_dir / records.SUMMARY_FILE).exists()
    else:
        assert records.verified_checkpoint(run_dir)[1]["step"] == resumes_from
        assert records.read_summary(run_dir)["status"] == "running"
        assert evaluations == list(range(0, resumes_from + 26, 25))  # one evaluation past the checkpoint
    assert bool(list(run_dir.glob(".checkpoint.pt.killed.tmp"))) == (point == "checkpoint-write")

    again = normbench("run", *SHORT, f"hydra.run.dir={run_dir}", cwd=tmp_path, check=True)
    assert ("resuming from step" in again.stdout) == (resumes_from is not None)
    if resumes_from is not None:
        assert f"resuming from step {resumes_from} of 100" in again.stdout
    assert again.stderr == ""
    assert_same_run(straight, run_dir)


def test_sigkill_at_any_moment_then_the_same_command_resumes_to_the_same_result(tmp_path):
    common = ["model=mlp", "model.width=256", "trainer.max_steps=400", "trainer.eval_every=25",
              "trainer.train_eval_samples=200", "trainer.progress=none"]
    normbench("run", *common, f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path, check=True)
    killed = tmp_path / "killed"
    proc = spawn("run", *common, f"hydra.run.dir={killed}", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(records.read_metrics(killed)) >= 5, poll_s=0.005)  # past step 100
    proc.kill()
    proc.wait()
    ckpt_step = records.verified_checkpoint(killed)[1]["step"]  # SIGKILL may land mid-write: what verifies
    assert 0 < ckpt_step < 400, "the run must be killed part way"
    assert records.read_summary(killed)["status"] == "running"
    assert "completed" in normbench("run", *common, f"hydra.run.dir={killed}", cwd=tmp_path, check=True).stdout
    assert_same_run(tmp_path / "straight", killed)


# -- signals: checkpoint, one line, resumable ---------------------------------------------------

@pytest.mark.xdist_group("straight_long")  # one worker computes the fixture once for the three
@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM, signal.SIGINT], ids=["USR2", "SIGTERM", "SIGINT"])
def test_usr2_sigterm_and_ctrl_c_checkpoint_print_one_line_and_resume_bit_identical(tmp_path, straight_long, sig):
    run_dir = tmp_path / "signalled"
    code, out, err = signal_when_started([sys.executable, "-m", "normbench", "run", *LONG,
                                          f"hydra.run.dir={run_dir}"], tmp_path, run_dir, sig=sig)
    assert code == 128 + sig, err
    summary = records.read_summary(run_dir)
    step = summary["steps"]
    assert err == (f"normbench: stopped by {signal.Signals(sig).name} at step {step}; the checkpoint is saved; "
                   f"run the same command to resume ({run_dir})\n")
    assert summary["status"] == "running" and 0 < step < LONG_STEPS  # resumable, not failed
    assert records.verified_checkpoint(run_dir)[1]["step"] == step  # the signal's checkpoint
    out = normbench("run", *LONG, f"hydra.run.dir={run_dir}", cwd=tmp_path, check=True).stdout
    assert f"resuming from step {step} of {LONG_STEPS}" in out
    assert_same_run(straight_long, run_dir)


# -- one writer per run directory --------------------------------------------------------------

def test_a_second_process_on_a_run_directory_stops_with_one_line_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    args = ["run", "trainer.max_steps=100000", "trainer.eval_every=50", "trainer.progress=none",
            f"hydra.run.dir={run_dir}"]
    first = spawn(*args, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (run_dir / records.CHECKPOINT_FILE).exists())
        second = normbench(*args, cwd=tmp_path)
        assert second.returncode == 2
        assert second.stderr == (f"normbench: error: {run_dir} is in use by another normbench run (pid {first.pid} "
                                 f"on {os.uname().nodename}); wait for it to finish, or give this run another "
                                 "directory (hydra.run.dir=...)\n")
        assert first.poll() is None  # the first writer goes on, untouched
    finally:
        first.kill()
        first.communicate()
    steps = [m["step"] for m in records.read_metrics(run_dir)]
    assert steps == sorted(set(steps))  # every evaluation once


# -- a full disk ---------------------------------------------------------------------------------

def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # config and metrics fit, a checkpoint not
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead


@pytest.fixture
def small_disk(tmp_path):
    """A 256 kB tmpfs (root only); the test makes it larger to let the run resume."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _assert_failed_on_a_full_disk(proc, run_dir: Path, reason: str) -> None:
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("normbench: error: run failed: OSError: ")
    assert reason in proc.stderr and f"(record: {run_dir})" in proc.stderr
    assert not list(run_dir.glob(".*.tmp"))  # the torn temporary file does not keep the space
    summary = records.read_summary(run_dir)
    assert summary["status"] == "failed" and reason in summary["error"]


def test_a_full_disk_is_one_line_and_the_run_retries_when_there_is_room(tmp_path, straight, small_disk):
    run_dir = small_disk / "run"
    proc = normbench("run", *SHORT, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    _assert_failed_on_a_full_disk(proc, run_dir, "No space left on device")
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    normbench("run", *SHORT, f"hydra.run.dir={run_dir}", cwd=tmp_path, check=True)
    assert_same_run(straight, run_dir)


def test_a_file_size_limit_is_one_line_and_the_run_retries_without_it(tmp_path, straight):
    run_dir = tmp_path / "run"
    proc = normbench("run", *SHORT, f"hydra.run.dir={run_dir}", cwd=tmp_path, preexec_fn=_limit_file_size)
    _assert_failed_on_a_full_disk(proc, run_dir, "File too large")
    normbench("run", *SHORT, f"hydra.run.dir={run_dir}", cwd=tmp_path, check=True)
    assert_same_run(straight, run_dir)


# -- untrusted files in the run directory -------------------------------------------------------

class _RunsCode:
    """A pickled callable: loading it with plain pickle would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_code_is_refused_in_one_line_and_nothing_runs(tmp_path, tiny_overrides):
    marker, run_dir = tmp_path / "ran", tmp_path / "run"
    buffer = io.BytesIO()
    torch.save({"config": {}, "model": _RunsCode(marker)}, buffer)
    records.write_checkpoint(run_dir, buffer.getvalue(), 10)  # with a matching digest, as a forger would
    code, _, err = cli("run", *tiny_overrides, f"hydra.run.dir={run_dir}")
    assert code == 2
    assert err == (f"normbench: error: {run_dir / 'checkpoint.pt'} holds code (posix.system), not only tensors and "
                   "plain data, so normbench refuses to load it; move it away to train this run from the start\n")
    assert not marker.exists()


def _flip(path, at=-5000, n=64):
    data = bytearray(path.read_bytes())
    data[at:at + n] = bytes(b ^ 0xFF for b in data[at:at + n])
    path.write_bytes(bytes(data))


def _half(tiny_overrides):
    return [o for o in tiny_overrides if "max_steps" not in o] + ["trainer.max_steps=10"]


def test_a_damaged_checkpoint_is_never_used_the_previous_one_gives_the_same_result(tmp_path, tiny_overrides):
    straight = run(tiny_overrides, tmp_path / "straight")
    run(_half(tiny_overrides), tmp_path / "run")  # evaluations at 0 and 10: checkpoint.pt (10), .prev.pt (0)
    _flip(tmp_path / "run" / "checkpoint.pt")
    code, out, err = cli("run", *tiny_overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0 and "resuming from step 0 of 20" in out
    assert err == "normbench: warning: checkpoint.pt fails its SHA-256 check; resuming from checkpoint.prev.pt\n"
    resumed = records.read_summary(tmp_path / "run")
    assert resumed["final"] == straight["final"] and resumed["steps_to_target"] == straight["steps_to_target"]
    assert [m["step"] for m in records.read_metrics(tmp_path / "run")] == [0, 10, 20]


@pytest.mark.parametrize("damage", [_flip, lambda p: p.write_bytes(p.read_bytes()[:1000])], ids=["flipped", "truncated"])
def test_no_verified_checkpoint_is_one_clear_refusal(tmp_path, tiny_overrides, damage):
    run_dir = tmp_path / "run"
    run(_half(tiny_overrides), run_dir)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        damage(run_dir / name)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != records.LOCK_FILE}
    code, _, err = cli("run", *tiny_overrides, f"hydra.run.dir={run_dir}")
    assert code == 2
    assert err == (f"normbench: error: {run_dir}: checkpoint.pt and checkpoint.prev.pt fail their SHA-256 check "
                   "(damaged, modified, or written without a digest), so normbench will not resume from them; move "
                   "them away to train this run from the start\n")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != records.LOCK_FILE} == before


@pytest.mark.parametrize("forge", [
    lambda s: {**s, "final": {**s["final"], "test_acc": 0.999}, "selected_test_acc": 0.999},
    lambda s: {k: v for k, v in s.items() if k != "final"},
], ids=["better-result", "no-final"])
def test_a_forged_completed_summary_is_not_trusted_but_made_again(tmp_path, tiny_overrides, forge):
    straight = run(tiny_overrides, tmp_path / "run")
    records.write_summary(tmp_path / "run", forge(straight))
    code, out, _ = cli("run", *tiny_overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0 and out.startswith("completed: ") and "skipped" not in out
    again = records.read_summary(tmp_path / "run")
    assert again["final"] == straight["final"] and again["selected_test_acc"] == straight["selected_test_acc"]


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_text(p.read_text().splitlines(keepends=True)[0]), "holds 1 of the 2 evaluations"),
    (lambda p: p.unlink(), "holds 0 of the 2 evaluations"),
    (lambda p: p.write_text("garbage\n" + p.read_text()), "line 1 is not an evaluation record"),
    (lambda p: p.write_text("[1, 2]\n" + p.read_text()), "line 1 is not an evaluation record"),
], ids=["truncated", "deleted", "garbled", "not-an-object"])
def test_a_damaged_metrics_history_is_one_line_refused_not_resumed(tmp_path, tiny_overrides, damage, message):
    run(_half(tiny_overrides), tmp_path / "run")
    damage(tmp_path / "run" / "metrics.jsonl")
    code, _, err = cli("run", *tiny_overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and err.count("\n") == 1 and err.startswith("normbench: error: ")
    assert message in err and "normbench will not resume this run: move its directory away" in err
    assert records.read_summary(tmp_path / "run")["steps"] == 10  # nothing more was trained


def test_a_torn_last_metrics_line_is_dropped_and_made_again(tmp_path, tiny_overrides):
    straight = run(tiny_overrides, tmp_path / "straight")
    run(_half(tiny_overrides), tmp_path / "run")
    path = tmp_path / "run" / "metrics.jsonl"
    path.write_text(path.read_text() + '{"step": 20, "tes')  # a writer killed mid-line
    assert run(tiny_overrides, tmp_path / "run")["final"] == straight["final"]


def test_a_finished_run_with_a_damaged_history_is_not_skipped_but_refused(tmp_path, tiny_overrides):
    run(tiny_overrides, tmp_path / "run")
    path = tmp_path / "run" / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[2])  # the step-10 evaluation lost
    with pytest.raises(ConfigError, match="holds 2 of the 3 evaluations"):
        run(tiny_overrides, tmp_path / "run")


def test_invalid_yaml_in_a_finished_runs_config_is_not_trusted_and_written_again(tmp_path, tiny_overrides):
    straight = run(tiny_overrides, tmp_path)
    (tmp_path / "config.yaml").write_text("norm: [unclosed\n")
    code, out, err = cli("run", *tiny_overrides, f"hydra.run.dir={tmp_path}")
    assert code == 0 and err == "" and out.startswith("completed: ")  # summarized again from what verifies
    assert records.read_summary(tmp_path)["final"] == straight["final"]
    assert "name: batch" in (tmp_path / "config.yaml").read_text()


# -- what a refused run leaves behind -----------------------------------------------------------

def test_a_refused_run_removes_only_the_directories_normbench_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()  # the user's own, empty directories
    (tmp_path / "outputs").mkdir()
    # A marker planted in the directory, naming it, is not believed: it lacks this process's token.
    (tmp_path / "mine" / f".normbench-created-{os.getpid()}").write_text(f"forged\n{tmp_path / 'mine'}\n")
    for where in (["hydra.run.dir=mine"], ["hydra.run.dir=new/a/b"], []):  # [] is outputs/DATE/TIME
        code, _, err = cli("run", "optim.lr=-1", *where)  # refused by the command line: nothing is made
        assert (code, err) == (2, "normbench: error: optim.lr=-1 must be a positive number\n")
        code, _, err = cli("run", "norm=group", "norm.groups=5", *where)  # refused in the job Hydra started
        assert code == 2 and err.startswith("normbench: error: norm.groups=5 does not divide") and err.count("\n") == 1
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["mine", "outputs"]
