"""The LSTM cell and model: formulas against direct computations, gradients, sequence views, combos."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils import parametrize

from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.models.recurrent import LSTMLayer
from normbench.norms import RecurrentBatchNorm, weight_norm_data_init

EPS = 1e-5
NORM_OPTIONS = {
    "none": {},
    "batch": {"momentum": 0.1, "eps": EPS, "affine": True, "mean_only": False, "gamma_init": None},
    "layer": {"eps": EPS, "affine": True},
    "weight": {"data_init": True, "mean_only": False, "momentum": 0.1},
}


def fake_data(kind="signal", shape=(1, 12), classes=5, n=16):
    x = torch.randint(0, classes, (n, *shape)) if kind == "text" else torch.randn(n, *shape)
    return SimpleNamespace(kind=kind, name=f"fake-{kind}", input_shape=shape, num_classes=classes, x_train=x)


def lstm(norm, data=None, **model_options):
    data = data or fake_data()
    model_cfg = OmegaConf.create({"name": "lstm", "hidden_size": 8, **model_options})
    norm_cfg = OmegaConf.create({"name": norm, **NORM_OPTIONS.get(norm, {})})
    return build_model(model_cfg, norm_cfg, data)


def randomize(module: nn.Module) -> None:
    """Move every gain and bias off its initial value, so the formula tests see all of them."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("norm_x.weight", "norm_h.weight", "norm_c.weight", "layer.weight")):
                p.uniform_(0.5, 1.5)
            elif "bias" in name:
                p.uniform_(-0.5, 0.5)


def direct_lstm(layer: LSTMLayer, x, normalize):
    """The LSTM equations written out, with ``normalize(term, name, t)`` for each norm."""
    N, T, _ = x.shape
    H = layer.hidden_size
    h = torch.zeros(N, H)
    c = torch.zeros(N, H)
    W_x, W_h, b = layer.x_proj.weight, layer.h_proj.weight, layer.bias
    outputs = []
    for t in range(T):
        gates = normalize(h @ W_h.T, "h", t) + normalize(x[:, t] @ W_x.T, "x", t) + b
        i, f, g, o = gates.split(H, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(normalize(c, "c", t))
        outputs.append(h)
    return torch.stack(outputs, 1)


def test_ln_lstm_matches_ba_et_al_formula():
    torch.manual_seed(0)
    layer = LSTMLayer(3, 6, "layer", NORM_OPTIONS["layer"], max_steps=5)
    randomize(layer)
    x = torch.randn(4, 5, 3)
    norms = {"h": layer.norm_h.layer, "x": layer.norm_x.layer, "c": layer.norm_c.layer}

    def layer_norm(z, name, t):
        mean = z.mean(dim=1, keepdim=True)  # over the features of each sample
        var = ((z - mean) ** 2).mean(dim=1, keepdim=True)
        return (z - mean) / torch.sqrt(var + EPS) * norms[name].weight + norms[name].bias

    out, (h, c) = layer(x)
    expected = direct_lstm(layer, x, layer_norm)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, expected[:, -1])


