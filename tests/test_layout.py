"""The layout by role (scripts/check_layout.py): a short top level, no import cycle, no room
importing a room above it."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_layout.py"


def _layout():
    spec = importlib.util.spec_from_file_location("check_layout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_layout_keeps_its_rules(capsys):
    layout = _layout()
    assert layout.main() == 0, capsys.readouterr().out


def test_the_checker_finds_a_cycle_and_an_import_from_above():
    layout = _layout()
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert layout.cycles(graph) == [["a", "b", "c"]]
    assert layout.room("normbench.training.trainer") == "training"
    assert layout.room("normbench.records") == layout.GROUND
    assert "cli" not in layout.ROOMS["training"] and "training" not in layout.ROOMS["report"]
