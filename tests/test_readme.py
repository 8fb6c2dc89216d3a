"""The README's commands cannot rot: every `normbench` command in its code blocks composes (a run
prints its config with --cfg job, a sweep lists its jobs with --dry-run, reproduce with --dry-run),
and every error shown after `$ normbench ...` is the error normbench prints."""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from normbench.cli.commands import app

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README.read_text(), flags=re.S)


def commands() -> list[list[str]]:
    out = []
    for lang, body in BLOCKS:
        for line in body.splitlines():
            line = line.strip()
            if lang == "bash" and line.startswith("normbench "):
                out.append(shlex.split(line, comments=True)[1:])
            elif line.startswith("$ normbench "):
                out.append(shlex.split(line[2:], comments=True)[1:])
    return out


def shown_errors() -> list[tuple[list[str], str]]:
    """``(arguments, the error line shown under them)`` of the README's examples."""
    pairs = []
    for _, body in BLOCKS:
        lines = body.splitlines()
        for command, shown in zip(lines, lines[1:], strict=False):
            if command.startswith("$ normbench ") and shown.startswith("normbench: error: "):
                pairs.append((shlex.split(command[2:])[1:], shown))
    return pairs


def as_check(args: list[str]) -> list[str] | None:
    """The same command made to compose without training."""
    if args[0] == "run":
        return [*args, "--dry-run"] if "-m" in args else [*args, "--cfg", "job"]
    if args[0] == "reproduce":
        return [*args, "--dry-run"]
    if args[0] == "list":
        return args
    return None  # report: reads directories a run made


def test_the_readme_shows_commands():
    assert len(commands()) >= 10 and len(shown_errors()) >= 2


@pytest.mark.parametrize("args", [a for a in commands() if as_check(a)], ids=" ".join)
def test_every_readme_command_composes(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shown_error = any(args == a for a, _ in shown_errors())
    result = CliRunner().invoke(app, as_check(args))
    assert (result.exit_code == 2) if shown_error else (result.exit_code == 0), result.output


@pytest.mark.parametrize("args,shown", shown_errors(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_readme_error_is_what_normbench_says(args, shown, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 2 and result.stderr.strip() == shown
