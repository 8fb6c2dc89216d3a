"""Training from Python (notebooks, tests, scripts) without the command line.

>>> from normbench.api import compose, run
>>> summary = run(["norm=group", "batch_size=2", "trainer.max_steps=100"], "runs/gn-b2")
>>> summary["final"]["test_acc"]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

from normbench.cli.hydra_app import CONFIG_DIR


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``normbench run OVERRIDES...`` would train with (without Hydra's own node)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def run(overrides: Sequence[str] = (), run_dir: str | Path = "runs/api") -> dict:
    """Train with ``overrides`` into ``run_dir`` (resuming it if it holds a checkpoint).

    Returns the summary dict that ``summary.json`` holds; raises
    :class:`~normbench.errors.ConfigError` for bad input before anything is written.
    """
    from normbench.training.trainer import train

    return train(compose(overrides), run_dir)
