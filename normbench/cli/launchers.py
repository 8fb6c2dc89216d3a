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

import copy
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


# -- one launch: stale directories, finished runs, packs, and every job's outcome -------------


class Launch:
    """One launch of a sweep's jobs by a normbench launcher, each job's config composed once.

    What every launcher does before it launches: refuse directories that hold runs of another
    config, find finished runs, and plan the packs; the launcher's ``task_function`` becomes a
    :class:`PackTask`. Then :meth:`outcome` turns each launched job's result into the JobReturns
    of its whole pack. (Hydra composes a job's config in about 0.3 s; composing it again at each
    of these steps was most of a small sweep's launch.)

    ``done``: the JobReturns of finished runs by job index; ``leads``: the jobs to launch, one
    per pack; ``packs``: each lead's pack (its members' indices, the lead first).
    """

    def __init__(self, launcher: Any, job_overrides: Sequence[Sequence[str]]):
        self.launcher, self.overrides = launcher, [list(o) for o in job_overrides]
        self._jobs: dict[int, tuple[DictConfig, dict, Path]] = {}
        self.refuse_stale()
        self.done = self.skip_finished()
        todo = [i for i in range(len(self.overrides)) if i not in self.done]
        self.packs = {pack[0]: pack for pack in self.plan_packs(todo)}
        self.leads = list(self.packs)
        members: dict[str, list[tuple[dict, str]]] = {}
        for pack in self.packs.values():
            if len(pack) > 1:
                members[str(self.run_dir(pack[0]))] = [(self.config(i), str(self.run_dir(i))) for i in pack[1:]]
                for i in pack[1:]:  # the lead's job writes its own
                    self.save_hydra_files(i)
                seeds = ",".join(str(self.config(i).get("seed")) for i in pack)
                print(f"normbench: packed seeds {seeds} into one job ({' '.join(self.overrides[pack[0]])})", flush=True)
        launcher.task_function = PackTask(getattr(launcher.task_function, "task_function", launcher.task_function),
                                          members)

    def _job(self, i: int) -> tuple[DictConfig, dict, Path]:
        if i not in self._jobs:
            from hydra.core.hydra_config import HydraConfig

            sweep_config = self.launcher.hydra_context.config_loader.load_sweep_config(self.launcher.config,
                                                                                       self.overrides[i])
            HydraConfig.instance().set_config(sweep_config)  # for ${hydra:...} in the job's own keys
            run_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
            data = OmegaConf.to_container(sweep_config, resolve=True)
            data.pop("hydra", None)
            self._jobs[i] = (sweep_config, data, run_dir.absolute())
        return self._jobs[i]

    def sweep_config(self, i: int) -> DictConfig:
        """Job ``i``'s whole config, Hydra's node included (a copy: launching it changes it)."""
        sweep_config = copy.deepcopy(self._job(i)[0])
        OmegaConf.set_readonly(sweep_config.hydra, None)  # HydraConfig.set_config made it read-only
        return sweep_config

    def config(self, i: int) -> dict:
        """Job ``i``'s resolved config as plain data, without Hydra's node."""
        return self._job(i)[1]

    def run_dir(self, i: int) -> Path:
        """Job ``i``'s absolute run directory."""
        return self._job(i)[2]

    def refuse_stale(self) -> None:
        """Refuse a sweep whose run directories hold runs of another config (the user edited a
        config file or an experiment overlay: the sweep's directory is named from the command
        line only, so it would otherwise count the old runs as its own). One line, before
        anything runs."""
        from normbench.config.identity import differences

        stale = []
        for i in range(len(self.overrides)):
            try:
                recorded = records.read_config(self.run_dir(i))
            except Exception:  # unreadable: the job itself says why
                continue
            found = differences(recorded, self.config(i)) if recorded else []
            if found:
                stale.append((self.run_dir(i), found))
        if stale:
            run_dir, found = stale[0]
            more = f", as do {len(stale) - 1} more of this sweep's run directories" if len(stale) > 1 else ""
            raise ConfigError(f"{run_dir} holds a run with another config ({'; '.join(found)}){more}; the sweep's "
                              "directory is named from the command line only, so an edited config file lands on "
                              "the old runs: move them away, or choose another directory with hydra.sweep.dir=DIR")

    def skip_finished(self) -> dict[int, JobReturn]:
        """The jobs of a relaunched sweep whose runs already finished, each with its summary, found
        before anything is submitted: a finished run costs no Slurm job and no worker start-up.

        The check is the one the job itself makes
        (:func:`normbench.training.checkpoints.finished_summary`); a run it cannot decide here is
        launched, and the job decides.
        """
        from normbench.cli.hydra_app import skipped_line
        from normbench.training.checkpoints import finished_summary

        done = {}
        for i, overrides in enumerate(self.overrides):
            try:
                summary = finished_summary(OmegaConf.create(self.config(i)), self.run_dir(i))
            except Exception:
                continue
            if summary is not None:
                print(skipped_line(summary, self.run_dir(i)), flush=True)
                done[i] = _returned(overrides, summary)
        return done

    def plan_packs(self, todo: Sequence[int]) -> list[list[int]]:
        """The jobs ``todo`` as packs: lists of job indices whose configs differ only in ``seed``
        and ask ``trainer.pack=seed``, at most ``trainer.pack_size`` each, in job order; every
        other job is a pack of one."""
        import json

        from normbench.config.identity import nuisance_keys, without

        groups: dict[str, list[int]] = {}
        for i in todo:
            key = f"alone-{i}"
            try:
                config = self.config(i)
                trainer = config.get("trainer") or {}
                if trainer.get("pack") == "seed":
                    key = json.dumps(without(config, [*nuisance_keys(), "seed"]), sort_keys=True, default=str)
                    size = int(trainer.get("pack_size") or 1)
                    while len(groups.get(key, [])) >= size:
                        key += "+"
            except Exception:
                pass
            groups.setdefault(key, []).append(i)
        return list(groups.values())

    def save_hydra_files(self, i: int) -> None:
        """A pack member's ``.hydra/`` (config, hydra, overrides), as Hydra writes it for a job it runs."""
        sweep_config = self._job(i)[0]
        subdir = sweep_config.hydra.output_subdir
        if subdir is None:
            return
        out = self.run_dir(i) / str(subdir)
        out.mkdir(parents=True, exist_ok=True)
        task = OmegaConf.to_container(sweep_config, resolve=False)
        hydra_node = task.pop("hydra", None)
        for name, node in (("config.yaml", task), ("hydra.yaml", {"hydra": hydra_node}),
                           ("overrides.yaml", self.overrides[i])):
            records.atomic_write_text(out / name, OmegaConf.to_yaml(OmegaConf.create(node)))

    def outcome(self, lead: int, result: Any) -> dict[int, JobReturn]:
        """The JobReturns of ``lead``'s whole pack from its job's result: never raising in Hydra's
        sweeper, since failures are in the run records. A job that failed outside normbench's own
        error handling is recorded as failed; so is a member whose pack's job ended without its
        result."""
        out = {lead: self._isolated(lead, result)}
        for i in self.packs[lead][1:]:
            try:
                summary = records.read_summary(self.run_dir(i))
            except Exception:
                summary = None
            if summary is None or summary.get("status") == "running":
                self.record_lost_job(i, f"its pack's job ({' '.join(self.overrides[lead])}) "
                                        f"ended without its result: {result!r}"[:2000])
            out[i] = _returned(self.overrides[i], summary)
        return out

    def _isolated(self, i: int, result: Any) -> JobReturn:
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
        print(f"normbench: error: job {' '.join(self.overrides[i])} failed: {message}", file=sys.stderr, flush=True)
        self.record_lost_job(i, message)
        return _returned(self.overrides[i], None)

    def record_lost_job(self, i: int, message: str) -> None:
        """Record a job that ended without a result as a failed run (unless its record says it finished)."""
        try:
            run_dir = self.run_dir(i)
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
            records.record_failure(run_dir, self.config(i), message)
        except Exception as exc:  # the record is best effort; the sweep must still end
            log.warning("normbench: could not record the failed job %s: %s", " ".join(self.overrides[i]), exc)


def _returned(overrides: Sequence[str], value: Any) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = value
    return ret


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
