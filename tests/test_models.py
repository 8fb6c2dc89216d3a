import itertools

import pytest
import torch
from torch import nn

from normbench.api import compose
from normbench.data import load_dataset
from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.norms import NORMS, MeanOnlyBatchNorm, weight_normed_layers

DATASETS = {name: load_dataset(compose([f"dataset={name}"]).dataset) for name in ("mnist1d", "digits")}


def build(model, norm, data="mnist1d", *extra):
    cfg = compose([f"model={model}", f"norm={norm}", f"dataset={data}", *extra])
    return build_model(cfg.model, cfg.norm, DATASETS[data])


# Every registered norm: a new one is tested here without editing a list.
COMBOS = [c for c in itertools.product(["mlp", "cnn"], NORMS, DATASETS) if not (c[0] == "mlp" and NORMS[c[1]].needs_positions)]


@pytest.mark.parametrize("model,norm,data", COMBOS)
def test_every_model_trains_with_every_norm(model, norm, data):
    torch.manual_seed(0)
    net = build(model, norm, data)
    d = DATASETS[data]
    x, y = d.x_train[:16], d.y_train[:16]
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    logits = net(x)
    assert logits.shape == (16, 10)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)
    opt.step()
    net.eval()
    assert net(x[:1]).shape == (1, 10)  # eval works on a single sample, whatever the norm


def test_cnn_is_1d_for_signals_2d_for_images_and_uses_the_norm():
    assert isinstance(build("cnn", "batch").features[0], nn.Conv1d)
    assert isinstance(build("cnn", "batch").features[1], nn.BatchNorm1d)
    assert isinstance(build("cnn", "batch", "digits").features[0], nn.Conv2d)
    assert isinstance(build("cnn", "group", "digits").features[1], nn.GroupNorm)
    assert build("cnn", "group").features[1].num_groups == 8


def test_bias_only_where_no_norm_supplies_a_shift():
    for norm, has_bias in [("batch", False), ("group", False), ("layer", False), ("none", True), ("weight", True),
                           ("rms", True), ("ghost", False), ("renorm", False)]:
        net = build("mlp", norm)
        hidden = [m for m in net.modules() if isinstance(m, nn.Linear)][:-1]
        assert all((m.bias is not None) == has_bias for m in hidden), norm
    mean_only = build("mlp", "weight", "mnist1d", "norm.mean_only=true")
    assert any(isinstance(m, MeanOnlyBatchNorm) for m in mean_only.modules())


def test_weight_norm_covers_every_conv_and_linear():
    net = build("cnn", "weight")
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    assert len(weight_normed_layers(net)) == len(layers) == 4


def test_mlp_sigmoid_depth_width():
    net = build("mlp", "batch", "mnist1d", "model.activation=sigmoid", "model.depth=3", "model.width=100")
    assert sum(isinstance(m, nn.Sigmoid) for m in net.modules()) == 3
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [100, 100, 100, 10]


def test_bad_combinations_raise_config_errors():
    with pytest.raises(ConfigError, match="norm=instance"):
        build("mlp", "instance")
    with pytest.raises(ConfigError, match="norm.groups=5"):
        build("cnn", "group", "mnist1d", "norm.groups=5")
    with pytest.raises(ConfigError, match="unknown activation"):
        build("mlp", "none", "mnist1d", "model.activation=swishy")
