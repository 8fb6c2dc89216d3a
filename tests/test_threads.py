"""The thread policy (``trainer.threads``): what ``auto`` picks, and what the record says."""

import pytest
import torch

from normbench.api import compose, run
from normbench.training.environment import SMALL_MODEL_PARAMS, set_threads

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_an_explicit_count_is_used(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert set_threads(2, CPU, 10) == "trainer.threads" and torch.get_num_threads() == 2


def test_auto_respects_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)
    assert set_threads("auto", CPU, 10) == "OMP_NUM_THREADS" and torch.get_num_threads() == 3


def test_auto_gives_a_small_model_one_thread_and_a_large_one_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert set_threads("auto", CPU, 32_554).startswith("auto: a small model") and torch.get_num_threads() == 1
    assert set_threads("auto", CPU, SMALL_MODEL_PARAMS) == "auto: 4 cores for 1 job"
    assert torch.get_num_threads() == 4
    monkeypatch.setattr("normbench.training.environment.parallel_jobs", lambda: 2)  # a local sweep, 2 jobs at once
    assert set_threads("auto", CPU, SMALL_MODEL_PARAMS) == "auto: 4 cores for 2 jobs"
    assert torch.get_num_threads() == 2


def test_the_record_says_how_many_threads_and_why(tmp_path, monkeypatch, tiny_overrides):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = run(tiny_overrides, tmp_path / "auto")["env"]
    assert env["threads"] == 1 and env["threads_from"].startswith("auto: a small model")
    env = run([*tiny_overrides, "trainer.threads=2"], tmp_path / "two")["env"]
    assert env["threads"] == 2 and env["threads_from"] == "trainer.threads"
    with pytest.raises(ValueError, match="trainer.threads=0 must be auto or a positive integer"):
        run([*tiny_overrides, "trainer.threads=0"], tmp_path / "zero")
    assert compose([]).trainer.threads == "auto"


@pytest.mark.parametrize("n_jobs,expected", [(3, 3), (-1, "cores"), (None, 1), (0, 1)])
def test_a_local_sweeps_jobs_share_the_cores(monkeypatch, n_jobs, expected):
    import os

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from normbench.training.environment import parallel_jobs

    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: OmegaConf.create({"launcher": {"n_jobs": n_jobs}})))
    assert parallel_jobs() == (os.cpu_count() if expected == "cores" else expected)
