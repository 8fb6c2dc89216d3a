"""What `normbench list` shows: every norm, model, dataset and optimizer with one line each.

The lines are the config groups' own ``description`` keys: plain data, read without importing torch (or pandas), so `normbench list` answers at
once. The packaged options' keys (:func:`option_keys`) also tell the config check which keys a
component reads.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).parents[1] / "configs"
#: the section of `normbench list` -> its config group
GROUPS = {"norms": "norm", "models": "model", "datasets": "dataset", "optimizers": "optim",
          "experiments": "experiment", "debug": "debug"}


def option_files(group: str, roots) -> dict[str, Path]:
    """The options of config group ``group``: its YAML files in the config directories ``roots``
    (a later directory's file of the same name wins, as on Hydra's search path)."""
    return {path.stem: path for root in roots for path in Path(root, group).glob("*.yaml")}


@functools.cache
def option_keys(group: str, name: str) -> frozenset[str] | None:
    """The keys of normbench's own option ``group/name.yaml`` (those its defaults list places
    ``_here_`` included: ``norm/population``, ``optim/common``), i.e. what that component reads;
    None for an option normbench does not ship (a plugin's)."""
    path = CONFIG_DIR / group / f"{name}.yaml"
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    keys = set(cfg) - {"defaults"}
    for entry in cfg.get("defaults", []):
        for where, option in (entry.items() if isinstance(entry, Mapping) else ()):
            if where.endswith("@_here_"):
                keys |= set(OmegaConf.load(CONFIG_DIR / group / where.split("@")[0] / f"{option}.yaml"))
    return frozenset(keys)


def group_options(group: str, roots=()) -> dict[str, str]:
    """Each option of config group ``group`` (in normbench's config directory and ``roots``, the
    search path's other directories) and its one-line description."""
    paths = option_files(group, (CONFIG_DIR, *roots))
    return {name: _description(paths[name]) for name in sorted(paths)}


def _description(path: Path) -> str:
    """An option's ``description`` key, or for an overlay of the global config (``# @package
    _global_``, where a key would land in every run's config) its first comment line."""
    text = path.read_text(encoding="utf-8")
    overlay = "@package _global_" in text.split("\n", 1)[0]
    comments = [line.lstrip("# ").strip() for line in text.splitlines()[1:] if overlay and line.startswith("#")]
    return comments[0] if comments else str(OmegaConf.create(text).get("description", "") or "")


def catalog(roots=()) -> dict[str, dict[str, str]]:
    """The config groups' sections of `normbench list`; ``roots``: config directories added to the
    search path (the claims' sections come from their specs: :func:`normbench.claims.experiments.catalog`)."""
    return {section: group_options(group, roots) for section, group in GROUPS.items()}
