"""RecurrentBatchNorm and the recurrent norm factory, against the formulas of Cooijmans et al."""

from __future__ import annotations

import pytest
import torch

from normbench.errors import ConfigError
from normbench.norms import NORMS, RecurrentBatchNorm, StepNorm, make_norm, make_recurrent_norm

EPS = 1e-5


def trained_layer(x: torch.Tensor, max_steps: int, momentum: float = 1.0, **kwargs) -> RecurrentBatchNorm:
    """A layer that has seen ``x`` (N, T, C) once in training (momentum 1: running = batch stats)."""
    layer = RecurrentBatchNorm(x.shape[-1], max_steps, eps=EPS, momentum=momentum, **kwargs).train()
    layer(x)
    return layer


def test_training_output_is_the_formula_with_statistics_per_step():
    torch.manual_seed(0)
    N, T, C = 16, 6, 5
    x = torch.randn(N, T, C) * torch.arange(1, T + 1).view(1, T, 1) + torch.arange(T).view(1, T, 1)
    layer = RecurrentBatchNorm(C, T, eps=EPS, gamma_init=0.1)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-1, 1)
    mean = x.mean(dim=0, keepdim=True)               # over the batch only, per step and feature
    var = x.var(dim=0, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + EPS) * layer.weight + layer.bias
    stepwise = RecurrentBatchNorm(C, T, eps=EPS)
    stepwise.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer.train()(x), expected, rtol=1e-5, atol=1e-5)
    # One step at a time gives the same as all steps at once.
    per_step = torch.stack([stepwise(x[:, t], t) for t in range(T)], dim=1)
    torch.testing.assert_close(per_step, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stepwise.running_mean, layer.running_mean)
    torch.testing.assert_close(stepwise.running_var, layer.running_var)


@pytest.mark.parametrize("stepwise", [False, True], ids=["all-steps", "one-step-at-a-time"])
def test_shifting_step_5_changes_only_step_5_running_statistics(stepwise):
    torch.manual_seed(1)
    N, T, C = 8, 10, 4
    x = torch.randn(N, T, C)
    shifted = x.clone()
    shifted[:, 5] += 3.0 * torch.randn(N, C) + 7.0  # new mean and variance at step 5 only

    def run(inputs):
        layer = RecurrentBatchNorm(C, T, momentum=0.1).train()
        if stepwise:
            for t in range(T):
                layer(inputs[:, t], t)
        else:
            layer(inputs)
        return layer

    a, b = run(x), run(shifted)
    changed_mean = (a.running_mean != b.running_mean).any(dim=1)
    changed_var = (a.running_var != b.running_var).any(dim=1)
    assert changed_mean.tolist() == [t == 5 for t in range(T)]
    assert changed_var.tolist() == [t == 5 for t in range(T)]
    # And the running statistics did move at every step (not left at their initial values).
    assert (a.running_mean != 0).any(dim=1).all()


def test_eval_uses_population_statistics_of_each_step():
    torch.manual_seed(2)
    N, T, C = 32, 4, 3
    x = torch.randn(N, T, C) * 2 + torch.arange(T).view(1, T, 1) * 5
    layer = trained_layer(x, T, gamma_init=1.0).eval()
    probe = torch.randn(7, T, C)
    mean, var = layer.running_mean, layer.running_var
    torch.testing.assert_close(var, x.var(dim=0, unbiased=True))  # momentum 1: the batch's unbiased var
    expected = (probe - mean) / torch.sqrt(var + EPS)
    torch.testing.assert_close(layer(probe), expected, rtol=1e-5, atol=1e-5)
    # The output of a sample does not depend on the rest of the batch.
    torch.testing.assert_close(layer(probe[:1]), expected[:1], rtol=1e-5, atol=1e-5)


