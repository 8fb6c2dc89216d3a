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


# -- packs and stale directories: what every launcher does before it launches -----------------


def _job_config(launcher: Any, overrides: Sequence[str]) -> tuple[dict, Path]:
    """The job's resolved config (plain data, without Hydra's node) and its absolute run directory."""
    from hydra.core.hydra_config import HydraConfig

    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    HydraConfig.instance().set_config(sweep_config)  # for ${hydra:...} in the job's own keys
    run_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    data = OmegaConf.to_container(sweep_config, resolve=True)
    data.pop("hydra", None)
    return data, run_dir.absolute()


def _save_hydra_files(launcher: Any, overrides: Sequence[str]) -> None:
    """A pack member's ``.hydra/`` (config, hydra, overrides), as Hydra writes it for a job it runs."""
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    subdir = sweep_config.hydra.output_subdir
    if subdir is None:
        return
    out = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir) / str(subdir)
    out.mkdir(parents=True, exist_ok=True)
    task = OmegaConf.to_container(sweep_config, resolve=False)
    hydra_node = task.pop("hydra", None)
    for name, node in (("config.yaml", task), ("hydra.yaml", {"hydra": hydra_node}),
                       ("overrides.yaml", list(overrides))):
        records.atomic_write_text(out / name, OmegaConf.to_yaml(OmegaConf.create(node)))


def refuse_stale(launcher: Any, job_overrides: Sequence[Sequence[str]]) -> None:
    """Refuse a sweep whose run directories hold runs of another config (the user edited a config
    file or an experiment overlay: the sweep's directory is named from the command line only, so
    it would otherwise count the old runs as its own). One line, before anything runs."""
    from normbench.config.identity import differences

    stale = []
    for overrides in job_overrides:
        try:
            config, run_dir = _job_config(launcher, overrides)
            recorded = records.read_config(run_dir)
        except Exception:  # unreadable: the job itself says why
            continue
        found = differences(recorded, config) if recorded else []
        if found:
            stale.append((run_dir, found))
    if stale:
        run_dir, found = stale[0]
        more = f", as do {len(stale) - 1} more of this sweep's run directories" if len(stale) > 1 else ""
        raise ConfigError(f"{run_dir} holds a run with another config ({'; '.join(found)}){more}; the sweep's "
                          "directory is named from the command line only, so an edited config file lands on the "
                          "old runs: move them away, or choose another directory with hydra.sweep.dir=DIR")


def plan_packs(launcher: Any, job_overrides: Sequence[Sequence[str]]) -> list[list[int]]:
    """The jobs as packs: lists of indices into ``job_overrides`` whose configs differ only in
    ``seed`` and ask ``trainer.pack=seed``, at most ``trainer.pack_size`` each, in job order; every
    other job is a pack of one."""
    import json

    from normbench.config.identity import nuisance_keys, without

    groups: dict[str, list[int]] = {}
    order: list[str] = []
    for i, overrides in enumerate(job_overrides):
        key = f"alone-{i}"
        try:
            config, _ = _job_config(launcher, overrides)
            trainer = config.get("trainer") or {}
            if trainer.get("pack") == "seed":
                key = json.dumps(without(config, [*nuisance_keys(), "seed"]), sort_keys=True, default=str)
                size = int(trainer.get("pack_size") or 1)
                while len(groups.get(key, [])) >= size:
                    key += "+"
        except Exception:
            pass
        if key not in groups:
            groups[key], order = [], [*order, key]
        groups[key].append(i)
    return [groups[k] for k in order]


class PackTask:
    """The task function a launcher runs for each job: a pack's lead job trains its whole pack
    (:func:`normbench.cli.hydra_app.run_pack`), every other job runs the task itself.

    ``packs`` maps a lead's run directory to its other members, ``(config, run_dir)`` each;
    picklable, so it travels to joblib workers and Slurm jobs with the launcher.
    """

    def __init__(self, task_function: Any, packs: dict[str, list[tuple[dict, str]]]):
        self.task_function, self.packs = task_function, packs

    def __call__(self, cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig

        from normbench.cli.hydra_app import run_pack

        members = self.packs.get(str(Path(HydraConfig.get().runtime.output_dir).absolute()))
        if not members:
            return self.task_function(cfg)
        return run_pack(cfg, members)


def prepare_launch(launcher: Any, job_overrides: Sequence[Sequence[str]]):
    """What a launcher does first: refuse stale directories, find finished runs, plan the packs.

    Returns ``(done, leads, packs)``: the JobReturns of finished runs by index, the indices of the
    jobs to launch, and each lead's pack (its members' indices, the lead first). The launcher's
    ``task_function`` is wrapped in a :class:`PackTask` for the launch (:func:`finish_launch`
    restores it).
    """
    refuse_stale(launcher, job_overrides)
    done = skip_finished(launcher, job_overrides)
    todo = [i for i in range(len(job_overrides)) if i not in done]
    packs = [[todo[k] for k in pack] for pack in plan_packs(launcher, [job_overrides[i] for i in todo])]
    members: dict[str, list[tuple[dict, str]]] = {}
    for pack in packs:
        if len(pack) > 1:
            configs = [_job_config(launcher, job_overrides[i]) for i in pack]
            members[str(configs[0][1])] = [(config, str(run_dir)) for config, run_dir in configs[1:]]
            for i in pack[1:]:  # the lead's job writes its own
                _save_hydra_files(launcher, job_overrides[i])
            seeds = ",".join(str(c.get("seed")) for c, _ in configs)
            print(f"normbench: packed seeds {seeds} into one job ({' '.join(job_overrides[pack[0]])})", flush=True)
    launcher.task_function = PackTask(getattr(launcher.task_function, "task_function", launcher.task_function),
                                      members)
    return done, [p[0] for p in packs], {p[0]: p for p in packs}


def member_returns(launcher: Any, job_overrides: Sequence[Sequence[str]], pack: list[int],
                   lead_result: Any) -> dict[int, JobReturn]:
    """The JobReturns of a pack's members other than its lead, from their run records (a member
    whose job ended without one is recorded as failed with the lead's outcome)."""
    out = {}
    for i in pack[1:]:
        try:
            _, run_dir = _job_config(launcher, job_overrides[i])
            summary = records.read_summary(run_dir)
        except Exception:
            summary = None
        if summary is None or summary.get("status") == "running":
            record_lost_job(launcher, job_overrides[i], f"its pack's job ({' '.join(job_overrides[pack[0]])}) "
                                                        f"ended without its result: {lead_result!r}"[:2000])
        ret = JobReturn(overrides=list(job_overrides[i]), status=JobStatus.COMPLETED)
        ret.return_value = summary
        out[i] = ret
    return out
