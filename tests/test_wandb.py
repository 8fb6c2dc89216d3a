"""``logger=wandb`` offline (no network): the offline run files hold the config, every
evaluation's metrics and the summary, grouped by sweep."""

import glob
import json
import struct
from pathlib import Path

import pytest
from procs import normbench

from normbench import records


def wandb_records(path):
    """The records of a ``.wandb`` file (W&B's LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    block, data = 32768, Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # full / first, else middle / last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def _items(items):
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def read_offline_run(run_path):
    run, history, summary, config = None, [], {}, {}
    for r in wandb_records(glob.glob(str(Path(run_path) / "*.wandb"))[0]):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = r.run
            config.update(_items(r.run.config.update))
        elif kind == "config":
            config.update(_items(r.config.update))
        elif kind == "history":
            history.append(_items(r.history.item))
        elif kind == "summary":
            summary.update(_items(r.summary.update))
    return run, history, summary, config


def test_wandb_offline_logs_config_metrics_and_summary_grouped_by_sweep(tmp_path):
    pytest.importorskip("wandb", reason='needs pip install -e ".[wandb]"')
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb-files"), "WANDB_API_KEY": "",
           "WANDB_SILENT": "true"}
    sweep = tmp_path / "sweep"
    proc = normbench("run", "-m", "logger=wandb", "logger.project=nb-test", "norm=group", "trainer.max_steps=20",
                     "trainer.eval_every=10", "trainer.progress=none", f"hydra.sweep.dir={sweep}", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = sweep / "norm=group,trainer.eval_every=10,trainer.max_steps=20"  # logger stays out of the name
    local = records.read_metrics(run_dir)
    offline = glob.glob(str(tmp_path / "wandb-files" / "wandb" / "offline-run-*"))
    assert len(offline) == 1

    run, history, summary, config = read_offline_run(offline[0])
    assert run.project == "nb-test" and run.run_group == "sweep" and run.display_name == run_dir.name
    assert run.run_id == (run_dir / ".wandb_id").read_text().strip()
    assert config["norm"]["name"] == "group" and config["trainer"]["max_steps"] == 20
    assert [h["_step"] for h in history] == [m["step"] for m in local] == [0, 10, 20]
    for h, m in zip(history, local, strict=True):
        assert h["test_acc"] == pytest.approx(m["test_acc"]) and h["train_loss"] == pytest.approx(m["train_loss"])
    final = records.read_summary(run_dir)
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert summary["final/test_acc"] == pytest.approx(final["final"]["test_acc"])


def test_logger_wandb_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    from omegaconf import OmegaConf

    from normbench.errors import ConfigError
    from normbench.training.loggers import WandbLogger

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r'logger=wandb needs the wandb package, an extra: pip install "normbench\[wandb\]"'):
        WandbLogger(OmegaConf.create({}), tmp_path, {})
