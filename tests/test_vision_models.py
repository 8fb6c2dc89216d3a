"""ResNets, ConvPool-CNN-C, initialisation, norm weight decay and the step/warm-up schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from normbench.api import compose
from normbench.config.validation import check_rules
from normbench.data import TensorData
from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.models.resnet import last_norms
from normbench.norms import NORMS, norm_parameters, weight_normed_layers
from normbench.training.optim import build_optimizer, schedule_factor


def image_data(shape=(3, 32, 32), n=8, classes=10) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return TensorData("fake", "image", x, y, x, y, classes)


def build(*overrides, data=None):
    cfg = compose(["model=resnet", *overrides])
    torch.manual_seed(0)
    return build_model(cfg.model, cfg.norm, data or image_data())


def count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("depth,params", [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018),
                                          (110, 1_727_962)])
def test_cifar_resnets_have_the_papers_size(depth, params):
    net = build("norm=batch", f"model.depth={depth}")
    assert net.variant == "cifar"
    assert sum(p.numel() for p in net.parameters()) == params  # 0.27M, 0.46M, 0.66M, 0.85M, 1.7M
    assert count(net, nn.Conv2d) == depth - 1 and count(net, nn.Linear) == 1
    assert count(net, nn.BatchNorm2d) == depth - 1


def test_imagenet_resnet50_matches_torchvision():
    net = build("norm=batch", "model.depth=50", data=image_data((3, 224, 224), n=2, classes=1000))
    assert net.variant == "imagenet"
    assert sum(p.numel() for p in net.parameters()) == 25_557_032
    gn = build("norm=group", "norm.groups=32", "model.depth=50", data=image_data((3, 224, 224), n=2, classes=1000))
    assert count(gn, nn.GroupNorm) == 53 and count(gn, nn.BatchNorm2d) == 0
    assert all(m.num_groups == 32 for m in gn.modules() if isinstance(m, nn.GroupNorm))


# The ImageNet ResNet-18 takes seconds per norm on 2 busy cores: three by default, all with -m slow.
_FAST_IMAGENET = ("batch", "group", "weight")
RESNET_CASES = [(norm, "cifar") for norm in NORMS] + [
    pytest.param(norm, "imagenet", marks=() if norm in _FAST_IMAGENET else pytest.mark.slow) for norm in NORMS]


@pytest.mark.parametrize("norm,variant", RESNET_CASES)
def test_every_norm_trains_in_the_resnets(norm, variant):
    extra = ["model.depth=18"] if variant == "imagenet" else []
    data = image_data((3, 64, 64) if variant == "imagenet" else (3, 32, 32), n=4)  # 2x2 maps in the last stage
    net = build(f"norm={norm}", f"model.variant={variant}", *extra, data=data)
    x, y = data.x_train, data.y_train
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    if norm == "weight":
        assert len(weight_normed_layers(net)) == count(net, nn.Conv2d) + 1
    net.eval()
    assert net(x[:1]).shape == (1, 10)


def test_mnist_shaped_images_work_in_both_variants():
    data = image_data((1, 28, 28), n=4)
    for variant in ("cifar", "imagenet"):
        net = build("norm=group", f"model.variant={variant}", "model.depth=18" if variant == "imagenet" else "model.depth=20",
                    data=data)
        assert net(data.x_train).shape == (4, 10)


def test_zero_init_residual_zeroes_the_last_gamma_of_each_block():
    net = build("norm=group")
    lasts = last_norms(net)
    assert len(lasts) == 9
    assert all(torch.all(n.weight == 0) for n in lasts)
    others = [m for m in net.modules() if isinstance(m, nn.GroupNorm) and all(m is not n for n in lasts)]
    assert len(others) == 10 and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in others)
    off = build("norm=group", "model.zero_init_residual=false")
    assert all(torch.all(n.weight == 1) for n in last_norms(off))
    r50 = build("norm=batch", "model.depth=50", data=image_data((3, 96, 96), n=2))
    assert len(last_norms(r50)) == 16 and all(torch.all(n.weight == 0) for n in last_norms(r50))
    # He init: conv weights have std sqrt(2 / fan_out).
    conv = net.net.blocks[0].conv1
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (16 * 9)), rel=0.15)


def test_group_count_that_does_not_divide_16_channels_is_a_helpful_error():
    with pytest.raises(ConfigError, match=r"norm.groups=32 does not divide the 16 channels.*1, 2, 4, 8, 16"):
        build("norm=group", "norm.groups=32")


@pytest.mark.parametrize("override,message", [("model.depth=21", "6n\\+2"), ("model.variant=imagenet", "18, 34, 50")])
def test_bad_resnet_options(override, message):
    with pytest.raises(ConfigError, match=message):
        build(override)


def test_resnet_refuses_signals():
    cfg = compose(["model=resnet", "dataset=mnist1d"])
    signal = TensorData("mnist1d", "signal", torch.zeros(4, 1, 40), torch.zeros(4, dtype=torch.long),
                        torch.zeros(4, 1, 40), torch.zeros(4, dtype=torch.long), 10)
    with pytest.raises(ConfigError, match="model=resnet cannot read dataset=mnist1d"):
        build_model(cfg.model, cfg.norm, signal)


@pytest.mark.parametrize("norm", ["none", "batch", "weight"])
def test_convpool_cnn_c(norm):
    cfg = compose(["model=convpool", f"norm={norm}"])
    torch.manual_seed(0)
    net = build_model(cfg.model, cfg.norm, image_data())
    assert count(net, nn.Conv2d) == 9 and count(net, nn.Dropout) == 2 and count(net, nn.LeakyReLU) == 9
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96] * 3 + [192] * 6
    assert [c.kernel_size[0] for c in convs] == [3] * 7 + [1, 1]
    x = image_data().x_train
    assert net(x).shape == (8, 10)
    net.eval()
    assert torch.equal(net(x), net(x))  # no noise nor dropout in eval


def test_norm_weight_decay_switch_makes_param_groups():
    net = build("norm=group")
    norms = norm_parameters(net)
    assert len(norms) == 2 * 19
    cfg = compose(["model=resnet", "optim.weight_decay=1e-4"]).optim
    opt, _ = build_optimizer(cfg, net, 32)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 1e-4
    cfg = compose(["model=resnet", "optim.weight_decay=1e-4", "optim.norm_weight_decay=false"]).optim
    opt, _ = build_optimizer(cfg, net, 32)
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 1e-4 and free["weight_decay"] == 0.0
    assert {id(p) for p in free["params"]} == {id(p) for p in norms}
    assert len(decayed["params"]) + len(free["params"]) == len(list(net.parameters()))


def factors(overrides, total, per_epoch):
    f = schedule_factor(compose(overrides).optim, total, per_epoch)
    return [f(step) for step in range(total)]


def test_step_schedule_divides_by_ten_at_the_milestones():
    f = factors(["optim.schedule=step", "optim.milestones=[3,6,9]"], 100, per_epoch=10)
    assert f[0] == f[29] == 1 and f[30] == f[59] == pytest.approx(0.1)
    assert f[60] == pytest.approx(0.01) and f[90] == f[99] == pytest.approx(0.001)


def test_warmup_composes_with_step_and_cosine():
    f = factors(["optim.schedule=step", "optim.milestones=[3]", "optim.warmup_epochs=0.5"], 40, per_epoch=10)
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0]) and f[29] == 1 and f[30] == pytest.approx(0.1)
    f = factors(["optim.schedule=cosine", "optim.warmup_steps=4"], 24, per_epoch=10)
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and f[4] == 1.0
    assert f[14] == pytest.approx(0.5) and f[23] == pytest.approx(0.5 * (1 + math.cos(math.pi * 19 / 20)))
    assert schedule_factor(compose([]).optim, 10, 5) is None  # constant without warm-up: no per-step work
    assert factors(["optim.warmup_steps=2"], 4, 1) == [0.5, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("override,message", [("optim.schedule=exp", "constant, cosine, step"),
                                              ("optim.milestones=[60,30]", "increasing"),
                                              ("optim.warmup_epochs=-1", "non-negative")])
def test_bad_schedules(override, message):
    with pytest.raises(ConfigError, match=message):
        check_rules(compose(["optim.schedule=step", override]))
