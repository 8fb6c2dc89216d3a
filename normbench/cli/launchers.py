"""Hydra launchers for sweeps on a Slurm cluster or in parallel on one machine.

The presets ``hydra/launcher=slurm`` and ``hydra/launcher=local`` (``configs/hydra/launcher/``)
name the classes in ``hydra_plugins.normbench_launchers`` (Hydra loads launchers only from the
``hydra_plugins`` namespace); their shared code is here. Both are thin subclasses of Hydra's plugins (``pip install -e ".[cluster]"``) that
add failure isolation: a job that dies outside normbench's own error handling (killed for
memory, a node failure, a worker that crashed) is recorded as a ``failed`` run with the reason,
and the sweep goes on to count it instead of stopping with a traceback.

Preemption on Slurm needs nothing here: submitit calls the launcher's ``checkpoint`` on USR2,
which resubmits the same job; normbench's trainer has already saved the current step by then
(:func:`normbench.training.trainer.train`), so the requeued job resumes from it.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from normbench import records
from normbench.errors import ConfigError

log = logging.getLogger(__name__)

#: The optional extra that provides the launcher plugins.
INSTALL_HINT = 'pip install -e ".[cluster]"  (or: pip install hydra-submitit-launcher hydra-joblib-launcher)'

#: Preset name -> (plugin module, PyPI package).
PRESETS = {
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "local": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
}


def missing_plugin(preset: str) -> str | None:
    """The message to show when the plugin behind ``hydra/launcher=PRESET`` is not installed."""
    if preset not in PRESETS:
        return None
    import importlib.util

    module, package = PRESETS[preset]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if found:
        return None
    return f"hydra/launcher={preset} needs the {package} plugin, which is not installed; install it with: {INSTALL_HINT}"


def _run_dir(launcher: Any, overrides: Sequence[str]) -> tuple[DictConfig, Path]:
    """The job's config (without Hydra's node) and its run directory, as the job computes them."""
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    run_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    with_hydra = OmegaConf.to_container(sweep_config, resolve=False)
    with_hydra.pop("hydra", None)
    return OmegaConf.create(with_hydra), run_dir


def record_lost_job(launcher: Any, overrides: Sequence[str], message: str) -> None:
    """Record a job that ended without a result as a failed run (unless its record says it finished)."""
    try:
        cfg, run_dir = _run_dir(launcher, overrides)
        try:
            summary = records.read_summary(run_dir)
        except (OSError, ValueError):
            summary = None
        if summary is not None and summary.get("status") in ("completed", "diverged", "failed"):
            return
        if summary is not None:  # it was running: keep what it recorded, say why it stopped
            summary.update(status="failed", error=message)
            records.write_summary(run_dir, summary)
            return
        records.record_failure(run_dir, OmegaConf.to_container(cfg, resolve=True), message)
    except Exception as exc:  # the record is best effort; the sweep must still end
        log.warning("normbench: could not record the failed job %s: %s", " ".join(overrides), exc)


def isolated(launcher: Any, overrides: Sequence[str], result: Any) -> JobReturn:
    """A JobReturn that never raises in Hydra's sweeper: failures are in the run records."""
    if isinstance(result, JobReturn) and result.status == JobStatus.COMPLETED:
        return result
    if isinstance(result, JobReturn):
        try:
            value = result.return_value  # a failed job's value raises its exception (Hydra's public way to it)
            message = f"job ended with status {result.status.name} and value {value!r}"
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
    else:
        message = " ".join(str(result).split())[:2000]
    print(f"normbench: error: job {' '.join(overrides)} failed: {message}", file=sys.stderr, flush=True)
    record_lost_job(launcher, overrides, message)
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = None
    return ret


def skip_finished(launcher: Any, job_overrides: Sequence[Sequence[str]]) -> dict[int, JobReturn]:
    """The jobs of a relaunched sweep whose runs already finished, each with its summary, found
    before anything is submitted: a finished run costs no Slurm job and no worker start-up.

    The check is the one the job itself makes (:func:`normbench.training.checkpoints.finished_summary`); a
    run it cannot decide here is launched, and the job decides.
    """
    from normbench.cli.hydra_app import skipped_line
    from normbench.training.checkpoints import finished_summary

    done = {}
    for i, overrides in enumerate(job_overrides):
        try:
            cfg, run_dir = _run_dir(launcher, overrides)
            summary = finished_summary(cfg, run_dir)
        except Exception:
            continue
        if summary is not None:
            print(skipped_line(summary, run_dir), flush=True)
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            ret.return_value = summary
            done[i] = ret
    return done


def _node_sizes(partition: str | None) -> list[tuple[int, int, int]] | None:
    """``(CPUs, memory in MB, GPUs)`` of each node of ``partition`` (or the default partition),
    as ``sinfo`` reports them; None when sinfo cannot tell (not installed, no answer)."""
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G", *(["-p", partition] if partition else [])],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    nodes = []
    for line in out.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4 or (partition is None and not fields[0].endswith("*")):
            continue  # without -p, sinfo lists every partition: the default one is marked *
        number = [int(m.group()) if (m := re.match(r"\d+", f)) else 0 for f in fields[1:3]]
        gpus = sum(int(n) for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", fields[3]))
        nodes.append((number[0], number[1], gpus))
    return nodes


def check_resources(params: dict) -> None:
    """Refuse a Slurm sweep whose jobs ask for more than any node of the partition has: Slurm
    would keep them pending forever without a word. Nothing is checked where sinfo cannot tell."""
    partition = params.get("partition")
    nodes = _node_sizes(partition)
    if nodes is None:
        return
    where = f"partition {partition!r}" if partition else "the default partition"
    if not nodes:
        raise ConfigError(f"hydra.launcher.partition={partition} names no partition with nodes (sinfo lists none); "
                          "see them with `sinfo -s`")
    asks = [("cpus_per_task", (params.get("cpus_per_task") or 1) * (params.get("tasks_per_node") or 1), 0, "CPUs"),
            ("mem_gb", (params.get("mem_gb") or 0) * 1024, 1, "MB of memory"),
            ("gpus_per_node", params.get("gpus_per_node") or 0, 2, "GPUs")]
    for key, want, column, unit in asks:
        most = max(node[column] for node in nodes)
        if want > most:
            raise ConfigError(f"hydra.launcher.{key}={params.get(key)} asks for more than any node of {where} has "
                              f"({most} {unit} at most), so the jobs would wait forever; ask for less, or choose "
                              "another partition with hydra.launcher.partition=NAME")
