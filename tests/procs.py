"""``normbench`` as a user runs it: :func:`normbench` in a subprocess (one thread, unbuffered, no
sweep report), for the tests where the process boundary is the point (signals, SIGKILL, resource
limits, two writers, exit codes, imports); :func:`cli` in this process (Typer's ``CliRunner``), for
everything else: usage errors, help, listings, a short run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from normbench import records

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "NORMBENCH_NO_REPORT": "1"}
# Only the first and last evaluations checkpoint, so a checkpoint in between comes from a signal.
# The signal is sent within one poll (10 ms) of the step-0 checkpoint: a few steps in, of 600.
LONG_STEPS = 600
LONG = ["model=mlp", "model.width=256", f"trainer.max_steps={LONG_STEPS}", f"trainer.eval_every={LONG_STEPS}",
        "trainer.train_eval_samples=200", "trainer.progress=none"]


def normbench(*args, cwd=None, check=False, env=None, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m normbench ARGS`` in a subprocess (``env``: added to :data:`ENV`)."""
    proc = subprocess.run([sys.executable, "-m", "normbench", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**ENV, **(env or {})}, timeout=timeout, **kwargs)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def spawn(*args, cwd=None, env=None, **kwargs) -> subprocess.Popen:
    """``python -m normbench ARGS`` started in the background (by default stdout and stderr in one
    pipe; ``kwargs`` go to ``Popen``)."""
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, **kwargs}
    return subprocess.Popen([sys.executable, "-m", "normbench", *map(str, args)], cwd=cwd, env={**ENV, **(env or {})},
                            **kwargs)


def cli(*args, cwd=None, check=False):
    """``normbench ARGS`` in this process (Typer's ``CliRunner``), from ``cwd`` when given; the
    result has ``exit_code``, ``stdout`` and ``stderr``. A sweep writes no report."""
    from typer.testing import CliRunner

    from normbench.cli.commands import app

    before, report = Path.cwd(), os.environ.get("NORMBENCH_NO_REPORT")
    os.environ["NORMBENCH_NO_REPORT"] = "1"
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(before)
        if report is None:
            os.environ.pop("NORMBENCH_NO_REPORT", None)
        else:
            os.environ["NORMBENCH_NO_REPORT"] = report
    if check:
        assert result.exit_code == 0, result.output
    return result


def wait_for(condition, timeout_s: float = 120.0, poll_s: float = 0.01) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, "timed out waiting for the run"
        time.sleep(poll_s)


def signal_when_started(cmd, cwd, run_dir: Path, sig=signal.SIGUSR2):
    """Start ``cmd``, wait until ``run_dir`` has its step-0 checkpoint, then send ``sig``.

    The run's handler is in place before that checkpoint, so the signal is acted on at the next
    step boundary: the checkpoint it asks for is of a step between 0 and the budget.
    """
    # As from a terminal: a suite started in the background (nohup, `&`) hands its children SIGINT
    # ignored, and normbench rightly leaves an ignored Ctrl-C ignored.
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: (run_dir / records.CHECKPOINT_FILE).exists() or proc.poll() is not None)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err
