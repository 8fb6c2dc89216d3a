"""Population statistics recomputed for evaluation (norm.population=exact, stage by stage in eval mode, and
precise, one train-mode pass): the formulas, every BN kind, invariance to the pass's batch, training untouched."""

import pytest
import torch
from torch import nn

from normbench.api import run
from normbench.norms import MeanOnlyBatchNorm, RecurrentBatchNorm
from normbench.training.population import (
    batch_statistics_layers,
    exact_statistics,
    precise_statistics,
)


def _hand_stats(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance per channel of (M, C) values, from the definition."""
    mean = values.double().mean(0)
    var = ((values.double() - mean) ** 2).sum(0) / (len(values) - 1)
    return mean, var


def _exact(model, batches):
    return exact_statistics(model, lambda: batches)


ESTIMATORS = {"exact": _exact, "precise": precise_statistics}


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_batch_norm_2d_gets_the_statistics_of_all_values_at_once(estimator):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    # Batches with different means: an average of per-batch variances would miss the between-batch part.
    batches = [torch.randn(4, 3, 5, 5) * (1 + i) + 3 * i for i in range(5)]
    with ESTIMATORS[estimator](bn, batches):
        mean, var = _hand_stats(torch.cat(batches).permute(0, 2, 3, 1).reshape(-1, 3))
        assert torch.allclose(bn.running_mean.double(), mean, atol=1e-5)
        assert torch.allclose(bn.running_var.double(), var, rtol=1e-5)
        per_batch = torch.stack([b.var(dim=(0, 2, 3)) for b in batches]).mean(0)
        assert (bn.running_var - per_batch).min() > 1.0  # the between-batch part is there
        x = torch.randn(2, 3, 5, 5)
        expected = (x - bn.running_mean.view(1, 3, 1, 1)) / torch.sqrt(bn.running_var.view(1, 3, 1, 1) + bn.eps)
        expected = expected * bn.weight.view(1, 3, 1, 1) + bn.bias.view(1, 3, 1, 1)
        assert torch.allclose(bn.eval()(x), expected, atol=1e-5)
        bn.train()
    assert torch.equal(bn.running_mean, torch.zeros(3)) and torch.equal(bn.running_var, torch.ones(3))
    assert bn.training and int(bn.num_batches_tracked) == 0


def test_precise_statistics_are_taken_after_the_earlier_layers_in_train_mode():
    """precise: a layer's statistics are those of its input as a train-mode pass produces it (earlier
    BNs normalising with the pass's batch statistics), computed with the current weights."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5), nn.BatchNorm1d(5))
    batches = [torch.randn(8, 4) for _ in range(6)]
    with torch.no_grad():
        inner = [model[3](model[2](model[1].train()(model[0](x)))) for x in batches]
    with precise_statistics(model, batches):
        mean, var = _hand_stats(torch.cat(inner))
        assert torch.allclose(model[4].running_mean.double(), mean, atol=1e-5)
        assert torch.allclose(model[4].running_var.double(), var, rtol=1e-4)


@pytest.mark.parametrize("cut", [[48], [8] * 6, [5] * 9 + [3]])
def test_exact_statistics_are_taken_after_the_earlier_layers_in_eval_mode(cut):
    """exact: a layer's statistics are those of its input at evaluation, the earlier BN
    normalising with its own population statistics (computed first, from the definition),
    however the population is cut into batches."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5), nn.BatchNorm1d(5))
    x = torch.randn(48, 4) * 3 + 1
    with torch.no_grad():
        mean1, var1 = _hand_stats(model[0](x))
        first = (model[0](x) - mean1.float()) / torch.sqrt(var1.float() + 1e-5) * model[1].weight + model[1].bias
        mean2, var2 = _hand_stats(model[3](model[2](first)))
    with exact_statistics(model, lambda: list(x.split(cut))):
        assert torch.allclose(model[1].running_mean.double(), mean1, atol=1e-5)
        assert torch.allclose(model[4].running_mean.double(), mean2, atol=1e-5)
        assert torch.allclose(model[4].running_var.double(), var2, rtol=1e-4)
    assert torch.equal(model[4].running_mean, torch.zeros(5)) and model.training


def _clone(buffer):
    return None if buffer is None else buffer.clone()  # mean-only BN keeps no variance


def _estimates(overrides, population: int, tests: int, sizes):
    """A freshly built model of ``overrides``, its exact statistics over the first ``population``
    training samples cut into batches of each of ``sizes``, and its predictions on ``tests`` test
    samples with each: ``(model, layers, population, {size: [(mean, var), ...]}, {size: predictions})``."""
    from normbench.api import compose
    from normbench.data import load_dataset
    from normbench.models import build_model

    cfg = compose(overrides)
    data = load_dataset(cfg.dataset)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.norm, data)
    layers = batch_statistics_layers(model)
    x = data.x_train[:population]
    found, predictions = {}, {}
    for size in sizes:
        with exact_statistics(model, lambda size=size: x.split(size)), torch.no_grad():
            found[size] = [(layer.running_mean.clone(), _clone(getattr(layer, "running_var", None)))
                           for layer in layers]
            predictions[size] = model(data.x_test[:tests]).argmax(1)
    return model, layers, x, found, predictions


@pytest.mark.parametrize("norm", [[], ["norm=ghost", "norm.virtual_batch_size=4"], ["norm=renorm"],
                                  ["norm=weight", "norm.mean_only=true"]])
def test_exact_statistics_do_not_depend_on_the_pass_batch_in_a_cnn(norm):
    """The same weights, the population cut into batches of 10, 100 and all of it: the same
    statistics (to float rounding) and the same test predictions; a train-mode pass differs."""
    model, layers, population, found, predictions = _estimates(["norm=batch", *norm], 1000, 500, (10, 100, 1000))
    for size in (10, 100):
        for (a, _), (b, _) in zip(found[size], found[1000], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert torch.equal(predictions[size], predictions[1000])
    # A train-mode pass in batches of 20 (a multiple of ghost BN's virtual batch) normalises the
    # earlier layers with each batch's own statistics: the later layers' inputs differ.
    with precise_statistics(model, population.split(20)):
        assert any(not torch.allclose(layer.running_mean, mean, rtol=1e-5, atol=1e-5)
                   for layer, (mean, _) in zip(layers, found[1000], strict=True))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_mean_only_batch_norm_gets_the_exact_mean(estimator):
    torch.manual_seed(2)
    layer = MeanOnlyBatchNorm(3)
    batches = [torch.randn(5, 3, 7) + i for i in range(4)]
    with ESTIMATORS[estimator](layer, batches):
        mean, _ = _hand_stats(torch.cat(batches).permute(0, 2, 1).reshape(-1, 3))
        assert torch.allclose(layer.running_mean.double(), mean, atol=1e-5)
    assert torch.equal(layer.running_mean, torch.zeros(3))


class _Steps(nn.Module):
    """Calls a recurrent BN the way the LSTM does: all steps at once, and step by step."""

    def __init__(self):
        super().__init__()
        self.fused = RecurrentBatchNorm(3, max_steps=6)
        self.stepwise = RecurrentBatchNorm(3, max_steps=6)

    def forward(self, x):
        self.fused(x, 0)
        for t in range(x.shape[1]):
            self.stepwise(x[:, t], t)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_recurrent_batch_norm_gets_statistics_per_time_step(estimator):
    torch.manual_seed(3)
    model = _Steps()
    # Steps of very different scales; the first steps are almost constant (permuted pixels).
    scale = torch.tensor([0.01, 0.1, 1.0, 2.0])
    batches = [torch.randn(5, 4, 3) * scale.view(1, 4, 1) + torch.arange(4.0).view(1, 4, 1) for _ in range(3)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with ESTIMATORS[estimator](model, batches):
        values = torch.cat(batches)
        for layer in (model.fused, model.stepwise):
            for t in range(4):
                mean, var = _hand_stats(values[:, t])
                assert torch.allclose(layer.running_mean[t].double(), mean, atol=1e-6)
                assert torch.allclose(layer.running_var[t].double(), var, rtol=1e-4)
            # Steps never seen keep their running statistics; evaluation reads the four estimated
            # ones, although this model never trained (steps_tracked was 0).
            assert torch.equal(layer.running_mean[4:], torch.zeros(2, 3))
            assert int(layer.steps_tracked) == 4
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_the_random_number_generator_is_left_as_it_was(estimator):
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5))
    batches = [torch.randn(4, 3) for _ in range(2)]
    torch.manual_seed(4)
    expected = torch.rand(3)
    torch.manual_seed(4)
    with ESTIMATORS[estimator](model, batches):
        pass
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("norm", [
    ["norm=batch"],
    ["norm=weight", "norm.mean_only=true"],
])
def test_exact_statistics_leave_training_bit_identical(tmp_path, norm):
    common = ["model=mlp", *norm, "trainer.max_steps=30", "trainer.eval_every=10", "trainer.progress=none"]
    running = run([*common, "norm.population=running"], tmp_path / "running")
    finals = {}
    for kind in ("exact", "precise"):
        summary = run([*common, f"norm.population={kind}"], tmp_path / kind)
        assert summary["eval_statistics"] == kind
        a = torch.load(tmp_path / "running" / "checkpoint.pt", weights_only=False)
        b = torch.load(tmp_path / kind / "checkpoint.pt", weights_only=False)
        for key, value in a["model"].items():
            assert torch.equal(value, b["model"][key]), key
        finals[kind] = summary["final"]["train_loss"]
        assert running["final"]["train_loss"] != finals[kind]  # evaluation did change
    assert finals["exact"] != finals["precise"]


def test_exact_statistics_in_the_bn_lstm_and_resume(tmp_path):
    common = ["model=lstm", "model.hidden_size=16", "norm=batch", "norm.population=exact",
              "norm.population_samples=500", "dataset.permute=true", "batch_size=50",
              "trainer.eval_every=10", "trainer.progress=none"]
    straight = run([*common, "trainer.max_steps=30"], tmp_path / "straight")
    run([*common, "trainer.max_steps=10"], tmp_path / "resumed")
    resumed = run([*common, "trainer.max_steps=30"], tmp_path / "resumed")
    assert resumed["final"] == straight["final"]
    assert straight["eval_statistics"] == "exact"


def test_runs_without_batch_statistics_record_none(tmp_path, tiny_overrides):
    assert run(["norm=group", *tiny_overrides], tmp_path)["eval_statistics"] is None


def test_batch_statistics_layers_finds_every_kind():
    model = nn.Sequential(nn.BatchNorm2d(2), MeanOnlyBatchNorm(2), RecurrentBatchNorm(2, 3), nn.GroupNorm(1, 2),
                          nn.BatchNorm1d(2, track_running_stats=False))
    assert [type(m) for m in batch_statistics_layers(model)] == [nn.BatchNorm2d, MeanOnlyBatchNorm,
                                                                 RecurrentBatchNorm]


def test_also_exact_scores_the_same_weights_both_ways(tmp_path):
    common = ["model=mlp", "norm=batch", "trainer.max_steps=20", "trainer.eval_every=10", "trainer.progress=none"]
    both = run([*common, "norm.also_exact=true"], tmp_path / "both")
    exact = run([*common, "norm.population=exact"], tmp_path / "exact")
    running = run(common, tmp_path / "running")
    assert both["eval_statistics"] == "running"
    assert both["final"]["test_acc"] == running["final"]["test_acc"]
    assert both["final"]["test_acc_exact"] == exact["final"]["test_acc"]
    assert both["final"]["test_loss_exact"] == exact["final"]["test_loss"]
    assert both["values_per_batch_statistic"] == 32  # an MLP: the batch, no positions


@pytest.mark.parametrize("model", [
    # FiLM's conditional BN (BatchNorm2d without affine, modulated by the question) and its stem's BN.
    ["model=film", "model.maps=8", "dataset.train_images=24", "dataset.val_images=10",
     "dataset.questions_per_image=4", "dataset.image_size=32", "population_samples=64"],
    # The ResNets' BN (a CIFAR-style ResNet on 8x8 digits).
    ["model=resnet", "model.depth=8", "model.width=8", "dataset=digits", "population_samples=300"],
])
def test_exact_statistics_in_film_and_resnet(tmp_path, model):
    overrides = [o if not o.startswith("population_samples") else f"norm.{o}" for o in model]
    common = [*overrides, "norm=batch", "batch_size=8", "trainer.max_steps=4", "trainer.eval_every=2",
              "trainer.progress=none"]
    exact = run([*common, "norm.population=exact"], tmp_path / "exact")
    running = run(common, tmp_path / "running")
    assert exact["eval_statistics"] == "exact" and exact["status"] == "completed"
    assert exact["final"]["test_loss"] != running["final"]["test_loss"]
    a = torch.load(tmp_path / "running" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "exact" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_exact_statistics_of_a_bn_lstm_do_not_depend_on_the_pass_batch():
    """The BN-LSTM's stages are its time steps: several batches run in lockstep (one thread each)
    and give the statistics and the predictions of a single batch of the whole population."""
    overrides = ["dataset=digits", "model=lstm", "model.image_sequence=rows", "model.hidden_size=16", "norm=batch"]
    *_, found, predictions = _estimates(overrides, 600, 300, (50, 256, 600))
    for size in (50, 256):
        for a, b in zip(found[size], found[600], strict=True):
            for x, y in zip(a, b, strict=True):  # the mean and the variance
                torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
        assert torch.equal(predictions[size], predictions[600])


class _Branches(nn.Module):
    """A model whose path depends on its batch: exact statistics cannot be consistent."""

    def __init__(self, recurrent: bool):
        super().__init__()
        make = (lambda: RecurrentBatchNorm(3, 2)) if recurrent else (lambda: nn.BatchNorm1d(3))
        self.a, self.b, self.recurrent = make(), make(), recurrent

    def forward(self, x):
        layer = self.a if x.shape[0] > 4 else self.b
        return layer(x, 0) if self.recurrent else layer(x)


@pytest.mark.parametrize("recurrent", [False, True])
def test_exact_statistics_refuse_batches_that_take_different_paths(recurrent):
    model = _Branches(recurrent)
    with pytest.raises(RuntimeError, match="reached different stages"):
        with exact_statistics(model, lambda: torch.randn(9, 3).split(6)):
            pass
    assert torch.equal(model.a.running_mean, torch.zeros_like(model.a.running_mean))
