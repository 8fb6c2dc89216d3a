"""The command line's checks of its own input, before Hydra starts: config group choices (user
config directories and search paths included), launcher plugins, and the one-line messages
that Hydra's and OmegaConf's exceptions become. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path


def check_group_choices(args: list[str]) -> None:
    """Reject an unknown config-group option (``norm=grup``) in one line, sweeps included.

    Hydra would say so too, over several lines and only when it reaches the job that uses it;
    checking every swept value up front means a sweep never starts with a bad one in it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from normbench.catalog import CONFIG_DIR, option_files

    try:
        parsed = OverridesParser.create().parse_overrides(overrides(args))
    except (SystemExit, Exception):
        return  # Hydra reports malformed arguments itself
    roots = [CONFIG_DIR, *config_dirs(args), *search_path(parsed)]
    for override in parsed:
        group = override.key_or_group
        if group.lstrip("+") == "experiment" and not any((root / "experiment").is_dir() for root in roots):
            name = override.value()
            raise UsageError(f"{override.input_line}: a claim's experiment is not a Hydra config group; run it with "
                              f"`normbench reproduce {name}` (`normbench reproduce {name} --dry-run` prints the "
                              "`normbench run -m` commands it runs)")
        group_dirs = [root / group for root in roots if (root / group).is_dir()]
        if override.is_delete() or group.startswith("hydra") or not group_dirs:
            continue
        options = sorted(option_files(group, roots))
        try:
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:
            continue
        for value in values:
            if str(value) not in options:
                raise UsageError(f"unknown {group} '{value}'; choose one of: {', '.join(options)}")


def config_dirs(args: list[str]) -> list[Path]:
    """The directories given with Hydra's ``--config-dir DIR`` (``-cd DIR``, ``--config-dir=DIR``)."""
    dirs = []
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(Path(args[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def search_path(parsed) -> list[Path]:
    """The config directories added with ``hydra.searchpath=[file://DIR,pkg://module]`` (a package's
    every directory: a namespace package, one without ``__init__.py``, may have several)."""
    import importlib.util

    roots = []
    for override in parsed:
        if override.key_or_group != "hydra.searchpath" or not isinstance(override.value(), list):
            continue
        for entry in override.value():
            scheme, _, where = str(entry).partition("://")
            if scheme == "file":
                roots.append(Path(where))
                continue
            try:
                spec = importlib.util.find_spec(where.replace("/", "."))
            except (ImportError, ValueError):
                continue  # Hydra reports a search path it cannot use
            roots += [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return roots


class UsageError(Exception):
    pass


# Hydra's command-line flags that take a value (``--cfg job``, ``-cn NAME``); ``--info`` may.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--experimental-rerun"}
_INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def overrides(args: list[str]) -> list[str]:
    """The KEY=VALUE arguments, apart from Hydra's flags and their values (as ``hydra.main`` reads them)."""
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif arg in ("--info", "-i"):
            skip = i + 1 < len(args) and args[i + 1] in _INFO_TOPICS
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def check_launcher(args: list[str]) -> None:
    """``hydra/launcher=slurm`` or ``local`` without its plugin: say what to install, in one line."""
    from normbench.launchers import missing_plugin

    for arg in args:
        if arg.lstrip("+").startswith("hydra/launcher="):
            message = missing_plugin(arg.split("=", 1)[1])
            if message:
                raise UsageError(message)


def close_keys(key: str) -> list[str]:
    """Known keys spelled like ``key`` (``trainer.max_step`` -> ``trainer.max_steps``), from the
    package's config files: the top level and every option of the key's config group."""
    import difflib

    from omegaconf import OmegaConf

    from normbench.catalog import CONFIG_DIR

    group, _, _ = key.rpartition(".")
    files = sorted((CONFIG_DIR / group).glob("**/*.yaml")) if group else [CONFIG_DIR / "config.yaml"]
    known = {f"{group}.{k}" if group else k for path in files for k in OmegaConf.load(path) if k != "defaults"}
    if not group:
        known |= {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()}
    return difflib.get_close_matches(key, sorted(known), n=2, cutoff=0.75)


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, folded into one line."""
    cause = str(exc.__cause__ or "")
    if "not in struct" in cause and "Could not override" in str(exc):
        key = str(exc).split("'")[1]
        close = close_keys(key)
        hint = f"did you mean {' or '.join(repr(k) for k in close)}? " if close else ""
        return f"unknown config key '{key}'; {hint}see every key with `normbench run --cfg job`"
    parts = [str(exc)]
    if exc.__cause__ is not None:
        parts.append(str(exc.__cause__))
    lines = [line.strip() for part in parts for line in part.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("full_key:", "object_type=", "Set the environment"))]
    return "; ".join(dict.fromkeys(lines))
