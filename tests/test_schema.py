"""Typed configs: every key of every packaged config has a rule in normbench.config.schema, and a value
that breaks it is refused in one line at composition, for single runs and for every value of a sweep."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from procs import cli
from typer.testing import CliRunner

from normbench.cli.commands import app
from normbench.config import schema
from normbench.config.catalog import CONFIG_DIR, option_keys
from normbench.config.validation import check_rules
from normbench.errors import ConfigError

GROUPS = ("dataset", "model", "norm", "optim", "logger", "trainer")


def packaged_configs():
    """(group, option, the composed config) for every option of every config group."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return [(group, option, compose(config_name="config", overrides=[f"{group}={option}"]))
                for group in GROUPS for option in loader.get_group_options(group)]


def test_every_key_of_every_packaged_config_has_a_rule_and_its_default_passes():
    run_keys = {key for key, _, _ in schema.RUN_RULES}
    configs = packaged_configs()
    assert len(configs) >= 30
    for group, option, cfg in configs:
        check_rules(cfg)  # the defaults are valid
        section = OmegaConf.to_container(cfg[group], resolve=True)
        if group == "trainer":
            missing = {f"trainer.{k}" for k in section} - run_keys
        else:
            missing = set(section) - set(schema.rules_for(group, section.get("name")))
            # What the check of unknown keys takes a component to read is what Hydra composes for it.
            assert option_keys(group, section["name"]) == set(section), f"{group}={option}"
        assert not missing, f"{group}={option}: no rule for {sorted(missing)}"
    top = {k for k in OmegaConf.to_container(configs[0][2]) if k not in GROUPS}
    assert top <= run_keys


def test_the_choices_the_schema_allows_are_the_ones_implemented():
    from normbench.models.film import PRESETS
    from normbench.models.mlp import ACTIVATIONS

    assert tuple(PRESETS) == schema.FILM_PRESETS
    assert tuple(ACTIVATIONS) == schema.ACTIVATIONS


@pytest.mark.parametrize("overrides,message", [
    (["dataset.permute=off"], "dataset.permute=off must be true or false"),
    (["trainer.amp=maybe"], "trainer.amp=maybe must be true or false"),
    (["model=resnet", "dataset=digits", "model.zero_init_residual=sometimes"],
     "model.zero_init_residual=sometimes must be true or false"),
    (["model=mlp", "model.activation=swish"], "model.activation=swish is not one of relu, sigmoid, tanh, gelu"),
    (["model=lstm", "model.input_init=he"], "model.input_init=he is not one of orthogonal, xavier, default"),
    (["model=film", "model.film=off"], "model.film=off is not one of full, gamma_only, beta_only"),
    (["optim.schedule=linear"], "optim.schedule=linear is not one of constant, cosine, step"),
    (["model=mlp", "model.depth=two"], "model.depth=two must be a positive integer"),
    (["norm.momentum=1.5"], "norm.momentum=1.5 is not a fraction"),
    (["norm=renorm", "norm.r_max=0.5"], "norm.r_max=0.5 must be a number >= 1"),
    (["optim=adam", "optim.betas=[0.9]"], "optim.betas=[0.9] must be a list of 2 items"),
    (["model=cnn", "model.channels=[32,0]"], "model.channels=[32, 0] has an item that must be a positive integer"),
    (["dataset.train_split=train"], "dataset.train_split=train must be the training share"),
    (["dataset=text", "model=lstm", "dataset.test_fraction=1.5"], "dataset.test_fraction=1.5 must lie strictly"),
    (["model=resnet", "dataset=digits", "model.variant=vgg"], "model.variant=vgg is not one of auto, cifar, imagenet"),
    (["norm.gamma_init=-1"], "norm.gamma_init=-1 must be a positive number (Cooijmans et al. use 0.1)"),
    (["dataset=text", "model=lstm", "dataset.seq_len=0"], "dataset.seq_len=0 must be a positive integer"),
    (["trainer.device=gpu"], "trainer.device=gpu is not a device"),
    (["objective=val_accuracy"], "objective=val_accuracy must be auto or a final metric of a run"),
    (["objective=test_acc"], "objective=test_acc selects on the test set, which is reported, never selected on"),
    # A key nothing reads, added with +: in the trainer, or in a packaged component.
    (["+trainer.max_step=5"], "trainer takes no option 'max_step'; did you mean 'max_steps'? its options: max_steps,"),
    (["+dataset.foo=1"], "dataset=mnist1d takes no option 'foo'; its options: num_samples, train_split,"),
    (["+logger.project=x"], "logger=none takes no option 'project'; its options: none"),
    (["+optim.alpha=0.9"], "optim=sgd takes no option 'alpha'; its options: lr, momentum,"),
    (["+model.depth=3"], "model=cnn takes no option 'depth'; its options: channels, strides, kernel_size, activation"),
    (["logger=wandb", "logger.mode=sometimes"], "logger.mode=sometimes is not one of online, offline, disabled"),
])
def test_a_bad_value_is_refused_in_one_line_before_anything_is_made(tmp_path, overrides, message):
    result = CliRunner().invoke(app, ["run", *overrides, f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"normbench: error: {message}") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "run").exists()