def test_steps_beyond_t_max_reuse_the_statistics_of_t_max():
    torch.manual_seed(3)
    N, T_max, C = 32, 4, 3
    x = torch.randn(N, T_max, C) * torch.arange(1, T_max + 1).view(1, -1, 1) + torch.arange(T_max).view(1, -1, 1)
    layer = trained_layer(x, T_max, gamma_init=1.0).eval()
    assert int(layer.steps_tracked) == T_max
    T = 10
    probe = torch.randn(5, T, C)
    last = T_max - 1
    mean = torch.stack([layer.running_mean[min(t, last)] for t in range(T)])
    var = torch.stack([layer.running_var[min(t, last)] for t in range(T)])
    expected = (probe - mean) / torch.sqrt(var + EPS)
    torch.testing.assert_close(layer(probe), expected, rtol=1e-5, atol=1e-5)
    for t in range(T):  # one step at a time too, as the LSTM's recurrent term calls it
        torch.testing.assert_close(layer(probe[:, t], t), expected[:, t], rtol=1e-5, atol=1e-5)


def test_t_max_is_the_longest_training_length_seen():
    """A layer built for 8 steps but trained on 3 uses step 2's statistics from step 3 on."""
    torch.manual_seed(4)
    x = torch.randn(16, 3, 2) + torch.tensor([0.0, 10.0, 20.0]).view(1, 3, 1)
    layer = trained_layer(x, max_steps=8, gamma_init=1.0).eval()
    assert int(layer.steps_tracked) == 3
    probe = torch.full((1, 2), 20.0)
    expected = (probe - layer.running_mean[2]) / torch.sqrt(layer.running_var[2] + EPS)
    torch.testing.assert_close(layer(probe, 6), expected)


def test_training_past_max_steps_is_an_error():
    layer = RecurrentBatchNorm(3, 4).train()
    with pytest.raises(ValueError, match="4 time steps"):
        layer(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="4 time steps"):
        layer(torch.randn(2, 3), 4)


def test_gamma_starts_at_0_1_and_norm_gamma_init_overrides_it():
    layer = make_recurrent_norm("batch", 12, 5, center=False)
    assert isinstance(layer, RecurrentBatchNorm)
    assert torch.all(layer.weight == 0.1) and layer.bias is None
    cell_norm = make_recurrent_norm("batch", 12, 5, center=True, gamma_init=None)
    assert torch.all(cell_norm.weight == 0.1) and torch.all(cell_norm.bias == 0)
    ablation = make_recurrent_norm("batch", 12, 5, gamma_init=1.0)
    assert torch.all(ablation.weight == 1.0)


def test_gamma_init_in_feed_forward_batch_norm():
    """norm.gamma_init applies to every batch norm; null keeps PyTorch's 1 there."""
    assert torch.all(make_norm("batch", 6, 2, gamma_init=None).weight == 1.0)
    assert torch.all(make_norm("batch", 6, 1, gamma_init=0.5).weight == 0.5)
    with pytest.raises(ConfigError, match="gamma_init"):
        make_norm("batch", 6, 1, gamma_init=0.5, affine=False)
    with pytest.raises(ConfigError, match="gamma_init"):
        make_norm("batch", 6, 1, gamma_init=0.5, mean_only=True)


def test_layer_norm_in_a_cell_is_per_sample_and_step():
    torch.manual_seed(5)
    layer = make_recurrent_norm("layer", 8, 3, eps=EPS, affine=True)
    assert isinstance(layer, StepNorm)
    x = torch.randn(4, 3, 8) * 3 + 1
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(layer(x), (x - mean) / torch.sqrt(var + EPS), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer(x[:, 1], 1), layer(x)[:, 1])


@pytest.mark.parametrize("kind", [name for name, norm in NORMS.items() if norm.recurrent is None])
def test_norms_without_a_meaning_in_a_cell_are_config_errors(kind):
    with pytest.raises(ConfigError, match=f"norm={kind} has no meaning in a recurrent cell.*batch, layer"):
        make_recurrent_norm(kind, 8, 3)


def test_mean_only_and_unknown_options_are_config_errors():
    with pytest.raises(ConfigError, match="mean_only"):
        make_recurrent_norm("batch", 8, 3, mean_only=True)
    with pytest.raises(ConfigError, match="groups"):
        make_recurrent_norm("layer", 8, 3, groups=2)
    with pytest.raises(ConfigError, match="unknown norm"):
        make_recurrent_norm("bogus", 8, 3)
