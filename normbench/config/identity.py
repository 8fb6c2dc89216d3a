"""What a run computes, as plain data: its resolved config, and the keys that do not change it.

``config.yaml``'s one list (``hydra.job.config.override_dirname.exclude_keys``) names the keys that
do not change what a run computes (display, device, compilation, where the data lives, the
external logger). They are left out of run directory names, may change when a run resumes, and
are not settings in reports. A run may also resume under another step budget (to extend it).

Nothing here imports torch.
"""

from __future__ import annotations

import functools

from omegaconf import DictConfig, OmegaConf

from normbench.config.catalog import CONFIG_DIR

#: The keys of the step budget: a finished run may be extended.
BUDGET_KEYS = ("trainer.max_steps", "trainer.epochs")


@functools.cache
def _nuisance_keys() -> tuple[str, ...]:
    cfg = OmegaConf.load(CONFIG_DIR / "config.yaml")
    return tuple(cfg.hydra.job.config.override_dirname.exclude_keys)


def nuisance_keys() -> list[str]:
    """The keys that do not change what a run computes (see the module's doc)."""
    return list(_nuisance_keys())


def resumable_keys() -> tuple[str, ...]:
    """The keys a run may resume under other values of: the nuisance keys and the step budget."""
    return (*_nuisance_keys(), *BUDGET_KEYS)


def config_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain data, without Hydra's own node."""
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("hydra", None)
    return data


def without(data: dict, dotted_keys) -> dict:
    """A copy of ``data`` without ``dotted_keys`` (``trainer.progress``, ``objective``)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for key in dotted_keys:
        node, *rest = key.split(".")
        if rest and isinstance(data.get(node), dict):
            data[node].pop(rest[0], None)
        elif not rest:
            data.pop(node, None)
    return data


def same_run(recorded: dict, config: dict) -> bool:
    """Whether two resolved configs compute the same run, up to :func:`resumable_keys`."""
    keys = resumable_keys()
    return without(recorded, keys) == without(config, keys)


def differences(recorded: dict, config: dict, limit: int = 3) -> list[str]:
    """The first ``limit`` keys where two resolved configs compute different runs, as
    ``key: <there> there, <here> now`` (up to :func:`resumable_keys`)."""
    keys = resumable_keys()
    a, b = without(recorded, keys), without(config, keys)
    out: list[str] = []

    def walk(x, y, prefix: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                walk(x.get(k, "(absent)"), y.get(k, "(absent)"), f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix[:-1]}: {x} there, {y} now")

    walk(a, b, "")
    return out
