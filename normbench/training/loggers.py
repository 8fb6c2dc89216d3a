"""External experiment loggers (``logger=none``, ``logger=wandb`` or ``logger=tensorboard``).

The trainer calls :meth:`Logger.log` at every evaluation and :meth:`Logger.finish` at the end.
The run directory stays the record of a run; a logger is a copy for dashboards, and its failure
to start is an error before training (a missing package), never a lost run.

``logger=wandb`` logs the resolved config, every evaluation's metrics (at the training step)
and the summary. In a sweep the wandb group is the sweep directory's name and the run name is
the run's overrides (its subdirectory). A resumed run continues the same wandb run (its id is
kept in ``<run dir>/.wandb_id``). Offline: ``WANDB_MODE=offline`` or ``logger.mode=offline``;
wandb then writes ``wandb/offline-run-*`` under ``logger.dir``, ``$WANDB_DIR`` or the run
directory, for ``wandb sync`` later.

``logger=tensorboard`` writes TensorBoard event files into ``<run dir>/tensorboard`` (or
``logger.dir``): every evaluation's numbers as scalars at the training step, and the summary
and config as text; ``tensorboard --logdir multirun/...`` shows a sweep's runs side by side.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from normbench.errors import ConfigError

WANDB_ID_FILE = ".wandb_id"


class Logger:
    """No external logger: the run directory is the record."""

    def log(self, record: dict) -> None:
        pass

    def finish(self, summary: dict, interrupted: bool = False) -> None:
        pass


def _sweep_context() -> tuple[str | None, str | None]:
    """(sweep directory name, run overrides) when running as a job of a Hydra multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None, None
        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return None, None
        return Path(str(hc.sweep.dir)).name, str(hc.job.override_dirname) or None
    except Exception:
        return None, None


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


class WandbLogger(Logger):
    """Weights & Biases; wandb is imported and the run started at the first call."""

    def __init__(self, options: DictConfig, run_dir: Path, config: dict):
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("logger=wandb needs the wandb package, an extra: pip install \"normbench[wandb]\" "
                              "(or pip install wandb); logger=none needs nothing")
        self.options, self.run_dir, self.config = options, Path(run_dir), config
        self.run: Any = None
        self.broken = False

    def _start(self) -> Any:
        if self.run is not None:
            return self.run
        import wandb

        o = self.options
        group, name = _sweep_context()
        id_file = self.run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
        wandb_dir = Path(o.get("dir") or os.environ.get("WANDB_DIR") or self.run_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        kwargs = dict(
            project=o.get("project") or "normbench", entity=o.get("entity"),
            group=o.get("group") or group, name=o.get("run_name") or name or self.run_dir.name,
            tags=list(o.get("tags") or []), config=self.config, dir=str(wandb_dir),
            id=run_id, resume="allow", settings=wandb.Settings(console="off", silent=True),
        )
        if o.get("mode"):
            kwargs["mode"] = o.mode
        self.run = wandb.init(**kwargs)
        return self.run

    def _warn(self, exc: Exception) -> None:
        """wandb trouble never stops a run: one line on stderr, then no more wandb calls."""
        if not self.broken:
            print(f"normbench: warning: wandb logging stopped: {type(exc).__name__}: {exc} "
                  f"(the run directory still records everything)", file=sys.stderr, flush=True)
        self.broken = True

    def log(self, record: dict) -> None:
        if self.broken:
            return
        metrics = {k: v for k, v in record.items() if k != "step" and v is not None}
        try:
            self._start().log(metrics, step=int(record["step"]))
        except Exception as exc:
            self._warn(exc)

    def finish(self, summary: dict, interrupted: bool = False) -> None:
        if self.broken:
            return
        try:
            run = self._start()
            flat = _flatten({k: v for k, v in summary.items() if k != "env"})
            run.summary.update({k: v for k, v in flat.items() if v is not None})
            failed = summary.get("status") == "failed"
            run.finish(exit_code=1 if failed or interrupted else 0)
        except Exception as exc:
            self._warn(exc)
        self.run = None


class TensorboardLogger(Logger):
    """TensorBoard event files (``torch.utils.tensorboard``); the writer opens at the first call."""

    def __init__(self, options: DictConfig, run_dir: Path, config: dict):
        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("logger=tensorboard needs the tensorboard package, an extra: pip install "
                              "\"normbench[tensorboard]\" (or pip install tensorboard); logger=none needs nothing")
        self.log_dir = Path(options.get("dir") or Path(run_dir) / "tensorboard")
        self.config = config
        self.writer: Any = None

    def _start(self) -> Any:
        if self.writer is None:
            import json

            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir))
            self.writer.add_text("config", f"```\n{json.dumps(self.config, indent=2, default=str)}\n```")
        return self.writer

    def log(self, record: dict) -> None:
        writer, step = self._start(), int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(tag(key), value, step)
        writer.flush()

    def finish(self, summary: dict, interrupted: bool = False) -> None:
        import json

        writer = self._start()
        flat = {k: v for k, v in _flatten({k: v for k, v in summary.items() if k != "env"}).items()
                if v is not None}
        writer.add_text("summary", f"```\n{json.dumps(flat, indent=2, default=str)}\n```",
                        global_step=int(summary.get("steps") or 0))
        # The HParams tab: the run's config against its final numbers, to compare a sweep's runs.
        hparams = {k: v for k, v in _flatten(self.config).items()
                   if isinstance(v, (int, float, str, bool)) and not k.startswith(("hydra/", "logger/"))}
        final = {f"hparam/final_{k}": v for k, v in (summary.get("final") or {}).items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if final:
            writer.add_hparams(hparams, final, run_name=".")
        writer.close()
        self.writer = None


#: Record keys whose section is not their first word: the optimizer's rate, the loss the training
#: steps saw, and where the run stands.
_TAGS = {"lr": "optim/lr", "step_loss": "train/step_loss",
         **{k: f"progress/{k}" for k in ("epoch", "samples_seen", "wall_time_s", "train_time_s")}}


def tag(key: str) -> str:
    """A record key as a sectioned TensorBoard tag: ``test_acc`` -> ``test/acc``, ``lr`` ->
    ``optim/lr``, ``epoch`` -> ``progress/epoch``, a model's probe -> ``probe/...`` (each split
    gets its own section)."""
    if key in _TAGS:
        return _TAGS[key]
    split, _, rest = key.partition("_")
    return f"{split}/{rest}" if split in ("train", "val", "test") and rest else f"probe/{key}"


#: ``logger=`` choice -> its class
LOGGERS = {"wandb": WandbLogger, "tensorboard": TensorboardLogger}


def make_logger(cfg: DictConfig, run_dir: Path, config: dict) -> Logger:
    """The logger that ``cfg.logger`` names; ConfigError for an unknown one."""
    options = cfg.get("logger") or {}
    name = options.get("name", "none")
    if name == "none":
        return Logger()
    if name not in LOGGERS:
        raise ConfigError(f"unknown logger '{name}'; choose one of: none, {', '.join(LOGGERS)}")
    return LOGGERS[name](options, run_dir, config)
