"""The ``normbench`` command line: thin Typer commands, no training or plotting logic."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import typer

import normbench
from normbench import records
from normbench.cli import usage
from normbench.errors import error_lines

app = typer.Typer(
    name="normbench",
    help=(
        "Reproduce and extend the classic normalization papers' comparisons.\n\n"
        "Examples:\n\n"
        "\b\n"  # click: keep the example lines as they are, unwrapped
        "  normbench run                                  # MNIST-1D, CNN, batch norm\n"
        "  normbench run norm=group batch_size=2\n"
        "  normbench run -m norm=batch,group,layer batch_size=4,32 seed=0,1\n"
        "  normbench report 'multirun/batch_size=4,32_norm=batch,group,layer_seed=0,1' -o reports/gn\n"
        "  normbench reproduce                            # every paper's claim, small scale, into results/\n"
        "  normbench reproduce gn-batch-size --seeds 5\n"
        "  normbench list claims"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

RUN_HELP = """Train one run, or a sweep with -m/--multirun.

Every argument goes to Hydra unchanged: KEY=VALUE overrides, config group choices
(dataset, model, norm, optim, trainer, logger), -m/--multirun with comma-separated values,
--cfg job (print the composed config and exit), hydra.run.dir=DIR (where the run is recorded;
running the same command again resumes it from its checkpoint).

Examples:


  normbench run                                        # defaults: MNIST-1D, CNN, batch norm
  normbench run norm=group batch_size=2
  normbench run model=mlp norm=layer optim=adam trainer.max_steps=2000
  normbench run -m norm=batch,group,layer batch_size=4,32 seed=0,1
  normbench run norm=group norm.groups=4 optim.lr_scaling=linear hydra.run.dir=runs/gn4
  normbench run -m norm=batch,group seed=0,1 --dry-run     # list the jobs only
  normbench run -m hydra/launcher=slurm hydra.launcher.partition=gpu norm=batch,group seed=0,1,2
  normbench run -m hydra/launcher=local norm=batch,group seed=0,1
  normbench run --cfg job                              # show every key and its value

A sweep's directory is multirun/<its overrides> (no timestamp): running the same sweep again
skips finished runs and resumes unfinished ones; hydra.sweep.dir=DIR picks another.
hydra/launcher=slurm (Slurm, via submitit) and local (parallel on one machine) need
pip install -e ".[cluster]".

