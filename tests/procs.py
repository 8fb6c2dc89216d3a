"""``normbench`` as a user runs it, in a subprocess: one thread, unbuffered, no sweep report.

Used by the tests that need a real process (signals, SIGKILL, resource limits, two writers).
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
LONG = ["model=mlp", "model.width=256", "trainer.max_steps=2000", "trainer.eval_every=2000",
        "trainer.train_eval_samples=200", "trainer.progress=none"]


def normbench(*args, cwd, check=False, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "normbench", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=300, **kwargs)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


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
