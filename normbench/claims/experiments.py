"""The papers' comparisons as experiment configs, and the Hydra sweeps they turn into.

A claim's spec (``normbench/claims/specs/<claim>.yaml``) holds, for each scale
(``small``: 2 CPU cores, minutes; ``full``: the paper's setup, a GPU cluster), the fixed
overrides and one or more sweeps (swept keys and their values)::

    description: BN vs GN over batch sizes 32 to 2 (Wu & He 2018, Figure 1)
    report: {x: batch_size, metric: final_test_error}   # optional, for `normbench report`
    verdict: {}                                         # parameters of the claim's verdict
    scales:
      small:
        overrides: [model.strides=[2,2,2], optim.lr_scaling=linear, trainer.epochs=10]
        sweeps:
          - {norm: [batch, group], batch_size: [32, 8, 2]}
      full:
        overrides: [dataset=imagenet, model=resnet, ...]
        sweeps:
          - {norm: [batch, group], batch_size: [32, 16, 8, 4, 2]}

Each sweep becomes one ``normbench run -m`` (a Hydra multirun, so any launcher works) with
``seed=0,...,N-1`` added, into ``<runs>/<claim>/<scale>/sweep<i>-<hash of the fixed
overrides>``. The fixed overrides are left out of the run directories' names (only the swept
keys and the seed name them), so the same command relaunched finds its finished runs and skips
them, and an edited setup gets new directories.

Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from normbench.errors import ConfigError

# The claims' specs: outside Hydra's config search path, so ``+experiment=`` cannot pick one up.
EXPERIMENT_DIR = Path(__file__).parent / "specs"
SCALES = ("small", "full")
DEFAULT_RUNS_ROOT = "multirun/reproduce"


@dataclass
class Sweep:
    """One ``normbench run -m`` of an experiment: where it writes and its arguments."""

    sweep_dir: Path
    args: list[str]       # everything after ``normbench run -m``
    fixed: list[str]      # the experiment's fixed overrides (part of ``args``)
    swept: list[str]      # the swept ``key=v1,v2`` overrides, seed included (part of ``args``)


def catalog() -> dict[str, dict[str, str]]:
    """The claims' section of `normbench list`, from their spec files (the experiments' section
    lists the user's own overlays, `experiment=NAME`: :mod:`normbench.config.catalog`)."""
    specs = {name: load_experiment(name) for name in experiment_names()}
    return {"claims": {name: f"{spec.get('title', '')} ({spec.get('paper', '')})" for name, spec in specs.items()}}


def experiment_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def load_experiment(name: str) -> dict[str, Any]:
    path = EXPERIMENT_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown experiment '{name}'; choose one of: {', '.join(experiment_names())}")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    for scale in SCALES:
        spec = data.get("scales", {}).get(scale)
        if not spec or not spec.get("sweeps"):
            raise ConfigError(f"{path}: scales.{scale} needs 'overrides' and at least one entry in 'sweeps'")
    return data


def format_value(value: Any) -> str:
    """A value as a Hydra override writes it (``true``, ``0.1``, ``[32,64]``, ``null``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def _digest(fixed: list[str]) -> str:
    """A short hash of the fixed overrides: editing an experiment's setup starts new run
    directories instead of colliding with runs of the old setup (runs are named by the swept
    keys only)."""
    return hashlib.sha1("\n".join(fixed).encode()).hexdigest()[:8]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def sweeps(name: str, scale: str = "small", seeds: int | Sequence[int] = 3, runs_root: str | Path = DEFAULT_RUNS_ROOT,
           extra: list[str] | tuple[str, ...] = (), prefix: str = "sweep") -> list[Sweep]:
    """The multiruns that reproduce experiment ``name`` at ``scale`` with ``seeds`` seeds
    (seed=0..N-1, or the seeds listed: a pilot's), in ``<runs_root>/<name>/<scale>/<prefix><i>-<hash>``.

    ``extra`` overrides (launcher choice, a smaller budget for a smoke test, ...) are appended
    to every sweep; a key given there replaces the experiment's fixed value for it.
    """
    if scale not in SCALES:
        raise ConfigError(f"--scale {scale!r} is not one of: {', '.join(SCALES)}")
    listed = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if isinstance(seeds, int) and seeds < 1 or not listed:
        raise ConfigError(f"--seeds {seeds} must be a positive integer")
    from normbench.config.identity import nuisance_keys

    spec = load_experiment(name)["scales"][scale]
    extra = list(extra)
    extra_keys = {_key(o) for o in extra if "=" in o and not o.startswith("hydra")}
    fixed = [str(o) for o in spec.get("overrides") or [] if _key(str(o)) not in extra_keys]
    exclude = list(dict.fromkeys([*nuisance_keys(), *(_key(o) for o in fixed)]))
    out = []
    for i, sweep in enumerate(spec["sweeps"]):
        swept = [f"{key}={','.join(format_value(v) for v in values)}" for key, values in sweep.items()
                 if key not in extra_keys]
        swept.append(f"seed={','.join(str(s) for s in listed)}")
        sweep_dir = Path(runs_root) / name / scale / f"{prefix}{i}-{_digest(fixed)}"
        quiet = [] if "trainer.progress" in extra_keys else ["trainer.progress=none"]
        # The seeds train as one pack, unless the scale says packing is slower for its model.
        packed = [] if "trainer.pack" in extra_keys else [f"trainer.pack={spec.get('pack', 'seed')}"]
        args = [*fixed, *swept, *extra, *quiet, *packed,
                f"hydra.sweep.dir={sweep_dir}",
                f"hydra.job.config.override_dirname.exclude_keys=[{','.join(exclude)}]",
                "hydra.callbacks.report.enabled=false"]
        out.append(Sweep(sweep_dir, args, fixed, swept))
    return out
