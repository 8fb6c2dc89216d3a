"""Sweep directories and dry runs, worked out from the command line before Hydra starts.

A sweep's directory is derived from its overrides, without a timestamp, so that running the same
sweep again finds every run's directory: finished runs are skipped and unfinished ones resume
from their checkpoint. ``multirun/<name>``, where the name is the sweep's own overrides, sorted
and joined (``multirun/batch_size=4,32_norm=batch,group_seed=0,1``); launcher, logger and
display settings (``hydra.*``, ``logger``, ``trainer.progress``, ...) are left out, so the same
sweep on Slurm or locally lands in the same place. A long or unusual name becomes a short
prefix plus a stable hash. ``hydra.sweep.dir=DIR`` chooses the directory yourself (with a
timestamp, if you like: ``hydra.sweep.dir='multirun/${now:%Y-%m-%d_%H-%M-%S}'``).

Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

from normbench import records
from normbench.config.identity import nuisance_keys

SWEEPS_ROOT = "multirun"
# No shell metacharacters: a name with [...] is a glob that zsh and bash's failglob refuse unquoted.
_SAFE = re.compile(r"^[A-Za-z0-9._,=+:@\-]+$")
_MAX_NAME = 100


def parse(overrides) -> list:
    """Hydra's :class:`Override` of each ``KEY=VALUE`` string."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def _name_relevant(override, exclude: list[str]) -> bool:
    key = override.key_or_group.lstrip("+~")
    return not (override.is_hydra_override() or key in exclude or key == "logger" or key.startswith("logger."))


def sweep_name(parsed) -> str:
    """The sweep directory's name for these parsed command-line overrides (see the module's doc)."""
    exclude = nuisance_keys()
    lines = sorted(o.input_line for o in parsed if _name_relevant(o, exclude))
    return short_name("_".join(lines), "\n".join(lines)) if lines else "default"


def short_name(name: str, key: str | None = None) -> str:
    """``name``, or when it is long or unusual a short prefix plus a stable hash of ``key`` (default:
    the name). Run directories' names go through it too (``${normbench_short:...}`` in config.yaml):
    a sweep with many fixed overrides would otherwise name its runs beyond the file system's
    255-byte limit."""
    if len(name) <= _MAX_NAME and _SAFE.match(name):
        return name
    digest = hashlib.sha1((name if key is None else key).encode()).hexdigest()[:10]
    prefix = re.sub(r"[^A-Za-z0-9._,=+\-]+", "-", name)[:40].strip("-_")
    return f"{prefix}-{digest}" if prefix else f"sweep-{digest}"


def user_sweep_dir(parsed) -> str | None:
    """The ``hydra.sweep.dir=`` value given on the command line, if any."""
    for override in parsed:
        if override.key_or_group == "hydra.sweep.dir":
            return override.input_line.split("=", 1)[1]
    return None


def default_sweep_dir(parsed) -> str:
    return f"{SWEEPS_ROOT}/{sweep_name(parsed)}"


def settings(override) -> list[str]:
    """One override per value that ``override`` gives its key, as Hydra's basic sweeper writes them
    (``norm=batch,group`` -> ``norm=batch``, ``norm=group``)."""
    if override.is_sweep_override() and not (override.is_choice_sweep() or override.is_range_sweep()):
        raise ValueError(f"{override.input_line} draws from an interval, which only a sweeper such as "
                         "hydra/sweeper=optuna samples; --dry-run lists swept values (a,b,c or range(...))")
    values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [
        override.get_value_element_as_str()]
    return [f"{override.get_key_element()}={value}" for value in values]


def expand(parsed) -> list[list[str]]:
    """Every job of the sweep, as the overrides Hydra's basic sweeper gives each job (the product
    of the swept values, in the order given). ``parsed``: the overrides, bound to a config loader
    where one is open (``glob(...)`` needs it to list a group's options)."""
    choices = [settings(o) for o in parsed if not o.is_hydra_override()]
    return [list(job) for job in itertools.product(*choices)]


def job_subdir(job: list[str], exclude: list[str]) -> str:
    """The run's subdirectory, as ``hydra.job.override_dirname`` names it."""
    lines = sorted(o.input_line for o in parse(job) if o.key_or_group not in exclude)
    return short_name(",".join(lines))


def describe(run_dir: Path) -> str:
    """What relaunching would do with this run directory."""
    try:
        summary = records.read_summary(run_dir)
    except (OSError, ValueError):
        return "new"
    status = summary.get("status")
    if status in ("completed", "diverged"):
        return f"{status}: skipped"
    verb = "retry" if status == "failed" else "resume"
    if (run_dir / records.CHECKPOINT_FILE).exists():
        return f"{status}: {verb} from step {summary.get('steps', 0)}"
    return f"{status}: {verb} from step 0"


def _packs(parsed, jobs: list[list[str]]) -> dict[int, int]:
    """Which pack each job trains in under ``trainer.pack=seed`` on the command line (jobs whose
    overrides differ only in ``seed``, at most ``trainer.pack_size`` each; numbered from 1); {}
    without packing. The launcher decides from the composed configs, so a pack the command line
    does not show (set in a config file) is left out here."""
    given = {o.key_or_group: o.get_value_element_as_str() for o in parsed
             if not o.is_sweep_override() and not o.is_hydra_override()}
    if given.get("trainer.pack") != "seed":
        return {}
    size = int(given.get("trainer.pack_size", 16))
    groups: dict[tuple, list[int]] = {}
    for num, job in enumerate(jobs):
        key = tuple(o for o in job if not o.startswith("seed="))
        while len(groups.get(key, [])) >= size:
            key = (*key, "+")
        groups.setdefault(key, []).append(num)
    numbered = [members for members in groups.values() if len(members) > 1]
    return {num: k for k, members in enumerate(numbered, 1) for num in members}


def dry_run(sweep_dir: str, parsed) -> list[str]:
    """The lines of ``normbench run -m ... --dry-run``: the jobs a sweep into ``sweep_dir`` would
    launch (``parsed``: as for :func:`expand`)."""
    sweep_dir = Path(sweep_dir.strip("'\""))
    exclude = nuisance_keys()
    jobs = expand(parsed)
    packs = _packs(parsed, jobs)
    rows = []
    counts: dict[str, int] = {}
    for num, job in enumerate(jobs):
        state = describe(sweep_dir / job_subdir(job, exclude)) if "${" not in str(sweep_dir) else "new"
        kind = state.split(":")[-1].strip().split(" ")[0]
        counts[kind] = counts.get(kind, 0) + 1
        if num in packs:
            state += f" (pack {packs[num]})"
        rows.append((f"#{num}", " ".join(job) or "(defaults)", state))
    width = max(len(r[1]) for r in rows)
    tally = ", ".join(f"{n} {k}" for k, n in counts.items())
    packed = f"; {len(set(packs.values()))} packs of seeds (trainer.pack=seed)" if packs else ""
    lines = [f"dry run: {len(jobs)} job{'s' if len(jobs) != 1 else ''} in {sweep_dir} ({tally}){packed}; "
             "nothing launched"]
    lines += [f"  {num:>4}  {job:<{width}}  {state}" for num, job, state in rows]
    return lines
