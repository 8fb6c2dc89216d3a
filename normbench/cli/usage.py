"""The command line's checks of its own input, before Hydra starts: config group choices and, in
a sweep, every swept value against the schema (both asked of Hydra's config repository, user
config directories and search paths included), launcher plugins, and the one-line messages that
Hydra's and OmegaConf's exceptions become. Nothing here imports torch.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_MULTIRUN = ("-m", "--multirun")
_OWN_PRIMARY = ("--config-name", "-cn", "--config-path", "-cp")


@dataclass(frozen=True)
class CommandLine:
    """The arguments of ``normbench run``, parsed once: the one value that the pre-check
    (:func:`check_arguments`), ``--dry-run`` and the sweep directory use, and that Hydra is handed.

    Attributes:
        args: the arguments as Hydra takes them: ``-m`` first (it may stand anywhere on
            normbench's command line), ``--dry-run`` left out, ``--config-help`` as ``--help``.
        multirun: ``-m``/``--multirun`` was given.
        dry_run: ``--dry-run`` was given.
        overrides: the ``KEY=VALUE`` arguments, apart from Hydra's flags and their values.
        parsed: Hydra's :class:`Override` of each; None where Hydra alone judges the arguments:
            a malformed override, or a primary config of the user's own (``--config-name``).
    """

    args: tuple[str, ...]
    multirun: bool
    dry_run: bool
    overrides: tuple[str, ...]
    parsed: tuple | None

    @property
    def user_sweep_dir(self) -> str | None:
        """The ``hydra.sweep.dir=`` value given, if any."""
        from normbench.cli import sweeps

        return sweeps.user_sweep_dir(self.parsed or ())

    @property
    def sweep_dir(self) -> str | None:
        """Where a sweep of these arguments writes: the user's ``hydra.sweep.dir`` or the directory
        derived from the overrides (:func:`normbench.cli.sweeps.default_sweep_dir`); None for a
        single run or arguments Hydra alone judges."""
        from normbench.cli import sweeps

        if not self.multirun or self.parsed is None:
            return None
        return self.user_sweep_dir or sweeps.default_sweep_dir(self.parsed)

    def hydra_args(self) -> list[str]:
        """The arguments Hydra is handed: a sweep's derived directory joins them (no timestamp, so
        that a relaunch finds its runs), next to the other overrides, where argparse takes them as
        one group of positionals."""
        args = list(self.args)
        if self.multirun and self.parsed is not None and self.user_sweep_dir is None:
            at = args.index(self.overrides[0]) if self.overrides else len(args)
            args[at:at] = [f"hydra.sweep.dir='{self.sweep_dir}'"]
        return args


_LISTED_GROUPS = ("+experiment=", "+debug=")


def parse(args) -> CommandLine:
    """``normbench run``'s arguments as one :class:`CommandLine`."""
    from normbench.cli import sweeps

    args = ["--help" if a == "--config-help" else a for a in args]
    # `experiment` and `debug` are in the defaults list (null): both spellings choose one, with or
    # without the `+` of lightning-hydra-template's README (Hydra refuses `+` for a listed group).
    args = [a[1:] if a.startswith(_LISTED_GROUPS) else a for a in args]
    flags = [a for a in args if a in _MULTIRUN]
    dry_run = "--dry-run" in args
    args = [*flags, *(a for a in args if a not in flags and a != "--dry-run")]
    given = overrides(args)
    parsed = None
    if not any(a in _OWN_PRIMARY or a.startswith(tuple(f"{flag}=" for flag in _OWN_PRIMARY)) for a in args):
        try:
            parsed = tuple(sweeps.parse(given))
        except (SystemExit, Exception):
            pass  # Hydra reports a malformed argument itself
    return CommandLine(tuple(args), bool(flags), dry_run, tuple(given), parsed)


def check_arguments(command: CommandLine) -> None:
    """Refuse bad arguments of ``normbench run`` in one line, before Hydra starts: a launcher
    without its plugin, an unknown config-group option (:func:`_check_group_choices`) and any value
    the schema refuses, each swept value of a sweep (:func:`_check_values`). Both ask Hydra's
    config repository, opened once."""
    check_launcher(command)
    check_config_dirs(command.args, command.parsed or ())
    problem = None
    with hydra_configs(command) as configs:
        if configs is None:
            return
        _check_group_choices(configs)
        problem = _check_values(configs)
    if problem is not None:  # outside Hydra's context: the message composes configs of its own
        raise UsageError(one_line(problem, command))


