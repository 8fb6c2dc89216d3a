"""The extension points: a norm registered from outside normbench trains through `normbench run`
with no other edit, and every registered norm is known wherever norms are listed."""

import os
import textwrap
from pathlib import Path

import pytest
import torch
from procs import ENV, cli, normbench
from typer.testing import CliRunner

from normbench import records
from normbench.api import compose
from normbench.cli.commands import app
from normbench.models import norm_options
from normbench.norms import NORMS, make_norm, norm_parameters

SCRATCH = '''
"""ScaleNorm (Nguyen & Salazar 2019): y = g * x / ||x||, one learned scalar g per layer."""
import torch
from torch import nn

from normbench.norms import Norm, register_norm


class ScaleNorm(nn.Module):
    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.tensor(float(num_features) ** 0.5))

    def forward(self, x):
        norms = x.flatten(1).norm(dim=1).clamp(min=self.eps)
        return self.g * x / norms.view(-1, *[1] * (x.dim() - 1))


register_norm(Norm("scale", lambda num_features, dims, **o: ScaleNorm(num_features, **o), frozenset({"eps"}),
                   (ScaleNorm,)))
'''


@pytest.fixture
def scratch_norm(tmp_path, monkeypatch):
    """A norm in a module of its own (one class, one registry entry) and its YAML in a config dir."""
    (tmp_path / "scratch_norm.py").write_text(textwrap.dedent(SCRATCH))
    (tmp_path / "conf" / "norm").mkdir(parents=True)
    (tmp_path / "conf" / "norm" / "scale.yaml").write_text(
        "name: scale\ndescription: 'ScaleNorm: g x / ||x||'\nbatch_dependent: false\neps: 1.0e-05\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import scratch_norm  # noqa: F401  (registers the norm, as a user's plugin module would)

    yield tmp_path / "conf"
    NORMS.pop("scale", None)


def test_a_norm_registered_at_run_time_trains_through_normbench_run(tmp_path, scratch_norm):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "norm=scale", f"hydra.searchpath=[file://{scratch_norm}]",
                                      "trainer.max_steps=20", "trainer.eval_every=10", "trainer.progress=none",
                                      f"hydra.run.dir={run_dir}"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("completed: scale norm, cnn on mnist1d")
    assert records.read_summary(run_dir)["norm"] == "scale"
    weights = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    assert sum(k.endswith(".g") for k in weights) == 3  # one ScaleNorm after each of the CNN's 3 convs
    # Its parameters are norm parameters (e.g. for optim.norm_weight_decay=false)
    net = make_norm("scale", 8, 1)
    assert norm_parameters(net) == [net.g]
    listed = CliRunner().invoke(app, ["list", "norms", f"hydra.searchpath=[file://{scratch_norm}]"]).stdout
    assert "  scale  " in listed and "ScaleNorm: g x / ||x||" in listed


def test_an_unknown_norm_names_the_choices_of_the_search_path_too(scratch_norm):
    result = CliRunner().invoke(app, ["run", "norm=scal", f"hydra.searchpath=[file://{scratch_norm}]"])
    assert result.exit_code == 2
    assert result.stderr.startswith("normbench: error: unknown norm 'scal'; choose one of: batch, ghost, group,")
    assert "rms, scale, weight\n" in result.stderr


@pytest.mark.parametrize("name", list(NORMS))
def test_every_registered_norm_has_a_yaml_it_builds_from_and_says_if_it_depends_on_the_batch(name):
    cfg = compose([f"norm={name}"])
    assert cfg.norm.name == name and isinstance(cfg.norm.batch_dependent, bool)
    assert set(norm_options(cfg.norm)) <= NORMS[name].options
    dims = 1 if NORMS[name].needs_positions else 0
    layer = make_norm(name, 8, dims, **norm_options(cfg.norm))
    x = torch.randn(64, 8) if dims == 0 else torch.randn(64, 8, 5)
    full, part = layer(x), layer(x[:16])  # in training mode
    # batch_dependent is what the reporter reads: it must say what the layer does
    assert (not torch.allclose(full[:16], part, atol=1e-5)) == cfg.norm.batch_dependent


def test_a_user_config_dir_adds_norms_and_experiments(tmp_path):
    """Hydra's --config-dir: a norm option and an experiment kept outside the package."""
    (tmp_path / "norm").mkdir()
    (tmp_path / "norm" / "gn4.yaml").write_text("description: group norm, 4 groups\ndefaults:\n  - group\n"
                                                "  - _self_\ngroups: 4\n")
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "short.yaml").write_text("# @package _global_\nbatch_size: 16\n"
                                                        "trainer:\n  max_steps: 4\n  eval_every: 4\n")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--config-dir", str(tmp_path), "norm=gn4", "+experiment=short",
                                      "trainer.progress=none", f"hydra.run.dir={run_dir}"])
    assert result.exit_code == 0, result.stderr
    summary = records.read_summary(run_dir)
    assert (summary["norm"], summary["batch_size"], summary["steps"]) == ("group", 16, 4)
    assert "groups: 4" in (run_dir / "config.yaml").read_text()
    unknown = CliRunner().invoke(app, ["run", "--config-dir", str(tmp_path), "norm=gn5"])
    assert unknown.exit_code == 2 and "choose one of: batch, ghost, gn4, group," in unknown.stderr
    listed = CliRunner().invoke(app, ["list", "norms", "--config-dir", str(tmp_path)]).stdout
    assert "gn4" in listed


def test_the_plugin_example_adds_a_norm_and_an_experiment_and_sweeps_them(tmp_path, monkeypatch):
    """examples/scalenorm as its README runs it: a sweep in subprocesses, the norm imported by plugins."""
    import json

    plugin = Path(__file__).resolve().parents[1] / "examples" / "scalenorm"
    env = {"PYTHONPATH": f"{plugin}{os.pathsep}{ENV['PYTHONPATH']}"}
    proc = normbench("run", "-m", "plugins=[scalenorm_plugin]", "hydra.searchpath=[pkg://scalenorm_plugin.conf]",
                     "+experiment=scale_vs_layer", "norm=scale,layer", "trainer.max_steps=20", "trainer.eval_every=10",
                     "trainer.progress=none", "hydra.callbacks.report.enabled=false",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summaries = {json.loads(p.read_text())["norm"]: json.loads(p.read_text())
                 for p in (tmp_path / "sweep").glob("*/summary.json")}
    assert set(summaries) == {"scale", "layer"} and all(s["model"] == "mlp" for s in summaries.values())
    assert all(s["status"] == "completed" for s in summaries.values())
    config = next((tmp_path / "sweep").glob("*norm=scale*/config.yaml")).read_text()
    assert "label: ScaleNorm" in config
    refused = cli("run", "plugins=[no_such_plugin]", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert refused.exit_code == 2 and refused.stderr.startswith("normbench: error: plugins: cannot import "
                                                                "'no_such_plugin'")
    assert not (tmp_path / "run").exists()
