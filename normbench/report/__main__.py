"""``python -m normbench.report DIR... [-o OUT] [--x KEY] [--metric NAME] [--plot NAME] [-q]``:
the same command as ``normbench report`` (one implementation: the CLI's)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``normbench report`` with ``argv``; returns the exit code (0, or 2 for bad input)."""
    from typer.main import get_command

    from normbench.cli.commands import app

    args = ["report", *(sys.argv[1:] if argv is None else argv)]
    return get_command(app).main(args, prog_name="python -m normbench.report", standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main())
