"""normbench's Hydra launchers: ``hydra/launcher=sequential`` (the default), ``slurm`` and ``local``.

Hydra loads launchers only from the ``hydra_plugins`` namespace, so the classes live here; the
shared code (packs, stale directories, failure records, the install hint) is in
:mod:`normbench.cli.launchers`. Each launcher refuses a sweep whose directories hold runs of
another config, skips finished runs, and launches one job per pack (``trainer.pack=seed``).
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf, open_dict

from normbench.cli.launchers import Launch, check_resources

log = logging.getLogger(__name__)

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        SlurmLauncher as _SubmititSlurm,
    )
except ImportError:  # pragma: no cover - the cli says what to install before we get here
    _SubmititSlurm = object  # type: ignore[assignment,misc]

try:
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as _Joblib
except ImportError:  # pragma: no cover
    _Joblib = object  # type: ignore[assignment,misc]


class SequentialLauncher(Launcher):
    """One job after another in this process (as Hydra's basic launcher), one job per pack."""

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        launch = Launch(self, job_overrides)
        for i in launch.leads:
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(job_overrides[i])))
            sweep_config = launch.sweep_config(i)
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = sweep_config.hydra.job.num = initial_job_idx + i
            launch.done.update(launch.outcome(i, run_job(
                hydra_context=self.hydra_context, task_function=self.task_function, config=sweep_config,
                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [launch.done[i] for i in range(len(job_overrides))]


class SlurmLauncher(_SubmititSlurm):  # type: ignore[misc,valid-type]
    """Hydra's submitit Slurm launcher, with each job's failure recorded instead of raised."""

    def setup(self, **kwargs: Any) -> None:
        super().setup(**kwargs)
        check_resources(dict(self.params))  # before the sweeper writes anything

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        # As Hydra's plugin does, except that a failed job is recorded rather than raised (the
        # plugin waits on each job in turn and stops the sweep at the first failure).
        import submitit
        from hydra.core.singleton import Singleton
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        launch = Launch(self, job_overrides)
        todo, done = launch.leads, launch.done
        if not todo:
            return [done[i] for i in range(len(job_overrides))]
        params = dict(self.params)
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=params["submitit_folder"],
                                         slurm_max_num_timeout=params.get("max_num_timeout", 0))
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in params.items() if k not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        job_params = []
        for i in todo:
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(job_overrides[i])))
            job_params.append((list(job_overrides[i]), "hydra.sweep.dir", initial_job_idx + i,
                               f"job_id_for_{initial_job_idx + i}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        print(f"normbench: submitted {len(jobs)} Slurm job{'s' if len(jobs) != 1 else ''} (array {jobs[0].job_id.split('_')[0]}); "
              f"waiting for them; logs in {sweep_dir / '.submitit'}", flush=True)
        outcomes = _wait(jobs, [" ".join(filter_overrides(job_overrides[i])) for i in todo])
        for i, outcome in zip(todo, outcomes, strict=True):
            done.update(launch.outcome(i, outcome))
        return [done[i] for i in range(len(job_overrides))]


_LIVE_STATES = ("PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING,REQUEUED,REQUEUE_HOLD,REQUEUE_FED,"
                "RESIZING,SIGNALING,STAGE_OUT")


def _queued(array_ids: set[str]) -> set[str] | None:
    """The job ids (``ARRAY_TASK``) that Slurm still has pending or running; None if squeue fails."""
    try:
        # Name the states: squeue's default leaves out a job in the middle of being requeued.
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-t", _LIVE_STATES, "-j", ",".join(sorted(array_ids))],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # squeue fails for ids it no longer knows of: treat as "none of them queued" only then
        return set() if "Invalid job id" in out.stderr else None
    return set(out.stdout.split())


def _status(outcome: Any) -> str:
    value = getattr(outcome, "_return_value", None)
    if isinstance(value, dict) and value.get("status"):
        return str(value["status"])
    return "failed"


def _wait(jobs: list[Any], labels: list[str], poll_s: float = 1.0) -> list[Any]:
    """Each job's result, or a message for a job that ended without one.

    Watches the result files submitit writes and, every few seconds, ``squeue``: it works on
    clusters without Slurm accounting (where submitit's sacct calls fail), and a job that left
    the queue without a result (killed for memory, node failure, scancel) ends the wait for it.
    """
    outcomes: dict[int, Any] = {}
    missing: dict[int, int] = {}
    started = last_squeue = time.monotonic()
    while len(outcomes) < len(jobs):
        for i, job in enumerate(jobs):
            if i not in outcomes and job.paths.result_pickle.exists():
                try:
                    outcomes[i] = job.results()[0]
                except Exception as exc:  # the job raised, or its result is unreadable
                    outcomes[i] = f"Slurm job {job.job_id} failed: {exc}"
                print(f"[{len(outcomes)}/{len(jobs)}] {_status(outcomes[i])}: {labels[i]} (job {job.job_id})", flush=True)
        if len(outcomes) == len(jobs):
            break
        # squeue every 5 s at first, then less often (at most once a minute) for long sweeps
        if time.monotonic() - last_squeue >= min(60.0, max(5.0, (time.monotonic() - started) / 10)):
            last_squeue = time.monotonic()
            waiting = {i: job for i, job in enumerate(jobs) if i not in outcomes}
            queued = _queued({job.job_id.split("_")[0] for job in waiting.values()})
            for i, job in waiting.items():
                # A requeued array task may be listed under its array's id alone.
                if queued is None or job.job_id in queued or job.job_id.split("_")[0] in queued:
                    missing.pop(i, None)
                    continue
                missing[i] = missing.get(i, 0) + 1
                if missing[i] >= 2 and not job.paths.result_pickle.exists():  # results may lag on NFS
                    tail = ""
                    if job.paths.stderr.exists():
                        lines = job.paths.stderr.read_text(errors="replace").strip().splitlines()
                        tail = f"; last error line: {lines[-1]}" if lines else ""
                    outcomes[i] = (f"Slurm job {job.job_id} left the queue without a result "
                                   f"(see {job.paths.stderr}){tail}")
                    print(f"[{len(outcomes)}/{len(jobs)}] failed: {labels[i]} (job {job.job_id} "
                          f"left the queue without a result)", flush=True)
        time.sleep(poll_s)
    return [outcomes[i] for i in range(len(jobs))]


class LocalLauncher(_Joblib):  # type: ignore[misc,valid-type]
    """Hydra's joblib launcher (parallel processes on one machine), with failures recorded.

    A job's own errors are recorded by normbench inside the job. If a worker process dies
    (killed for memory, a crash), joblib stops the whole batch: the runs without a finished
    record are then recorded as failed with joblib's reason, and the sweep's count says so.
    """

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        launch = Launch(self, job_overrides)
        todo, done = launch.leads, launch.done
        if todo:
            try:
                results: Sequence[Any] = super().launch([job_overrides[i] for i in todo], initial_job_idx)
            except Exception as exc:
                results = [f"the local worker pool stopped: {type(exc).__name__}: {exc}"] * len(todo)
            for i, result in zip(todo, results, strict=True):
                done.update(launch.outcome(i, result))
        return [done[i] for i in range(len(job_overrides))]
