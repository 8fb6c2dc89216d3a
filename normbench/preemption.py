"""Preemption: Slurm's warning signal, turned into a checkpoint at the next step boundary.

Slurm (through submitit) sends SIGUSR2 ``signal_delay_s`` before a job's time limit, and on
preemption where the cluster is set up to. While the training loop runs, :class:`StopRequest`
makes that signal only set a flag; the loop checks the flag after each step (a Python attribute:
no device synchronisation), saves a checkpoint of the current step and raises
:class:`Interrupted`, which :func:`normbench.train.train` hands to the handler that was installed
before (submitit's: requeue the job, then exit). Without one, ``normbench run`` exits with
128 + the signal number and the same command resumes.
"""

from __future__ import annotations

import os
import signal
import threading


class Interrupted(Exception):
    """A preemption signal stopped the run after it checkpointed its current step."""

    def __init__(self, signum: int, step: int, previous_handler):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; the checkpoint is saved")
        self.signum, self.step, self.previous_handler = signum, step, previous_handler


def preemption_signal() -> signal.Signals:
    """The signal Slurm sends before a timeout or preemption (submitit's choice: USR2)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class StopRequest:
    """While training, the preemption signal only sets a flag; the loop checks it between steps."""

    def __init__(self):
        self.signum: int | None = None
        self.previous = None
        self.installed = False

    def _handler(self, signum, frame):
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(preemption_signal(), self._handler)
            self.installed = True
        return self

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(preemption_signal(), self.previous)
        return False