def _check_group_choices(configs: Configs) -> None:
    """Reject an unknown config-group option (``norm=grup``), sweeps included.

    The options are those of Hydra's own config repository: normbench's configs, Hydra's plugins',
    and the user's (``--config-dir``, ``hydra.searchpath``). Hydra would refuse an unknown one too,
    over several lines and only when it reaches the job that uses it; checking every swept value
    up front means a sweep never starts with a bad one in it.
    """
    from hydra.core.object_type import ObjectType

    from normbench.claims.experiments import experiment_names

    claims = set(experiment_names())
    for override in configs.overrides:
        group = override.key_or_group
        parent, _, name = group.rpartition("/")
        known = configs.options(group) if not override.is_delete() and name in configs.options(
            parent, ObjectType.GROUP) else []
        experiment = group.lstrip("+") == "experiment"
        for value in (_values(override) or []) if experiment or known else []:
            if str(value) in known:
                continue
            if experiment and str(value) in claims:
                raise UsageError(f"{override.input_line}: {value} is a claim, not an experiment overlay; run it "
                                 f"with `normbench reproduce {value}` (`normbench reproduce {value} --dry-run` prints "
                                 "the `normbench run -m` commands it runs)")
            if known:
                raise UsageError(f"unknown {group} '{value}'; choose one of: {', '.join(known)}")
            raise UsageError(f"unknown experiment '{value}': no experiment overlays on the search path; write "
                             f"configs/experiment/{value}.yaml and pass --config-dir configs")


def _check_values(configs: Configs) -> Exception | None:
    """Compose the config of the run, or of every value of a sweep, and check it against the schema,
    so that ``batch_size=0`` or ``dataset.permute=false,maybe`` is refused in one line before Hydra
    starts and before any job; returns the
    exception of a config Hydra cannot compose (for :func:`one_line`, outside Hydra's context).

    Each swept value is composed with the other keys at their first value: a value's rule may
    depend on the component its group chose (``dataset.train_split``), not on the other values.
    """
    from normbench.config.validation import check_rules
    from normbench.errors import ConfigError

    swept = {o.input_line: _settings(o) for o in configs.overrides if not o.is_hydra_override()}
    swept = {line: settings for line, settings in swept.items() if settings}  # an interval: a sweeper's
    base = {line: settings[0] for line, settings in swept.items()}
    for variant in [base] + [{**base, line: s} for line, settings in swept.items() for s in settings[1:]]:
        try:
            cfg = configs.compose(variant.values())
        except Exception as exc:
            return exc
        try:
            check_rules(cfg)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        except Exception:
            continue  # e.g. an interpolation only a job can resolve: the job reports it
    return None


def _settings(override) -> list[str] | None:
    """:func:`normbench.cli.sweeps.settings`, or None when Hydra cannot list the values (an interval)."""
    from normbench.cli.sweeps import settings

    try:
        return settings(override)
    except Exception:
        return None


def _values(override) -> list | None:
    """The values an override gives its key (a sweep's every value); None when Hydra cannot list them."""
    try:
        return list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
    except Exception:
        return None


class Configs:
    """Hydra's config repository as a run with the same arguments sees it: normbench's configs,
    Hydra's plugins' and the user's (``--config-dir``, ``hydra.searchpath``), and the arguments'
    overrides parsed against it (so that ``norm=glob(*)`` lists its options). (Hydra puts
    ``--config-dir`` before normbench's directory on the search path, the compose API after it:
    only a user's file shadowing a packaged one of the same name differs, and the run itself checks
    the config it composes.)"""

    def __init__(self, loader, search: list[str], overrides: list):
        self.loader, self.search, self.overrides = loader, search, overrides

    def options(self, group: str, kind=None) -> list[str]:
        """The options of config group ``group`` (the subgroups, with ``kind=ObjectType.GROUP``)."""
        from hydra.core.object_type import ObjectType

        return sorted(self.loader.get_group_options(group, kind or ObjectType.CONFIG, config_name="config",
                                                    overrides=self.search))

    def compose(self, overrides):
        from hydra import compose

        return compose(config_name="config", overrides=[*overrides, *self.search])


@contextmanager
def hydra_configs(command: CommandLine):
    """The :class:`Configs` of these arguments, inside Hydra's compose context; None where Hydra
    alone judges the arguments (``command.parsed`` is None)."""
    import warnings

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from normbench.config.catalog import CONFIG_DIR

    if command.parsed is None:
        yield None
        return
    entries = search_entries(command.args, command.parsed)
    search = [f"hydra.searchpath=[{','.join(entries)}]"] if entries else []
    with warnings.catch_warnings(), initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        warnings.simplefilter("ignore")  # a search path entry that is not there: Hydra reports it in the run
        loader = GlobalHydra.instance().config_loader()
        for override in command.parsed:  # as Hydra's parser binds them: glob(...) lists a group's options
            override.config_loader = loader
        try:
            yield Configs(loader, search, list(command.parsed))
        finally:
            for override in command.parsed:
                override.config_loader = None