def test_every_value_of_a_sweep_is_checked_before_the_sweep_starts(tmp_path):
    sweep = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["run", "-m", "seed=0,1", "dataset.permute=false,maybe", f"hydra.sweep.dir={sweep}"])
    assert result.exit_code == 2
    assert result.stderr == "normbench: error: dataset.permute=maybe must be true or false\n"
    assert not sweep.exists()
    # A value's rule is the one of the component it runs with: CLEVR's splits are names, not fractions.
    mixed = CliRunner().invoke(app, ["run", "-m", "dataset=mnist1d,clevr", "dataset.train_split=0.5",
                                     f"hydra.sweep.dir={sweep}"])
    assert mixed.exit_code == 2 and "dataset.train_split=0.5 must be a string" in mixed.stderr
    misplaced = CliRunner().invoke(app, ["run", "-m", "norm=batch,group", "norm.groups=4", f"hydra.sweep.dir={sweep}"])
    assert misplaced.exit_code == 2 and "norm.groups belongs to norm=group" in misplaced.stderr
    assert not sweep.exists()


def test_a_user_option_is_checked_by_its_group_and_component_rules(tmp_path):
    """A norm option from a user's config directory: Hydra composes it; the schema checks it."""
    (tmp_path / "norm").mkdir()
    (tmp_path / "norm" / "gn_bad.yaml").write_text("defaults:\n  - group\n  - _self_\ngroups: four\n")
    (tmp_path / "norm" / "scale.yaml").write_text("name: scale\neps: -1.0\n")  # a plugin's norm: group rules
    for option, message in (("gn_bad", "norm.groups=four must be a positive integer"),
                            ("scale", "norm.eps=-1.0 must be a positive number")):
        result = CliRunner().invoke(app, ["run", "-m", "--config-dir", str(tmp_path), f"norm={option},batch",
                                          f"hydra.sweep.dir={tmp_path / 'sweep'}"])
        assert result.exit_code == 2 and result.stderr == f"normbench: error: {message}\n", result.stderr
    searched = CliRunner().invoke(app, ["run", f"hydra.searchpath=[file://{tmp_path}]", "norm=gn_bad",
                                        f"hydra.run.dir={tmp_path / 'run'}"])
    assert searched.exit_code == 2 and "norm.groups=four must be a positive integer" in searched.stderr
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "run").exists()


def test_the_python_api_checks_the_same_rules_and_writes_nothing(tmp_path):
    from normbench.api import run

    with pytest.raises(ConfigError, match="dataset.permute=maybe must be true or false"):
        run(["dataset.permute=maybe"], tmp_path / "runs" / "api")
    assert not (tmp_path / "runs").exists()
    # Refused later, by the loader, inside the run lock: the directories the lock made go too.
    with pytest.raises(ConfigError, match="lacks MNIST's files"):
        run(["dataset=mnist", f"dataset.root={tmp_path / 'nowhere'}"], tmp_path / "runs" / "api")
    assert not (tmp_path / "runs").exists()


def test_a_primary_config_of_the_users_own_is_left_to_hydra(tmp_path):
    """--config-name picks another primary config: its own keys are not refused as unknown."""
    (tmp_path / "mine.yaml").write_text("defaults:\n  - config\n  - _self_\nmykey: 3\n")
    result = CliRunner().invoke(app, ["run", "-m", "--config-dir", str(tmp_path), "--config-name", "mine",
                                      "mykey=4,5", "seed=0,1", "--dry-run", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert result.exit_code == 0, result.output
    assert "4 jobs" in result.stdout and "mykey=5 seed=1" in result.stdout


def test_the_sweep_check_composes_what_hydra_would(tmp_path):
    """Deletions, dicts, quoted paths and globs reach the check as Hydra's sweeper writes them: no false refusal."""
    sweep = f"hydra.sweep.dir={tmp_path / 'sweep'}"
    result = CliRunner().invoke(app, ["run", "-m", "seed=0,1", "~norm.also_exact", "+notes={a:1,b:[x,'y z']}",
                                      "dataset=mnist", "dataset.root='/data/my mnist'", "--dry-run", sweep])
    assert result.exit_code == 0, result.output
    globbed = CliRunner().invoke(app, ["run", "-m", "norm=glob(*,exclude=[ghost,renorm])", "--dry-run", sweep])
    assert globbed.exit_code == 0 and "7 jobs" in globbed.stdout and "norm=weight" in globbed.stdout
    refused = CliRunner().invoke(app, ["run", "-m", "norm=glob(gr*)", "norm.groups=0", sweep])
    assert refused.exit_code == 2 and refused.stderr == "normbench: error: norm.groups=0 must be a positive integer\n"
    drawn = CliRunner().invoke(app, ["run", "-m", "optim.lr=tag(log,interval(0.001,1.0))", "--dry-run", sweep])
    assert drawn.exit_code == 2 and "draws from an interval" in drawn.stderr
    assert not (tmp_path / "sweep").exists()


def test_a_config_with_several_problems_names_each_on_a_line_of_its_own(tmp_path):
    result = cli("run", "batch_size=0", "dataset.permute=maybe", "norm.momentum=1.5", "+dataset.foo=1",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2 and not (tmp_path / "run").exists()
    assert result.stderr.splitlines() == [
        "normbench: error: batch_size=0 must be a positive integer",
        "normbench: error: norm.momentum=1.5 is not a fraction; use a value in [0, 1]",
        "normbench: error: dataset.permute=maybe must be true or false",
        "normbench: error: dataset=mnist1d takes no option 'foo'; its options: num_samples, train_split, "
        "num_test, generator_seed, permute, permute_seed, label_noise, seed, val_fraction, draw",
    ]
