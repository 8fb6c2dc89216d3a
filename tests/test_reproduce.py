"""`normbench reproduce` and the experiment configs.

- every small-scale experiment composes (every job of every sweep) and its first job of each
  sweep trains a few steps; full-scale ones compose (every config group they name exists);
- the sweeps' directories and arguments (seeds, fixed keys out of run names, extra overrides);
- one real `normbench reproduce` through a subprocess, relaunched to check it skips finished
  runs; `list claims`, `reproduce --help`, an unknown claim, a claim whose sweeps cannot start.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from procs import cli as in_process
from procs import normbench

from normbench.claims import experiments
from normbench.claims.registry import CLAIMS
from normbench.cli.sweeps import expand, parse
from normbench.config.validation import check_rules

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "normbench" / "configs"


def cli(*args, cwd=None, timeout=300):
    """``normbench reproduce`` in a subprocess: it runs its sweeps in subprocesses of its own."""
    return normbench(*args, cwd=cwd, timeout=timeout)


def missing_groups(overrides: list[str]) -> list[str]:
    """Config group options an experiment names that this checkout does not have."""
    missing = []
    for o in overrides:
        key, _, value = o.partition("=")
        if (CONFIGS / key).is_dir() and not (CONFIGS / key / f"{value}.yaml").exists():
            missing.append(o)
    return missing


def jobs(name: str, scale: str) -> list[tuple[int, list[str]]]:
    out = []
    for i, sweep in enumerate(experiments.sweeps(name, scale, seeds=1, runs_root="unused")):
        task = [a for a in sweep.args if not a.startswith("hydra.")]
        out += [(i, job) for job in expand(parse(task))]
    return out


def test_every_claim_has_an_experiment():
    assert sorted(CLAIMS) == experiments.experiment_names()


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_small_experiment_composes_and_trains(tmp_path, name):
    from normbench.api import compose
    from normbench.training.trainer import train

    all_jobs = jobs(name, "small")
    assert not missing_groups([o for _, job in all_jobs for o in job])
    first_of_sweep = {}
    for i, job in all_jobs:
        cfg = compose(job)  # every job composes, with every value as the schema allows
        check_rules(cfg)
        first_of_sweep.setdefault(i, cfg)
    for i, cfg in first_of_sweep.items():
        cfg.trainer.max_steps = 2
        cfg.trainer.eval_every = 2
        cfg.trainer.progress = "none"
        cfg.trainer.train_eval_samples = 100
        if cfg.dataset.name == "mnist1d":  # fewer test signals: evaluating an LSTM is the slow part
            cfg.dataset.num_samples, cfg.dataset.train_split = 4000, 0.95
        if cfg.dataset.name == "text":
            cfg.dataset.test_fraction, cfg.dataset.max_train_chars = 0.01, 20000
        if cfg.dataset.name in ("clevr_like", "sort_of_clevr"):  # a small generated set: loading is the slow part
            cfg.dataset.train_images, cfg.dataset.val_images = 40, 20
            cfg.dataset.train_samples = cfg.dataset.test_samples = None
        summary = train(cfg, tmp_path / f"sweep{i}")
        assert summary["status"] == "completed", summary.get("error")
        assert summary["steps"] == 2


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_full_experiment_composes(name):
    from normbench.api import compose

    all_jobs = jobs(name, "full")
    assert not missing_groups([o for _, job in all_jobs for o in job])
    for _, job in all_jobs:
        check_rules(compose(job))


def test_sweeps_name_runs_by_swept_keys_and_seed(tmp_path):
    sweeps = experiments.sweeps("gn-batch-size", "small", seeds=2, runs_root=tmp_path,
                                extra=["hydra/launcher=slurm", "trainer.epochs=1"])
    assert [s.sweep_dir.parent for s in sweeps] == [tmp_path / "gn-batch-size" / "small"] * 2
    assert [s.sweep_dir.name[:7] for s in sweeps] == ["sweep0-", "sweep1-"]
    base = experiments.sweeps("gn-batch-size", "small", seeds=2, runs_root=tmp_path, extra=["hydra/launcher=slurm"])
    again = experiments.sweeps("gn-batch-size", "small", seeds=5, runs_root=tmp_path)
    assert [s.sweep_dir for s in again] == [s.sweep_dir for s in base]  # seeds and launcher do not move runs
    assert sweeps[0].sweep_dir != base[0].sweep_dir  # another setup (trainer.epochs=1): other directories
    args = sweeps[0].args
    assert "seed=0,1" in args and "batch_size=32,8,2" in args and "hydra/launcher=slurm" in args
    assert "trainer.epochs=1" in args and "trainer.epochs=10" not in args  # extra overrides win
    assert "trainer.progress=none" in args and "hydra.callbacks.report.enabled=false" in args
    exclude = next(a for a in args if a.startswith("hydra.job.config.override_dirname.exclude_keys="))
    assert "model.strides" in exclude and "batch_size" not in exclude.split("=", 1)[1].strip("[]").split(",")


def test_unknown_scale_and_experiment():
    from normbench.errors import ConfigError

    with pytest.raises(ConfigError, match="--scale"):
        experiments.sweeps("gn-batch-size", "medium")
    with pytest.raises(ConfigError, match="unknown experiment"):
        experiments.load_experiment("nope")


def test_list_claims_and_help():
    out = cli("list", "claims")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "claims:" and len(lines) == 1 + len(CLAIMS)
    for name in CLAIMS:
        assert any(line.split()[0] == name for line in lines[1:])
    help_ = cli("reproduce", "--help")
    assert help_.returncode == 0
    for text in ("--scale", "--seeds", "--out", "hydra/launcher=slurm", "gn-batch-size --seeds 5"):
        assert text in help_.stdout
    assert "reproduce" in cli("--help").stdout


def test_overrides_for_every_sweep_are_checked_before_anything_runs(tmp_path):
    from typer.testing import CliRunner

    from normbench.cli.commands import app

    for extra, message in (["dataset.permute=maybe"], "gn-batch-size: dataset.permute=maybe must be true or false"), \
                          (["+trainer.max_step=5"], "gn-batch-size: trainer takes no option 'max_step'; did you mean"):
        for dry in ([], ["--dry-run"]):
            result = CliRunner().invoke(app, ["reproduce", "gn-batch-size", *dry, *extra, "--out", str(tmp_path / "out"),
                                              "--runs", str(tmp_path / "runs")])
            assert result.exit_code == 2 and result.stderr.startswith(f"normbench: error: {message}"), result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_unknown_claim_is_one_line_and_nonzero(tmp_path):
    out = cli("reproduce", "gn-batch-sise", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("normbench: error: unknown claim 'gn-batch-sise'")
    assert "gn-batch-size" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "results").exists()


def test_reproduce_end_to_end_and_relaunch(tmp_path):
    # A swept key given on the command line replaces the experiment's values: 2 learning rates.
    args = ("reproduce", "bn-sigmoid", "--seeds", "2", "trainer.max_steps=20", "trainer.eval_every=10",
            "optim.lr=0.05,1.5")
    first = cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    results = tmp_path / "results"
    verdict = json.loads((results / "bn-sigmoid" / "verdict.json").read_text())
    assert verdict["outcome"] in ("reproduced", "not reproduced", "inconclusive")
    assert verdict["runs"] == {"completed": 8} and verdict["seeds"] == 2
    assert len(verdict["checks"]) == 3 and all(c["n_a"] == 2 for c in verdict["checks"])
    assert verdict["command"].startswith("normbench reproduce bn-sigmoid --scale small --seeds 2")
    for f in ("report.md", "README.md", "runs.csv", "summary.csv", "plots/preactivation_percentiles.png"):
        assert (results / "bn-sigmoid" / f).exists(), f
    index = (results / "README.md").read_text()
    assert "bn-sigmoid" in index and verdict["outcome"] in index and "not run yet" in index
    runs = list((tmp_path / "multirun" / "reproduce" / "bn-sigmoid" / "small").glob("sweep0-*/*/summary.json"))
    assert len(runs) == 8
    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout.count("skipped, already completed") == 8
    assert json.loads((results / "bn-sigmoid" / "verdict.json").read_text())["checks"] == verdict["checks"]

    # Another budget or seed count does not replace the verdict unless asked.
    before = (results / "bn-sigmoid" / "verdict.json").read_text()
    for other in (("trainer.max_steps=10",), ("--seeds", "3", "--report-only")):  # refused before any sweep
        refused = in_process(*args, *other, cwd=tmp_path)
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert refused.stderr.startswith("normbench: error: results/bn-sigmoid holds a verdict made by "
                                         "`normbench reproduce bn-sigmoid --scale small --seeds 2")
        assert "--out DIR" in refused.stderr and "--force" in refused.stderr and "skipped" not in refused.stdout
        assert (results / "bn-sigmoid" / "verdict.json").read_text() == before
    forced = in_process(*args, "--seeds", "3", "--report-only", "--force", cwd=tmp_path)  # no sweep: a report
    assert forced.exit_code == 0 and json.loads((results / "bn-sigmoid" / "verdict.json").read_text())["seeds"] == 3


def test_a_claim_that_cannot_run_says_so_and_fails(tmp_path):
    refused = cli("reproduce", "bn-sigmoid", "model=transformer", "trainer.max_steps=2", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("normbench: error: bn-sigmoid: unknown model 'transformer'; choose one of:")
    assert not (tmp_path / "results").exists()  # refused before anything ran or was written
    out = cli("reproduce", "bn-sigmoid", "--report-only", cwd=tmp_path)  # no runs to decide from
    assert out.returncode == 1
    assert "normbench: error: not run: bn-sigmoid" in out.stderr
    assert not (tmp_path / "results" / "bn-sigmoid").exists()
    assert "not run yet" in (tmp_path / "results" / "README.md").read_text()