Config help: `normbench run --config-help` lists the config groups and their options;
`normbench run --hydra-help` shows Hydra's own flags.
"""

_LIST_WHAT = ("norms", "models", "datasets", "optimizers", "experiments", "debug", "claims")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"normbench {normbench.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    pass


def _dry_run(command: usage.CommandLine) -> None:
    from normbench.cli import sweeps

    try:
        with usage.hydra_configs(command) as configs:
            # A primary config of the user's own: the overrides as they are (a malformed one raises).
            parsed = configs.overrides if configs else sweeps.parse(command.overrides)
            lines = sweeps.dry_run(sweeps.user_sweep_dir(parsed) or sweeps.default_sweep_dir(parsed), parsed)
    except Exception as exc:
        typer.echo(f"normbench: error: {usage.one_line(exc, command)}", err=True)
        raise typer.Exit(2) from None
    for line in lines:
        typer.echo(line)


@app.command(
    help=RUN_HELP,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run(ctx: typer.Context) -> None:
    if "--version" in ctx.args or "-V" in ctx.args:  # normbench's, not Hydra's
        _version(True)
    if any(a in _COMPLETION for a in ctx.args):  # Hydra's shell completion: install, uninstall, query
        from normbench.cli import hydra_app

        with _hydra_command_line(list(ctx.args)):
            hydra_app.main()
        return
    command = usage.parse(ctx.args)
    try:
        usage.check_arguments(command)
    except usage.UsageError as exc:
        typer.echo(error_lines(exc), err=True)
        raise typer.Exit(2) from None
    if command.dry_run:
        _dry_run(command)
        return
    args = command.hydra_args()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0" and not command.multirun:
        # Under torchrun, ranks other than 0 write nothing: rank 0's run directory is the record.
        args = [*args, "hydra.output_subdir=null"]

    from normbench.cli import hydra_app

    sweep_dir = command.sweep_dir
    sweep_dir = Path(sweep_dir.strip("'\"")) if sweep_dir is not None and "${" not in sweep_dir else None
    if sweep_dir is not None:  # the outcome of this launch, not of an earlier one
        (sweep_dir / records.OUTCOME_FILE).unlink(missing_ok=True)
    try:
        with _hydra_command_line(args), _without_internal_groups("--config-help" in ctx.args):
            hydra_app.main()
    except SystemExit:
        raise
    except Exception as exc:
        from hydra.errors import HydraException

        if isinstance(exc, OSError) and not isinstance(exc, HydraException):  # Hydra's missing config is one too
            typer.echo(f"normbench: error: cannot create the run directory {exc.filename or ''}: "
                       f"{exc.strerror or exc}; choose a writable place with hydra.run.dir=DIR "
                       "(hydra.sweep.dir=DIR for -m)", err=True)
        else:
            typer.echo(f"normbench: error: {usage.one_line(exc, command)}", err=True)
        raise typer.Exit(2) from None
    outcome = records.read_sweep_outcome(sweep_dir) if sweep_dir is not None else None
    if outcome and (outcome.get("failed") or outcome.get("missing")):
        raise typer.Exit(1)


@contextmanager
def _without_internal_groups(active: bool):
    """``--config-help`` without the groups that only other options include (``norm/population``,
    ``optim/common``: a subgroup is never chosen on the command line)."""
    if not active:
        yield
        return
    import io
    import re
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    try:
        with redirect_stdout(buffer):
            yield
    finally:
        sys.stdout.write("".join(line for line in buffer.getvalue().splitlines(keepends=True)
                                 if not re.match(r"^[\w.-]+/[\w/.-]+: ", line)))


@contextmanager
def _hydra_command_line(args: list[str]):
    """``hydra.main`` reads ``sys.argv``: hand it ``args``, and have Hydra raise instead of printing
    its multi-line report (``HYDRA_FULL_ERROR``), so that we print one line; both are put back."""
    saved_argv, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["normbench run", *args]
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        sys.argv = saved_argv
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error


@app.command()
def report(
    dirs: list[Path] = typer.Argument(..., metavar="DIR", show_default=False,
                                      help="Run or sweep directories, searched recursively."),
    out: Path = typer.Option(None, "-o", "--out", metavar="OUT",
                             help="Output directory (default: DIR/report for one DIR, else ./report)."),
    x: str = typer.Option(None, "--x", metavar="KEY", help="Config key for the x axis of a sweep plot, e.g. batch_size, "
                          "optim.lr."),
    metric: str = typer.Option(None, "--metric", metavar="NAME", help="Metric to compare, e.g. test_acc, test_error, "
                               "val_acc, selected_test_acc, test_bpc."),
    plot: list[str] = typer.Option(None, "--plot", metavar="NAME", help="Plot to draw (repeatable): convergence, "
                                   "convergence_steps, convergence_time, convergence_epochs, convergence_samples, batch_size, "
                                   "generalization, label_noise, sweep, all. Default: chosen from what varies."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No summary table in the terminal."),
    seed_lines: bool = typer.Option(False, "--seed-lines", help="Convergence plots also draw each seed's curve."),
) -> None:
    """Turn runs and sweeps into comparison plots, tables (CSV) and a Markdown report.

    Runs that differ only in seed are grouped (mean, std, 95% t interval; Welch's for differences); failed and
    diverged runs are counted, unreadable ones listed and skipped.

    Examples:

    \b
      normbench report "multirun/norm=batch,group_seed=0,1" -o reports/gn
      normbench report runs/ --x batch_size --metric test_acc
    """
    from normbench.report.terminal import report_command

    try:
        code = report_command(dirs, out, x, metric, plot or None, quiet, seed_lines)
    except OSError as exc:
        typer.echo(_unwritable(exc, "-o OUT"), err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)


@app.command()
def runs(
    dirs: list[Path] = typer.Argument(..., metavar="DIR", show_default=False,
                                      help="Run or sweep directories, searched recursively."),
    out: Path = typer.Option(None, "-o", "--out", metavar="FILE.csv", help="Also write the index as CSV."),
) -> None:
    """An index of every run under DIR...: its status, the config keys that differ, the headline
    metrics and its path; unreadable directories with why.

    Examples: `normbench runs multirun/`, `normbench runs multirun/ outputs/ -o runs.csv`.
    """
    from normbench.report.terminal import index_command

    try:
        code = index_command(dirs, out)
    except OSError as exc:
        typer.echo(_unwritable(exc, "-o FILE.csv"), err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)


@app.command("list", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def list_(
    ctx: typer.Context,
    what: str = typer.Argument(None, help=f"One of: {', '.join(_LIST_WHAT)}. All when left out."),
) -> None:
    """List norms, models, datasets, optimizers, experiments and claims, one line each.

    A config directory of your own joins the lists as it joins a run: `--config-dir DIR` or
    `hydra.searchpath=[file://DIR]`. Nothing here imports torch.

    Examples: `normbench list`, `normbench list norms`, `normbench list claims`,
    `normbench list norms --config-dir my_configs`.
    """
    from normbench.claims import experiments
    from normbench.cli import sweeps
    from normbench.config.catalog import catalog

    args, positional = [], []  # the search path's arguments; what to list, and anything else
    given = [what, *ctx.args] if what is not None else list(ctx.args)
    for i, a in enumerate(given):
        value = i and given[i - 1] in ("--config-dir", "-cd")
        (args if a in ("--config-dir", "-cd") or value or a.startswith(("--config-dir=", "hydra.searchpath="))
         else positional).append(a)
    what, stray = (positional[0], positional[1:]) if positional and not positional[0].startswith("-") \
        and "=" not in positional[0] else (None, positional)
    if what is not None and what not in _LIST_WHAT:
        typer.echo(f"normbench: error: cannot list '{what}'; choose one of: {', '.join(_LIST_WHAT)}", err=True)
        raise typer.Exit(2)
    if stray:
        typer.echo(f"normbench: error: `normbench list` does not take '{stray[0]}'; it takes what to list "
                   f"({', '.join(_LIST_WHAT)}), --config-dir DIR and hydra.searchpath=[...] only", err=True)
        raise typer.Exit(2)
    try:
        command = usage.parse(args)
        parsed = command.parsed or sweeps.parse(command.overrides)
        usage.check_config_dirs(command.args, parsed)
        roots = usage.search_path(command.args, parsed)
    except usage.UsageError as exc:
        typer.echo(f"normbench: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        typer.echo(f"normbench: error: {usage.one_line(exc)}; `normbench list` takes --config-dir DIR and "
                   "hydra.searchpath=[...] only", err=True)
        raise typer.Exit(2) from None
    entries = {**catalog(roots), **experiments.catalog()}
    for section in [what] if what else entries:
        typer.echo(f"{section}:")
        if not entries[section]:
            typer.echo("  (none: add yours as configs/experiment/NAME.yaml and pass --config-dir configs)"
                       if section == "experiments" else "  (none)")
            continue
        width = max(len(name) for name in entries[section])
        for name, description in entries[section].items():
            typer.echo(f"  {name:<{width}}  {description}")


REPRODUCE_HELP = """Run the papers' comparisons, report them and decide each claim.

CLAIM... are claim ids (`normbench list claims`); all claims when none is given. Each claim's
spec (normbench/claims/specs/CLAIM.yaml) holds its sweeps at two scales:
small (2 CPU cores, minutes; the default) and full (the paper's setup, for a GPU cluster).
The sweeps run through `normbench run -m` into RUNS/CLAIM/SCALE/sweepI-HASH (HASH: of the
fixed overrides; a relaunch skips finished runs); then OUT/CLAIM/ gets the report (report.md, plots, CSVs), README.md with the
verdict (reproduced / not reproduced / inconclusive, with the numbers and the 95% Welch t
interval it rests on) and verdict.json; OUT/README.md lists every claim.

Other KEY=VALUE arguments are Hydra overrides added to every run (a launcher, a budget).

Examples:

  normbench reproduce                                  # every claim, small scale, its planned looks or 5 seeds

  normbench reproduce gn-batch-size --seeds 5

  normbench reproduce gn-batch-size --scale full hydra/launcher=slurm hydra.launcher.partition=gpu

  normbench reproduce bn-sigmoid --dry-run             # the sweeps it would run

  normbench reproduce gn-norms --pilot                 # its pilot seeds at two budgets: has it plateaued?

  normbench reproduce --report-only                    # verdicts again from the finished runs
"""


@app.command(help=REPRODUCE_HELP, options_metavar="[OPTIONS] [CLAIM]... [KEY=VALUE]...",
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def reproduce(
    ctx: typer.Context,
    scale: str = typer.Option("small", "--scale", help="small (CPU, minutes) or full (the paper's setup)."),
    seeds: int = typer.Option(None, "--seeds", show_default=False,
                              help="Seeds per setting: seed=0..N-1. Default: the claim's planned looks where its "
                              "spec declares them (more seeds only while a check is unsettled), else 5."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Where reports and verdicts go."),
    runs: Path = typer.Option(Path("multirun/reproduce"), "--runs", help="Where the sweeps' run directories go."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the sweeps, run nothing."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing: report and decide from the runs there are."),
    pilot: bool = typer.Option(False, "--pilot", help="Run only the claims' pilots (their spec's pilot seeds, 1000 and "
                               "up, at the spec's budget and a longer one) and print whether every setting has "
                               "reached its plateau; a verdict then uses it."),
    force: bool = typer.Option(False, "--force", help="Replace verdicts in OUT made from another setup (seeds, scale, "
                               "overrides); without it they are kept and nothing runs."),
) -> None:
    from normbench.claims import experiments
    from normbench.claims.registry import CLAIMS
    from normbench.errors import ConfigError

    names = [a for a in ctx.args if "=" not in a and not a.startswith("-")]
    extra = [a for a in ctx.args if a not in names]
    try:
        _no_unknown_options(ctx)
        for name in names:
            if name not in CLAIMS:
                raise ConfigError(f"unknown claim '{name}'; choose from: {', '.join(CLAIMS)}")
        _check_extra(names or list(CLAIMS), scale, 1 if seeds is None else seeds, runs, extra)
        if dry_run:
            from normbench.claims.reproduce import DEFAULT_SEEDS, planned_looks

            for name in names or list(CLAIMS):
                looks = None if seeds is not None else planned_looks(name, scale)
                if looks:
                    typer.echo(f"{name}: planned looks at {', '.join(map(str, looks))} seeds a side; the first:")
                first = seeds if seeds is not None else (looks or [DEFAULT_SEEDS])[0]
                for sweep in experiments.sweeps(name, scale, first, runs, extra):
                    typer.echo(f"{name}: normbench run -m {' '.join(sweep.args)}")
            return
        from normbench.claims.reproduce import reproduce as run_reproduce
        from normbench.claims.reproduce import run_pilot

        if pilot:
            for name in names or list(CLAIMS):
                typer.echo(f"[{name}] pilot: {run_pilot(name, scale, runs, extra).text()}")
            return

        verdicts = run_reproduce(names, scale, seeds, out, runs, extra, report_only=report_only, force=force)
    except ConfigError as exc:
        typer.echo(error_lines(exc), err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(_unwritable(exc, "--out DIR and --runs DIR"), err=True)
        raise typer.Exit(2) from None
    not_run = [k for k, v in verdicts.items() if v.not_run]
    typer.echo(f"wrote {out / 'README.md'}: " + ", ".join(f"{k} {v.outcome}" for k, v in verdicts.items()))
    if not_run:
        typer.echo(f"normbench: error: not run: {', '.join(not_run)} (see the sweeps' errors above)", err=True)
        raise typer.Exit(1)


def _no_unknown_options(ctx: typer.Context) -> None:
    """An option ``reproduce`` does not take (``--sedes 3``) is refused by name, not read as a claim."""
    import difflib

    from normbench.errors import ConfigError

    known = [o for p in ctx.command.params for o in p.opts if o.startswith("--")]
    for arg in ctx.args:
        if arg.startswith("-") and "=" not in arg:
            close = difflib.get_close_matches(arg, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"unknown option '{arg}'; {hint}reproduce takes {', '.join(known)} "
                              "(and KEY=VALUE overrides)")


def _unwritable(exc: OSError, where: str) -> str:
    """One line for an output directory that cannot be written."""
    return (f"normbench: error: cannot write {exc.filename or 'the output'}: {exc.strerror or exc}; "
            f"choose a writable place with {where}")


def _check_extra(names: list[str], scale: str, seeds: int, runs: Path, extra: list[str]) -> None:
    """Overrides given to ``reproduce`` go to every sweep: check them with each claim's first sweep,
    before anything runs, as ``normbench run -m`` would."""
    from normbench.claims import experiments
    from normbench.errors import ConfigError

    for name in names if extra else []:
        command = usage.parse(["-m", *experiments.sweeps(name, scale, seeds, runs, extra)[0].args])
        try:
            usage.check_arguments(command)
        except usage.UsageError as exc:
            raise ConfigError(f"{name}: {exc}") from None


_COMPLETION = ("-sc", "--shell-completion")


def _completion_query(argv: list[str]) -> list[str]:
    """The hook ``normbench run -sc install=bash`` installs calls ``normbench -sc query=bash`` with
    the line in ``COMP_LINE`` (``normbench run norm=gr``): hand it to ``run``'s Hydra, with the
    line as Hydra reads a line of its own app (``normbench norm=gr``)."""
    line = os.environ.get("COMP_LINE", "").split(" ")
    if len(line) > 1 and line[1] == "run":
        os.environ["COMP_LINE"] = " ".join([line[0], *line[2:]])
    return ["run", *argv]


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in _COMPLETION:
        sys.argv = [sys.argv[0], *_completion_query(argv)]
    app()


if __name__ == "__main__":
    main()
