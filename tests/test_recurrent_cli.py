"""Bad recurrent combinations through the command line: one line on stderr, exit 2, no run left."""

from __future__ import annotations

import pytest
from procs import cli


@pytest.mark.parametrize("args, words", [
    (["model=lstm", "norm=group"], ["norm=group has no meaning in a recurrent cell", "batch, layer, weight or rms"]),
    (["model=cnn", "dataset=text"], ["model=cnn cannot read dataset=text"]),
    (["model=lstm", "dataset=mnist"], ["dataset=mnist", "dataset.root"]),
])
def test_bad_combination_is_one_line_and_exit_2(tmp_path, args, words):
    result = cli("run", *args, "hydra.run.dir=run", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "run").exists()
