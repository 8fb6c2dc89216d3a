"""Preemption: Slurm's warning signal, turned into a checkpoint at the next step boundary.

Slurm (through submitit) sends SIGUSR2 ``signal_delay_s`` before a job's time limit, and on
preemption where the cluster is set up to. While the training loop runs, :class:`StopRequest`
makes that signal only set a flag; the loop checks the flag after each step (a Python attribute:
no device synchronisation), saves a checkpoint of the current step and raises
:class:`Interrupted`, which :func:`normbench.training.trainer.train` hands to the handler that was installed
before (submitit's: requeue the job, then exit). Without one, ``normbench run`` exits with
128 + the signal number and the same command resumes.

SIGTERM (``kill``, containers, systemd) and SIGINT (Ctrl-C) are handled the same way, unless
another handler owns them already (submitit's, inside a Slurm job: there SIGTERM keeps Slurm's
meaning). A second Ctrl-C while the step finishes stops at once (KeyboardInterrupt); the run
keeps its last evaluation's checkpoint.
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
    """While training, a stop signal only sets a flag; the loop checks it between steps."""

    def __init__(self):
        self.signum: int | None = None
        self.previous = None  # the preemption signal's handler before ours (submitit's)
        self.saved: dict[int, object] = {}

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum

    def previous_handler(self):
        """The handler to hand the stop to: the scheduler's, for the preemption signal only."""
        return self.previous if self.signum == preemption_signal() else None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        self.previous = self.saved[preemption_signal()] = signal.signal(preemption_signal(), self._handler)
        for sig in (signal.SIGTERM, signal.SIGINT):
            if sig != preemption_signal() and signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        self.saved.clear()
        return False