def config_dirs(args: list[str]) -> list[Path]:
    """The directories given with Hydra's ``--config-dir DIR`` (``-cd DIR``, ``--config-dir=DIR``)."""
    dirs = []
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(Path(args[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def search_entries(args: list[str], parsed) -> list[str]:
    """The config directories a run adds to Hydra's search path: ``--config-dir DIR`` (as
    ``file://DIR``) and the entries of ``hydra.searchpath=[file://DIR,pkg://module]``."""
    entries = [f"file://{Path(d).absolute()}" for d in config_dirs(args)]
    for override in parsed:
        if override.key_or_group == "hydra.searchpath" and isinstance(override.value(), list):
            entries += [str(entry) for entry in override.value()]
    return entries


def check_config_dirs(args: list[str], parsed) -> None:
    """A config directory that does not exist is refused by name (Hydra would skip it, and a run
    would fail later on an option it should have held: "unknown norm 'gn4'")."""
    from normbench.config.catalog import CONFIG_DIR

    for entry in search_entries(args, parsed):
        scheme, _, where = entry.partition("://")
        if scheme == "file" and not Path(where).is_dir():
            raise UsageError(f"config directory {where} does not exist; give the directory that holds your "
                             "config groups (my_configs for my_configs/norm/gn4.yaml), with --config-dir DIR or "
                             "hydra.searchpath=[file://DIR]")
        if scheme != "file":
            continue
        for path in sorted(Path(where).glob("*/*.yaml")):  # Hydra takes normbench's file of that name first
            group, name = path.parent.name, path.stem
            if (CONFIG_DIR / group / f"{name}.yaml").is_file():
                raise UsageError(f"{path} has the name of normbench's own {group}={name}, which Hydra would use "
                                 f"instead of yours; rename it (e.g. {group}/my_{name}.yaml, then {group}=my_{name})")


def search_path(args: list[str], parsed) -> list[Path]:
    """The directories of :func:`search_entries` (a package's every directory: a namespace
    package, one without ``__init__.py``, may have several), where `normbench list` reads the
    options' descriptions."""
    import importlib.util

    roots = []
    for entry in search_entries(args, parsed):
        scheme, _, where = entry.partition("://")
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
                     "--config-dir", "-cd", "--experimental-rerun", "--shell-completion", "-sc"}
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


def check_launcher(command: CommandLine) -> None:
    """``hydra/launcher=slurm`` or ``local`` without its plugin: say what to install, in one line."""
    from normbench.cli.launchers import missing_plugin

    for arg in command.overrides:
        if arg.lstrip("+").startswith("hydra/launcher="):
            message = missing_plugin(arg.split("=", 1)[1])
            if message:
                raise UsageError(message)


def key_hint(key: str, command: CommandLine) -> str:
    """What a misspelt or misplaced ``key`` may have meant: a known key spelled like it
    (``trainer.max_step`` -> ``trainer.max_steps``) in the config that the arguments' group choices
    compose (their first value in a sweep), else the group's other options that have it
    (``optim.betas`` -> ``optim=adam``)."""
    import difflib

    from hydra.core.object_type import ObjectType
    from omegaconf import OmegaConf

    group, _, leaf = key.rpartition(".")
    try:
        with hydra_configs(command) as configs:
            groups = configs.options("", ObjectType.GROUP)
            choices = {o.key_or_group: (_settings(o) or [""])[0] for o in configs.overrides
                       if o.key_or_group in groups and not o.is_delete()}
            cfg = OmegaConf.to_container(configs.compose(choices.values()))
            close = difflib.get_close_matches(key, _paths(cfg), n=2, cutoff=0.75)
            if close:
                return f"did you mean {' or '.join(repr(k) for k in close)}? "
            others = [name for name in configs.options(group)
                      if leaf in configs.compose({**choices, group: f"{group}={name}"}.values())[group]]
    except Exception:
        return ""
    return f"{key} belongs to {' and '.join(f'{group}={name}' for name in others)}; " if others else ""


def _paths(node: dict, prefix: str = "") -> list[str]:
    """Every key of a nested dict, dotted (``trainer``, ``trainer.max_steps``, ...)."""
    return [f"{prefix}{k}" for k in node] + [p for k, v in node.items() if isinstance(v, dict)
                                             for p in _paths(v, f"{prefix}{k}.")]


def one_line(exc: BaseException, command: CommandLine | None = None) -> str:
    """Hydra's and OmegaConf's multi-line messages, folded into one line (``command``: the
    command line, for the keys a misspelt one may have meant)."""
    cause = str(exc.__cause__ or "")
    if "not in struct" in cause and "Could not override" in str(exc):
        key = str(exc).split("'")[1]
        hint = key_hint(key, command or parse([]))
        return f"unknown config key '{key}'; {hint}see every key with `normbench run --cfg job`"
    parts = [str(exc)]
    if exc.__cause__ is not None:
        parts.append(str(exc.__cause__))
    lines = [line.strip() for part in parts for line in part.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("full_key:", "object_type=", "Set the environment"))]
    return "; ".join(dict.fromkeys(lines))