def test_bn_lstm_matches_cooijmans_et_al_formula_in_training():
    torch.manual_seed(1)
    layer = LSTMLayer(3, 6, "batch", NORM_OPTIONS["batch"], max_steps=5).train()
    randomize(layer)
    assert layer.norm_x.bias is None and layer.norm_h.bias is None  # no beta on W_x x, W_h h
    assert layer.norm_c.bias is not None                            # gamma and beta on c_t
    x = torch.randn(16, 5, 3)
    norms = {"h": layer.norm_h, "x": layer.norm_x, "c": layer.norm_c}

    def batch_norm(z, name, t):
        mean = z.mean(dim=0, keepdim=True)  # over the batch, at step t only
        var = ((z - mean) ** 2).mean(dim=0, keepdim=True)
        y = (z - mean) / torch.sqrt(var + EPS) * norms[name].weight
        return y + norms[name].bias if norms[name].bias is not None else y

    expected = direct_lstm(layer, x, batch_norm)  # before the forward pass: stats untouched
    out, _ = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_plain_cell_is_the_lstm_of_pytorch():
    torch.manual_seed(2)
    layer = LSTMLayer(3, 6, "none", {}, max_steps=7)
    randomize(layer)
    ref = nn.LSTM(3, 6, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(layer.x_proj.weight)
        ref.weight_hh_l0.copy_(layer.h_proj.weight)
        ref.bias_ih_l0.copy_(layer.bias)
        ref.bias_hh_l0.zero_()
    x = torch.randn(4, 7, 3)
    torch.testing.assert_close(layer(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["none", "batch", "layer", "weight"])
@pytest.mark.parametrize("kind", ["signal", "text"])
def test_gradients_reach_every_parameter(norm, kind):
    torch.manual_seed(3)
    data = fake_data(kind, shape=(12,) if kind == "text" else (2, 12))
    model = lstm(norm, data, num_layers=2).train()
    out = model(data.x_train)
    if kind == "text":
        assert out.shape == (16, 12, 5)
        loss = F.cross_entropy(out.reshape(-1, 5), data.x_train.reshape(-1))
    else:
        assert out.shape == (16, 5)
        loss = F.cross_entropy(out, torch.arange(16) % 5)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_bn_lstm_has_per_step_norms_with_gamma_0_1_and_the_ablation():
    model = lstm("batch", num_layers=2)
    bns = [m for m in model.modules() if isinstance(m, RecurrentBatchNorm)]
    assert len(bns) == 6  # W_x x, W_h h and c_t in each of two layers
    assert all(bn.max_steps == 12 for bn in bns)
    assert all(torch.all(bn.weight == 0.1) for bn in bns)
    norm_cfg = OmegaConf.create({"name": "batch", **NORM_OPTIONS["batch"], "gamma_init": 1.0})
    ablation = build_model(OmegaConf.create({"name": "lstm", "hidden_size": 8}), norm_cfg, fake_data())
    assert all(torch.all(m.weight == 1.0) for m in ablation.modules() if isinstance(m, RecurrentBatchNorm))


def test_bn_lstm_evaluates_sequences_longer_than_training():
    torch.manual_seed(4)
    data = fake_data("text", shape=(10,))
    model = lstm("batch", data).train()
    model(data.x_train)
    model.eval()
    with torch.no_grad():
        long = model(torch.randint(0, 5, (3, 35)))
    assert long.shape == (3, 35, 5) and torch.isfinite(long).all()


def test_weight_norm_reparameterizes_both_matrices_and_data_init_skips_the_recurrent_one():
    torch.manual_seed(5)
    model = lstm("weight")
    layer = model.layers[0]
    assert parametrize.is_parametrized(layer.x_proj, "weight")
    assert parametrize.is_parametrized(layer.h_proj, "weight")
    g_h = layer.h_proj.parametrizations.weight.original0.clone()
    x = torch.randn(32, 1, 12)
    weight_norm_data_init(model, x)
    torch.testing.assert_close(layer.h_proj.parametrizations.weight.original0, g_h)
    # The input term now has unit variance per unit over the batch and every step.
    wx = layer.x_proj(model.as_sequence(x).reshape(-1, 1))
    torch.testing.assert_close(wx.std(0, unbiased=False), torch.ones(32), rtol=1e-3, atol=1e-3)


def test_sequence_views():
    model = lstm("none", fake_data("signal", (3, 7)))
    x = torch.randn(2, 3, 7)
    assert torch.equal(model.as_sequence(x), x.transpose(1, 2))  # 7 steps of 3 features
    img = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).view(2, 1, 4, 5)
    pixels = lstm("none", fake_data("image", (1, 4, 5)))
    assert pixels.as_sequence(img).shape == (2, 20, 1)
    assert torch.equal(pixels.as_sequence(img)[0, :, 0], img[0].flatten())  # raster order
    rows = lstm("none", fake_data("image", (1, 4, 5)), image_sequence="rows")
    assert torch.equal(rows.as_sequence(img), img[:, 0])  # 4 steps of 5 values
    assert rows.layers[0].norm_h is not None and rows.max_steps == 4
    assert rows(img).shape == (2, 5)


def test_values_per_step_groups_consecutive_positions():
    model = lstm("layer", fake_data("signal", (2, 12)), values_per_step=4)
    x = torch.arange(2 * 2 * 12, dtype=torch.float32).view(2, 2, 12)
    seq = model.as_sequence(x)
    assert seq.shape == (2, 3, 8) and model.max_steps == 3
    assert torch.equal(seq[0, 1], x[0, :, 4:8].T.reshape(-1))  # positions 4..7, channels interleaved
    assert model(x).shape == (2, 5)
    with pytest.raises(ConfigError, match="must divide the 12 steps"):
        lstm("none", fake_data("signal", (2, 12)), values_per_step=5)
    with pytest.raises(ConfigError, match="one character per step"):
        lstm("none", fake_data("text", (12,)), values_per_step=2)


def test_h0_noise_only_in_training():
    torch.manual_seed(6)
    model = lstm("none", h0_noise=1.0)
    x = torch.randn(4, 1, 12)
    model.train()
    assert not torch.equal(model(x), model(x))  # a fresh h_0 each pass
    model.eval()
    assert torch.equal(model(x), model(x))


def test_initialisation_options():
    model = lstm("none", recurrent_init="identity", input_init="orthogonal", forget_bias=2.0)
    layer = model.layers[0]
    for block in layer.h_proj.weight.detach().split(8):
        assert torch.equal(block, torch.eye(8))
    assert torch.all(layer.bias[8:16] == 2.0) and torch.all(layer.bias[:8] == 0)
    ortho = lstm("none", data=fake_data("signal", (8, 12)), recurrent_init="orthogonal").layers[0]
    for weight in (ortho.h_proj.weight, ortho.x_proj.weight):
        for block in weight.detach().split(8):
            torch.testing.assert_close(block @ block.T, torch.eye(8), atol=1e-5, rtol=0)


def test_fused_reference_is_nn_lstm_and_only_for_norm_none():
    model = lstm("none", impl="torch")
    assert isinstance(model.fused, nn.LSTM)
    assert model(torch.randn(3, 1, 12)).shape == (3, 5)
    with pytest.raises(ConfigError, match="model.impl=torch .* norm=batch"):
        lstm("batch", impl="torch")


@pytest.mark.parametrize("norm", ["group", "instance"])
def test_meaningless_norms_in_an_lstm_fail_with_one_line(norm):
    norm_cfg = OmegaConf.create({"name": norm, "eps": EPS, "affine": True})
    with pytest.raises(ConfigError) as info:
        build_model(OmegaConf.create({"name": "lstm", "hidden_size": 8}), norm_cfg, fake_data())
    message = str(info.value)
    assert "\n" not in message and f"norm={norm}" in message and "use norm=none, batch, layer, weight or rms" in message


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_feed_forward_models_reject_text(model):
    with pytest.raises(ConfigError, match=f"model={model} cannot read .*text"):
        build_model(OmegaConf.create({"name": model}), OmegaConf.create({"name": "none"}), fake_data("text", (10,)))


def test_bad_model_options_are_config_errors():
    with pytest.raises(ConfigError, match="model.image_sequence=columns"):
        lstm("none", image_sequence="columns")
    with pytest.raises(ConfigError, match="model.hidden_size=0"):
        lstm("none", hidden_size=0)
    with pytest.raises(ConfigError, match="model.h0_noise"):
        lstm("none", h0_noise=-1)


def test_feed_forward_batch_norm_ignores_a_null_gamma_init():
    cfg = OmegaConf.create({"name": "batch", **NORM_OPTIONS["batch"]})
    cnn = build_model(OmegaConf.create({"name": "cnn", "channels": [8], "strides": [1]}), cfg,
                      fake_data("signal", (1, 12)))
    bn = next(m for m in cnn.modules() if isinstance(m, nn.BatchNorm1d))
    assert torch.all(bn.weight == 1.0)
    cfg.gamma_init = 0.25
    cnn = build_model(OmegaConf.create({"name": "cnn", "channels": [8], "strides": [1]}), cfg,
                      fake_data("signal", (1, 12)))
    bn = next(m for m in cnn.modules() if isinstance(m, nn.BatchNorm1d))
    assert torch.all(bn.weight == 0.25)
