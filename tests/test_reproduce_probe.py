"""The model probe the BN claim needs: the MLP's last-layer pre-activation percentiles,
recorded by the trainer at every evaluation; models without a probe record nothing extra."""

from __future__ import annotations

import torch

from normbench.api import compose
from normbench.records import read_metrics
from normbench.training.trainer import train


def test_mlp_probe_percentiles_are_recorded(tmp_path):
    cfg = compose(["model=mlp", "model.activation=sigmoid", "norm=none", "trainer.max_steps=4",
                   "trainer.eval_every=2", "trainer.progress=none"])
    train(cfg, tmp_path / "mlp")
    records = read_metrics(tmp_path / "mlp")
    assert [r["step"] for r in records] == [0, 2, 4]
    for r in records:
        assert r["preact_p15"] <= r["preact_p50"] <= r["preact_p85"]


def test_probe_matches_the_layer_input():
    from normbench.models.mlp import MLP

    torch.manual_seed(0)
    model = MLP((1, 40), 10, "batch", {}, depth=2, width=16, activation="sigmoid").eval()
    x = torch.randn(200, 1, 40)
    pre = model.net[:-2](x)[:, 0]  # the input of the last sigmoid, unit 0
    probe = model.probe(x)
    assert abs(probe["preact_p50"] - pre.median().item()) < 0.05
    assert probe["preact_p15"] < probe["preact_p85"]


def test_models_without_probe_record_no_percentiles(tmp_path):
    cfg = compose(["model=cnn", "trainer.max_steps=2", "trainer.progress=none"])
    train(cfg, tmp_path / "cnn")
    assert not any(k.startswith("preact") for k in read_metrics(tmp_path / "cnn")[-1])
