"""Every normalization against its formula, on random inputs, in train and eval mode."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from normbench.api import compose
from normbench.models import norm_options
from normbench.norms import (
    NORMS,
    MeanOnlyBatchNorm,
    apply_weight_norm,
    make_norm,
    weight_norm_data_init,
    weight_normed_layers,
)

SHAPES = {0: (16, 8), 1: (16, 8, 10), 2: (16, 8, 5, 6)}
EPS = 1e-5


def randn(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 3 + 1.5


def set_affine(layer, C):
    """Non-trivial γ and β so the affine part of each formula is checked too."""
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(0.5, 2.0, C))
        layer.bias.copy_(torch.linspace(-1.0, 1.0, C))
    return layer.weight.detach(), layer.bias.detach()


def yaml_options(kind):
    """The layer options of ``configs/norm/<kind>.yaml``: every registered norm has a YAML it builds from."""
    return norm_options(compose([f"norm={kind}"]).norm)


def per_channel(v, x):
    return v.view((1, -1) + (1,) * (x.dim() - 2))


@pytest.mark.parametrize("dims", [0, 1, 2])
def test_batch_norm_train_uses_batch_statistics_eval_uses_population(dims):
    x = randn(*SHAPES[dims])
    C = x.shape[1]
    bn = make_norm("batch", C, dims, momentum=0.2)
    gamma, beta = set_affine(bn, C)
    reduce = [d for d in range(x.dim()) if d != 1]
    mean, var = x.mean(reduce), x.var(reduce, unbiased=False)
    expected = (x - per_channel(mean, x)) / torch.sqrt(per_channel(var, x) + EPS) * per_channel(gamma, x) + per_channel(beta, x)
    torch.testing.assert_close(bn(x), expected, rtol=1e-4, atol=1e-4)
    # Running statistics: one update with momentum 0.2 from (0, 1); the variance is unbiased.
    torch.testing.assert_close(bn.running_mean, 0.2 * mean)
    torch.testing.assert_close(bn.running_var, 0.8 + 0.2 * x.var(reduce, unbiased=True))

    bn.eval()
    y = randn(*SHAPES[dims], seed=1)
    rm, rv = bn.running_mean, bn.running_var
    expected_eval = (y - per_channel(rm, y)) / torch.sqrt(per_channel(rv, y) + EPS) * per_channel(gamma, y) + per_channel(beta, y)
    torch.testing.assert_close(bn(y), expected_eval, rtol=1e-4, atol=1e-4)
    # Eval output of one sample does not depend on the rest of the batch.
    torch.testing.assert_close(bn(y[:1]), bn(y)[:1])


@pytest.mark.parametrize("dims", [0, 1, 2])
@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_group_norm_formula(dims, groups):
    x = randn(*SHAPES[dims])
    N, C = x.shape[:2]
    if dims == 0 and groups == C:
        pytest.skip("a group of one value normalizes rounding noise: nothing to compare")
    gn = make_norm("group", C, dims, groups=groups)
    gamma, beta = set_affine(gn, C)
    xg = x.reshape(N, groups, -1)
    mean = xg.mean(-1, keepdim=True)
    var = xg.var(-1, unbiased=False, keepdim=True)
    normed = ((xg - mean) / torch.sqrt(var + EPS)).reshape(x.shape)
    expected = normed * per_channel(gamma, x) + per_channel(beta, x)
    for mode in (gn.train, gn.eval):
        mode()
        torch.testing.assert_close(gn(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dims", [0, 1, 2])
def test_layer_norm_covers_every_non_batch_dim(dims):
    x = randn(*SHAPES[dims])
    N, C = x.shape[:2]
    ln = make_norm("layer", C, dims)
    gamma, beta = set_affine(ln, C)
    flat = x.reshape(N, -1)
    mean = flat.mean(1).view((N,) + (1,) * (x.dim() - 1))
    var = flat.var(1, unbiased=False).view((N,) + (1,) * (x.dim() - 1))
    expected = (x - mean) / torch.sqrt(var + EPS) * per_channel(gamma, x) + per_channel(beta, x)
    torch.testing.assert_close(ln(x), expected, rtol=1e-4, atol=1e-4)
    ln.eval()
    torch.testing.assert_close(ln(x), expected, rtol=1e-4, atol=1e-4)
    if dims == 0:  # the same as PyTorch's own layer norm on (N, C)
        torch.testing.assert_close(ln(x), F.layer_norm(x, (C,), gamma, beta, EPS))


@pytest.mark.parametrize("dims", [1, 2])
def test_instance_norm_formula_and_pytorch(dims):
    x = randn(*SHAPES[dims])
    C = x.shape[1]
    inorm = make_norm("instance", C, dims)
    gamma, beta = set_affine(inorm, C)
    reduce = list(range(2, x.dim()))
    mean = x.mean(reduce, keepdim=True)
    var = x.var(reduce, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + EPS) * per_channel(gamma, x) + per_channel(beta, x)
    torch.testing.assert_close(inorm(x), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(inorm(x), F.instance_norm(x, weight=gamma, bias=beta, eps=EPS), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dims", [0, 1, 2])
def test_mean_only_batch_norm(dims):
    x = randn(*SHAPES[dims])
    C = x.shape[1]
    for kind in ("batch", "weight"):
        layer = make_norm(kind, C, dims, mean_only=True, momentum=0.5)
        assert isinstance(layer, MeanOnlyBatchNorm)
        with torch.no_grad():
            layer.bias.copy_(torch.arange(C, dtype=torch.float))
        reduce = [d for d in range(x.dim()) if d != 1]
        mean = x.mean(reduce)
        torch.testing.assert_close(layer(x), x - per_channel(mean, x) + per_channel(layer.bias.detach(), x))
        torch.testing.assert_close(layer.running_mean, 0.5 * mean)
        layer.eval()
        y = randn(*SHAPES[dims], seed=3)
        torch.testing.assert_close(layer(y), y - per_channel(0.5 * mean, y) + per_channel(layer.bias.detach(), y))
        # The variance is left alone: the per-channel spread of the output is the input's.
        torch.testing.assert_close(layer(y).std(reduce), y.std(reduce))


def test_none_and_plain_weight_are_identity():
    x = randn(4, 8)
    assert isinstance(make_norm("none", 8, 0), nn.Identity)
    assert isinstance(make_norm("weight", 8, 0), nn.Identity)
    torch.testing.assert_close(make_norm("none", 8, 0)(x), x)


def test_make_norm_gradients_flow_for_every_kind():
    for kind in NORMS:
        dims = 1 if NORMS[kind].needs_positions else 0
        shape = SHAPES[dims]
        x = randn(*shape).requires_grad_()
        layer = make_norm(kind, shape[1], dims, **yaml_options(kind))
        (layer(x) * randn(*shape, seed=5)).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), kind


def test_make_norm_errors_are_value_errors_with_the_allowed_values():
    with pytest.raises(ValueError, match="known norms: none, batch, group, layer, instance, weight, rms, ghost, renorm"):
        make_norm("grup", 8, 0)
    with pytest.raises(ValueError, match=r"norm.groups=3 does not divide the 8 channels.*1, 2, 4, 8"):
        make_norm("group", 8, 1, groups=3)
    with pytest.raises(ValueError, match="norm=instance"):
        make_norm("instance", 8, 0)
    with pytest.raises(ValueError, match="takes no option 'groups'"):
        make_norm("batch", 8, 0, groups=2)


def test_weight_norm_reparameterizes_every_layer_without_changing_the_function():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8, 4))
    x = randn(5, 2, 10)
    before = model(x)
    apply_weight_norm(model)
    assert len(weight_normed_layers(model)) == 2
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    for layer in weight_normed_layers(model):
        g = layer.parametrizations.weight.original0
        v = layer.parametrizations.weight.original1
        norm = v.flatten(1).norm(dim=1).view(g.shape)
        torch.testing.assert_close(layer.weight, g * v / norm)  # w = g v / ||v||
        assert parametrize.is_parametrized(layer, "weight")


def test_weight_norm_data_init_gives_unit_preactivations():
    torch.manual_seed(0)
    conv, linear = nn.Conv1d(3, 8, 3, padding=1), nn.Linear(8 * 12, 5)
    model = apply_weight_norm(nn.Sequential(conv, nn.ReLU(), nn.Flatten(), linear))
    x = randn(64, 3, 12)
    weight_norm_data_init(model, x)
    with torch.no_grad():
        t1 = conv(x)
        t2 = linear(torch.relu(t1).flatten(1))
    for t in (t1, t2):
        reduce = [d for d in range(t.dim()) if d != 1]
        torch.testing.assert_close(t.mean(reduce), torch.zeros(t.shape[1]), atol=1e-4, rtol=0)
        torch.testing.assert_close(t.std(reduce, unbiased=False), torch.ones(t.shape[1]), atol=1e-4, rtol=0)


def test_weight_norm_data_init_without_bias_only_scales():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4, bias=False)
    model = apply_weight_norm(nn.Sequential(layer))
    x = randn(100, 6)
    weight_norm_data_init(model, x)
    with torch.no_grad():
        t = layer(x)
    torch.testing.assert_close(t.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)


@pytest.mark.parametrize("dims", [0, 1, 2])
def test_rms_norm_divides_by_the_root_mean_square_over_all_features(dims):
    x = randn(*SHAPES[dims])
    C = x.shape[1]
    layer = make_norm("rms", C, dims, **yaml_options("rms"))
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(0.5, 2.0, C))
    reduce = list(range(1, x.dim()))
    expected = x / torch.sqrt(x.square().mean(reduce, keepdim=True) + EPS) * per_channel(layer.weight.detach(), x)
    torch.testing.assert_close(layer(x), expected)
    # PyTorch's own op, channels first: the gain broadcast over the positions
    gain = per_channel(layer.weight.detach(), x)[0].expand(x.shape[1:])
    torch.testing.assert_close(layer(x), F.rms_norm(x, x.shape[1:], gain, EPS))
    layer.eval()
    torch.testing.assert_close(layer(x), expected)  # no batch statistics: eval is train
    assert not layer.centers and not hasattr(layer, "bias")


def test_rms_norm_of_features_matches_torch_rmsnorm():
    x = randn(16, 8)
    ours, theirs = make_norm("rms", 8, 0, eps=EPS), nn.RMSNorm(8, eps=EPS)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("dims", [0, 1, 2])
def test_ghost_batch_norm_normalizes_each_virtual_batch_with_its_own_statistics(dims):
    x = randn(*SHAPES[dims])  # 16 samples: 4 ghost batches of 4
    C = x.shape[1]
    layer = make_norm("ghost", C, dims, virtual_batch_size=4, momentum=0.5)
    weight, bias = set_affine(layer, C)
    pieces = [F.batch_norm(chunk, None, None, weight, bias, True, 0.0, EPS) for chunk in x.split(4)]
    torch.testing.assert_close(layer(x), torch.cat(pieces))
    reduce = [d for d in range(x.dim()) if d != 1]
    means = torch.stack([c.mean(reduce) for c in x.split(4)]).mean(0)
    variances = torch.stack([c.var(reduce, unbiased=True) for c in x.split(4)]).mean(0)
    torch.testing.assert_close(layer.running_mean, 0.5 * means)
    torch.testing.assert_close(layer.running_var, 0.5 + 0.5 * variances)
    layer.eval()  # population statistics, as batch norm
    y = randn(*SHAPES[dims], seed=3)
    expected = F.batch_norm(y, layer.running_mean, layer.running_var, weight, bias, False, 0.0, EPS)
    torch.testing.assert_close(layer(y), expected)


def test_ghost_batch_norm_of_one_virtual_batch_is_batch_norm():
    x = randn(*SHAPES[2])
    ghost, bn = make_norm("ghost", 8, 2, virtual_batch_size=16), nn.BatchNorm2d(8)
    torch.testing.assert_close(ghost(x), bn(x))
    torch.testing.assert_close(ghost.running_var, bn.running_var)
    with pytest.raises(ValueError, match="batch of 12 is not a multiple of virtual_batch_size=8"):
        make_norm("ghost", 8, 2, virtual_batch_size=8)(x[:12])


def _renorm_reference(x, mean, var, weight, bias, r_max, d_max):
    """Ioffe (2017), Algorithm 1: r and d from the running statistics, no gradient through them."""
    reduce = [d for d in range(x.dim()) if d != 1]
    mu_b, sigma_b = x.mean(reduce), torch.sqrt(x.var(reduce, unbiased=False) + EPS)
    sigma = torch.sqrt(var + EPS)
    r = (sigma_b / sigma).clamp(1 / r_max, r_max).detach()
    d = ((mu_b - mean) / sigma).clamp(-d_max, d_max).detach()
    x_hat = (x - per_channel(mu_b, x)) / per_channel(sigma_b, x) * per_channel(r, x) + per_channel(d, x)
    return x_hat * per_channel(weight, x) + per_channel(bias, x)


@pytest.mark.parametrize("dims", [0, 1, 2])
def test_batch_renorm_against_its_formula_with_gradients(dims):
    C = SHAPES[dims][1]
    layer = make_norm("renorm", C, dims, r_max=1.5, d_max=0.5, relax_from=0, r_max_at=0, d_max_at=0, momentum=0.1)
    weight, bias = set_affine(layer, C)
    with torch.no_grad():  # population statistics far from the batch's, so r and d clip
        layer.running_mean.copy_(torch.linspace(-3.0, 3.0, C))
        layer.running_var.copy_(torch.linspace(0.5, 30.0, C))
    mean, var = layer.running_mean.clone(), layer.running_var.clone()
    x = randn(*SHAPES[dims]).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    w_ref, b_ref = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    up = randn(*SHAPES[dims], seed=7)
    y = layer(x)
    expected = _renorm_reference(x_ref, mean, var, w_ref, b_ref, 1.5, 0.5)
    torch.testing.assert_close(y, expected)
    (y * up).sum().backward()
    (expected * up).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(layer.weight.grad, w_ref.grad)
    torch.testing.assert_close(layer.bias.grad, b_ref.grad)
    reduce = [d for d in range(x.dim()) if d != 1]
    torch.testing.assert_close(layer.running_mean, 0.9 * mean + 0.1 * x.detach().mean(reduce))
    torch.testing.assert_close(layer.running_var, 0.9 * var + 0.1 * x.detach().var(reduce, unbiased=True))
    layer.eval()  # inference is batch norm's, with the population statistics
    z = randn(*SHAPES[dims], seed=3)
    torch.testing.assert_close(layer(z), F.batch_norm(z, layer.running_mean, layer.running_var, weight, bias,
                                                      False, 0.0, EPS))


def test_batch_renorm_starts_as_batch_norm_and_relaxes_on_its_schedule():
    x = randn(*SHAPES[2])
    layer = make_norm("renorm", 8, 2, r_max=3.0, d_max=5.0, relax_from=10, r_max_at=50, d_max_at=30)
    with torch.no_grad():
        layer.running_mean.fill_(4.0)
    bn = nn.BatchNorm2d(8)
    torch.testing.assert_close(layer(x), bn(x))  # r = 1, d = 0 before relax_from
    for step, r_max, d_max in ((0, 1.0, 0.0), (10, 1.0, 0.0), (20, 1.5, 2.5), (30, 2.0, 5.0), (50, 3.0, 5.0),
                               (99, 3.0, 5.0)):
        layer.num_batches_tracked.fill_(step)
        bounds = layer.bounds()
        torch.testing.assert_close(torch.stack(bounds), torch.tensor([r_max, d_max]))


@pytest.mark.parametrize("module", ["normbench.norms.layers", "normbench.norms.recurrent"])
def test_the_layers_docstring_examples_hold(module):
    import doctest
    import importlib

    torch.manual_seed(0)
    result = doctest.testmod(importlib.import_module(module), extraglobs={"torch": torch}, verbose=False)
    assert result.attempted > 0 and result.failed == 0
