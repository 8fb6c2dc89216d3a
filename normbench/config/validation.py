"""The config checked before anything is built: every key against its rule in
:mod:`normbench.config.schema`, and no key that nothing reads (without importing torch, so that a bad
value on the command line answers at once: :func:`check_rules`); then what needs the registries:
the run's plugins, a model's options against its class, and the norm's own check against the batch
size (:func:`validate`).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from normbench.config import schema
from normbench.errors import ConfigError


def import_plugins(modules) -> None:
    """Import the user's ``plugins`` modules (in this process: every job of a sweep does), which
    register their norms, models and datasets with normbench's registries."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(str(module))
        except ImportError as exc:
            raise ConfigError(f"plugins: cannot import {module!r} ({exc}); put its directory on PYTHONPATH or "
                              "pip install it") from None


def check_rules(cfg: DictConfig) -> None:
    """Check ``cfg`` against :mod:`normbench.config.schema`: the run's keys, then each config group's
    (no torch needed); raise :class:`ConfigError` naming every bad value, a line each."""
    from normbench.config.rules import problems

    found = []
    for key, rule, absent in schema.RUN_RULES:
        value = OmegaConf.select(cfg, key, default=absent)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if value is schema.ABSENT:
            found.append(f"{key} is missing from the config")
            continue
        problem = rule(value)
        if problem:
            found.append(f"{key}={value} {problem}")
    for group in ("trainer", *schema.GROUP_RULES):
        section = cfg.get(group)
        if isinstance(section, DictConfig):
            values = OmegaConf.to_container(section, resolve=True)
            rules = schema.rules_for(group, values.get("name"))
            if group != "trainer":  # its keys are among the run's, checked above
                found += problems(group, values, rules)
            found += _unknown_keys(group, values, rules)
    if found:
        raise ConfigError("\n".join(found))


def _unknown_keys(group: str, values: dict, rules: dict) -> list[str]:
    """A key that nothing reads, added with ``+`` (``+trainer.max_step=5``, ``+dataset.foo=1``,
    ``+logger.project=x`` with ``logger=none``): a key that the trainer's rules or the packaged
    component's own YAML lack, as one line (empty when there is none). A plugin's component reads
    keys of its own."""
    import difflib

    from normbench.config.catalog import option_keys

    name = values.get("name")
    reads = set(rules) if group == "trainer" else option_keys(group, str(name))
    if reads is None:
        return []
    unknown = sorted(set(values) - reads)
    if not unknown:
        return []
    known = [k for k in values if k in reads and k not in ("name", "description", "label")]
    close = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.75)
    hint = f"did you mean '{close[0]}'? " if close else ""
    where = group if group == "trainer" else f"{group}={name}"
    return [f"{where} takes no option {', '.join(map(repr, unknown))}; {hint}its options: {', '.join(known) or 'none'}"]
