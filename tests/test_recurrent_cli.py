"""Bad recurrent combinations through the command line: one line on stderr, exit 2, no run left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def normbench(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "normbench", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, words", [
    (["model=lstm", "norm=group"], ["norm=group has no meaning in a recurrent cell", "batch, layer, weight or rms"]),
    (["model=cnn", "dataset=text"], ["model=cnn cannot read dataset=text"]),
    (["model=lstm", "dataset=mnist"], ["dataset=mnist", "dataset.root"]),
])
def test_bad_combination_is_one_line_and_exit_2(tmp_path, args, words):
    result = normbench(*args, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "run").exists()
