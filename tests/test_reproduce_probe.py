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
    assert all({"preact_p15", "preact_p50", "preact_p85"} <= set(r) for r in records)
    # The weights move, so the pre-activation the probe follows moves too (BN paper, Figure 1).
    assert records[0]["preact_p50"] != records[-1]["preact_p50"]


def test_probe_matches_the_layer_input():
    from normbench.models.mlp import MLP

    torch.manual_seed(0)
    model = MLP((1, 40), 10, "batch", {}, depth=2, width=16, activation="sigmoid").eval()
    x = torch.randn(200, 1, 40)
    pre = model.net[:-2](x)[:, 0]  # the input of the last sigmoid, unit 0
    probe = model.probe(x)
    ordered = pre.sort().values  # each percentile by hand: linear interpolation between order statistics
    for name, q in (("preact_p15", 0.15), ("preact_p50", 0.5), ("preact_p85", 0.85)):
        at = q * (len(ordered) - 1)
        lo, frac = int(at), at - int(at)
        expected = ordered[lo] + frac * (ordered[min(lo + 1, len(ordered) - 1)] - ordered[lo])
        assert abs(probe[name] - expected.item()) < 1e-5, name


def test_models_without_probe_record_no_percentiles(tmp_path):
    cfg = compose(["model=cnn", "trainer.max_steps=2", "trainer.progress=none"])
    train(cfg, tmp_path / "cnn")
    assert not any(k.startswith("preact") for k in read_metrics(tmp_path / "cnn")[-1])
