"""FiLM: the conditional norm against its formula, the ablations, every norm, gradients, and the command line."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from procs import cli

from normbench import records
from normbench.config import schema
from normbench.data.base import Inputs, TensorData
from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.models.film import ConditionalNorm, FiLMNet, coordinate_maps

VOCAB, ANSWERS, LENGTH = 12, 7, 6
INFO = {"vocab_size": VOCAB, "image_kind": "pixels", "image_shape": (3, 32, 32)}
TINY = {"maps": 8, "embedding_dim": 6, "gru_size": 10, "classifier_channels": 8, "classifier_hidden": 12}
NORM_OPTIONS = {"batch": {"momentum": 0.1, "eps": 1e-5, "affine": True, "mean_only": False, "gamma_init": None},
                "group": {"groups": 4, "eps": 1e-5, "affine": True}, "layer": {"eps": 1e-5, "affine": True},
                "instance": {"eps": 1e-5, "affine": True}, "none": {},
                "weight": {"data_init": True, "mean_only": False, "momentum": 0.1}}


def tiny_data(n=10, images=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, LENGTH + 1, (n,), generator=g)
    question = torch.randint(2, VOCAB, (n, LENGTH), generator=g)
    question[torch.arange(LENGTH).expand(n, -1) >= lengths[:, None]] = 0
    x = Inputs({"image": torch.randint(0, images, (n,), generator=g), "question": question, "length": lengths},
               {"images": torch.randint(0, 256, (images, 3, 32, 32), generator=g, dtype=torch.uint8)})
    y = torch.randint(0, ANSWERS, (n,), generator=g)
    return TensorData("clevr_like", "vqa", x, y, x[:4], y[:4], ANSWERS, info=dict(INFO))


def model(norm="batch", film="full", **sizes):
    cfg = OmegaConf.create({"name": "film", "preset": "small", "film": film, **TINY, **sizes})
    return build_model(cfg, OmegaConf.create({"name": norm, **NORM_OPTIONS[norm]}), tiny_data())


def reference_norm(x, kind, groups=4, eps=1e-5):
    n, c = x.shape[:2]
    if kind == "batch":
        dims = (0, 2, 3)
    elif kind == "none":
        return x
    else:
        g = {"group": groups, "layer": 1, "instance": c}[kind]
        xg = x.reshape(n, g, -1)
        mean, var = xg.mean(-1, keepdim=True), xg.var(-1, unbiased=False, keepdim=True)
        return ((xg - mean) / torch.sqrt(var + eps)).reshape_as(x)
    mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


@pytest.mark.parametrize("kind", ["batch", "group", "layer", "instance", "none"])
def test_conditional_norm_is_gamma_times_norm_plus_beta(kind):
    torch.manual_seed(0)
    layer = ConditionalNorm(kind, 8, **NORM_OPTIONS[kind])
    assert not any(True for _ in layer.parameters())  # no affine of its own
    x = torch.randn(5, 8, 4, 3) * 3 + 1
    gamma, beta = torch.randn(5, 8), torch.randn(5, 8)
    expected = gamma[:, :, None, None] * reference_norm(x, kind) + beta[:, :, None, None]
    torch.testing.assert_close(layer(x, gamma, beta), expected, rtol=1e-4, atol=1e-5)


def test_conditional_batch_norm_uses_population_statistics_in_eval():
    torch.manual_seed(0)
    layer = ConditionalNorm("batch", 4, **{**NORM_OPTIONS["batch"], "momentum": 1.0})
    x = torch.randn(6, 4, 3, 3) * 2 + 5
    gamma, beta = torch.randn(6, 4), torch.randn(6, 4)
    layer.train()
    layer(x, gamma, beta)  # momentum 1: the running statistics become this batch's (variance unbiased)
    layer.eval()
    y = torch.randn(2, 4, 3, 3)
    mean = x.mean((0, 2, 3)).view(1, -1, 1, 1)
    var = x.var((0, 2, 3), unbiased=True).view(1, -1, 1, 1)
    expected = gamma[:2, :, None, None] * (y - mean) / torch.sqrt(var + 1e-5) + beta[:2, :, None, None]
    torch.testing.assert_close(layer(y, gamma[:2], beta[:2]), expected, rtol=1e-4, atol=1e-5)
    # In eval one sample's output does not depend on the others.
    torch.testing.assert_close(layer(y[:1], gamma[:1], beta[:1]), expected[:1], rtol=1e-4, atol=1e-5)


def test_film_parameters_per_ablation():
    q = torch.randn(3, TINY["gru_size"])
    for mode in ("full", "gamma_only", "beta_only"):
        torch.manual_seed(0)
        net = model(film=mode)
        raw = net.film_generator(q).view(3, 4, 2, TINY["maps"])
        gamma, beta = net.film_parameters(q)
        assert gamma.shape == beta.shape == (3, 4, TINY["maps"])
        want_gamma = torch.ones_like(gamma) if mode == "beta_only" else 1 + raw[:, :, 0]  # gamma = 1 + delta gamma
        want_beta = torch.zeros_like(beta) if mode == "gamma_only" else raw[:, :, 1]
        torch.testing.assert_close(gamma, want_gamma)
        torch.testing.assert_close(beta, want_beta)
    late = model(film="late_fusion")
    assert late.film_generator is None
    assert late.mlp[0].in_features == TINY["classifier_channels"] + TINY["gru_size"]  # the question joins there
    image_only = model(film="image_only")  # the paper's "without FiLM": the question enters nowhere
    assert image_only.film_generator is None and image_only.gru is None and image_only.embedding is None
    assert image_only.mlp[0].in_features == TINY["classifier_channels"]


def test_image_only_answers_the_same_whatever_the_question():
    torch.manual_seed(0)
    data = tiny_data()
    x = data.x_train
    for mode, same in (("image_only", True), ("late_fusion", False), ("full", False)):
        net = model(film=mode).eval()
        other = torch.randint(2, VOCAB, x["question"].shape)
        assert torch.equal(net(x), net(x["images"][x["image"]], other, x["length"])) == same, mode


def test_block_output_follows_the_formula():
    torch.manual_seed(0)
    net = model(norm="group").eval()
    block = net.blocks[0]
    x = torch.randn(2, 8, 5, 5)
    coords = coordinate_maps(2, 5, 5, x.device, x.dtype)
    gamma, beta = torch.randn(2, 8), torch.randn(2, 8)
    r = torch.relu(block.conv1(torch.cat([x, coords], 1)))  # coordinate maps into the 1x1 conv only (the authors')
    h = block.conv2(r)
    expected = r + torch.relu(gamma[:, :, None, None] * reference_norm(h, "group") + beta[:, :, None, None])
    torch.testing.assert_close(block(x, coords, gamma, beta), expected, rtol=1e-4, atol=1e-5)
    assert coords[0, 0, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0] and coords[0, 1, :, 0].tolist()[0] == -1.0


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "instance", "none", "weight"])
@pytest.mark.parametrize("mode", schema.FILM_MODES)
def test_every_norm_and_mode_trains_and_question_gets_gradients(norm, mode):
    torch.manual_seed(0)
    data = tiny_data()
    net = model(norm=norm, film=mode)
    out = net(data.x_train)
    assert out.shape == (10, ANSWERS)
    torch.nn.functional.cross_entropy(out, data.y_train).backward()
    if mode != "image_only":
        for p in (net.embedding.weight, net.gru.weight_ih_l0, net.gru.weight_hh_l0):
            assert p.grad is not None and p.grad.abs().sum() > 0
    if mode not in ("image_only", "late_fusion"):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.film_generator.parameters())
    net.eval()
    assert net(data.x_test).shape == (4, ANSWERS)


def test_inputs_and_tensors_give_the_same_answer_and_padding_is_ignored():
    torch.manual_seed(0)
    data = tiny_data()
    net = model().eval()
    x = data.x_train
    a = net(x)
    b = net(x["images"][x["image"]], x["question"], x["length"])
    torch.testing.assert_close(a, b)
    padded = torch.cat([x["question"], torch.full((10, 5), 7)], 1)  # junk after each question's end
    torch.testing.assert_close(net(x["images"][x["image"]], padded, x["length"]), a)


def test_groups_of_the_test_set_score_as_separate_sets_from_one_pass():
    from normbench.training.tasks import Classification

    torch.manual_seed(0)
    data = tiny_data(n=10)
    net = model().eval()
    groups = {"a": torch.tensor([0, 3, 4, 9]), "b": torch.tensor([1, 2, 5, 6, 7, 8])}
    task = Classification()
    whole, parts = task.evaluate_groups(net, data.x_train, data.y_train, groups, batch_size=3)
    assert whole == pytest.approx(task.evaluate(net, data.x_train, data.y_train, 4))
    for label, index in groups.items():
        assert parts[label] == pytest.approx(task.evaluate(net, data.x_train[index], data.y_train[index], 4))


def test_inputs_index_slice_and_move_together():
    data = tiny_data()
    x = data.x_train
    perm = torch.randperm(10)
    shuffled = x[perm]
    assert len(shuffled) == 10 and torch.equal(shuffled["question"], x["question"][perm])
    assert shuffled["images"] is x["images"] and len(x[2:5]) == 3 and x.device == torch.device("cpu")
    assert data.input_shape["question"] == (LENGTH,) and data.to("cpu").x_train["length"].shape == (10,)


def test_presets_and_bad_options():
    paper = FiLMNet((3, 224, 224), 28, "batch", NORM_OPTIONS["batch"], data_info=INFO, preset="paper")
    assert paper.sizes == {"blocks": 4, "maps": 128, "embedding_dim": 200, "gru_size": 4096, "stem_layers": 4,
                           "classifier_channels": 512, "classifier_hidden": 1024, "init": "kaiming_uniform"}
    assert paper.gru.hidden_size == 4096 and paper.mlp[0].out_features == 1024
    assert isinstance(paper.mlp[1], torch.nn.BatchNorm1d)  # the authors' classifier_batchnorm
    # Kaiming-uniform (gain sqrt(2), fan_in): bound sqrt(6 / fan_in); the generator's gammas start far from 1.
    bound = (6 / 4096) ** 0.5
    w = paper.film_generator.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    small = model()
    assert small.sizes["init"] == "default" and small.film_generator.weight.abs().max() <= TINY["gru_size"] ** -0.5
    assert FiLMNet(None, 5, "batch", NORM_OPTIONS["batch"], data_info=INFO, maps=16).sizes["maps"] == 16
    with pytest.raises(ConfigError, match="model.film=off is not one of full, gamma_only, beta_only, image_only, "
                                          "late_fusion"):
        model(film="off")
    with pytest.raises(ConfigError, match="model.init=xavier is not one of default, kaiming_uniform"):
        model(init="xavier")
    with pytest.raises(ConfigError, match="model.film=half is not one of full, gamma_only, beta_only, image_only"):
        model(film="half")
    with pytest.raises(ConfigError, match="model.preset=huge is not one of small, paper"):
        model(preset="huge")
    with pytest.raises(ConfigError, match="model.maps=0 must be a positive integer"):
        model(maps=0)
    with pytest.raises(ConfigError, match="norm.groups=5 does not divide the 8 channels"):
        build_model(OmegaConf.create({"name": "film", **TINY}), OmegaConf.create({"name": "group", "groups": 5}),
                    tiny_data())


def test_film_on_resnet_features():
    info = {"vocab_size": VOCAB, "image_kind": "features", "image_shape": (1024, 2, 2)}
    net = FiLMNet(None, ANSWERS, "batch", NORM_OPTIONS["batch"], data_info=info, **TINY)
    feats = torch.randn(3, 1024, 2, 2).half()
    out = net(feats, torch.randint(1, VOCAB, (3, 4)), torch.tensor([4, 2, 1]))
    assert out.shape == (3, ANSWERS) and isinstance(net.stem[0], torch.nn.Conv2d) and net.stem[0].kernel_size == (3, 3)
    assert net.stem[0].in_channels == 1024 + 2  # the authors' stride-1 stem takes coordinate maps


# -- the command line -------------------------------------------------------------------------------

SMALL_SET = ["dataset.train_images=24", "dataset.val_images=10", "dataset.questions_per_image=4",
             "dataset.image_size=32"]


def test_run_model_film_records_per_type_accuracy_and_the_prior(tmp_path):
    run_dir = tmp_path / "film"
    proc = cli("run", "model=film", "norm=group", "model.maps=16", "batch_size=16", *SMALL_SET,
               "trainer.max_steps=6", "trainer.eval_every=3", "trainer.progress=none", f"hydra.run.dir={run_dir}")
    assert proc.exit_code == 0, proc.output
    metrics = records.read_metrics(run_dir)
    assert len(metrics) == 3
    types = ("exist", "count", "query_attribute", "compare_attribute", "compare_number")
    for record in metrics:
        assert all(0 <= record[f"test_acc_{t}"] <= 1 for t in types)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["dataset"] == "clevr_like" and summary["model"] == "film"
    assert all(f"test_acc_{t}" in summary["final"] for t in types)
    assert 0 <= summary["prior_test_acc"] <= 1 and all(f"prior_test_acc_{t}" in summary for t in types)
    assert "clevr_like" in summary["env"]["dataset_source"]
    assert "test acc at compare_attribute" in proc.stdout


def test_cfg_job_model_film_defaults_to_the_generated_set_and_adam_and_the_command_line_wins(tmp_path):
    film = cli("run", "model=film", "--cfg", "job", cwd=tmp_path)
    assert film.exit_code == 0 and "name: clevr_like" in film.stdout and "film: full" in film.stdout
    assert "optim:\n  name: adam" in film.stdout  # the paper's optimizer
    assert "optim:\n  name: sgd" in cli("run", "model=film", "optim=sgd", "--cfg", "job", cwd=tmp_path).stdout
    clevr = cli("run", "model=film", "dataset=clevr", "dataset.root=/data/CLEVR_v1.0", "--cfg", "job", cwd=tmp_path)
    assert "name: clevr\n" in clevr.stdout and "root: /data/CLEVR_v1.0" in clevr.stdout
    default = cli("run", "--cfg", "job", cwd=tmp_path).stdout  # other models unchanged
    assert "name: mnist1d" in default and "optim:\n  name: sgd" in default
    listing = cli("list", cwd=tmp_path).stdout
    assert "film" in listing and "clevr_like" in listing and "clevr " in listing


@pytest.mark.parametrize("args,message", [
    (["model=film", "dataset=mnist1d"], "model=film cannot read dataset=mnist1d (signal data); it takes vqa data; "
                                        "use dataset=clevr_like"),
    (["model=cnn", "dataset=clevr_like", *SMALL_SET], "model=cnn cannot read dataset=clevr_like (vqa data)"),
    (["model=film", "model.film=half", *SMALL_SET], "model.film=half is not one of full, gamma_only, beta_only, "
                                                    "image_only, late_fusion"),
    (["model=film", "trainer.channels_last=true", *SMALL_SET], "trainer.channels_last=true needs image data"),
    (["model=film", "dataset=clevr"], "dataset=clevr reads CLEVR v1.0 from disk; set dataset.root=DIR"),
    (["model=film", "dataset=clevr", "dataset.root=/nonexistent/CLEVR"], "dataset.root=/nonexistent/CLEVR does not exist"),
])
def test_bad_input_is_one_line_nonzero_exit_no_traceback(tmp_path, args, message):
    run_dir = tmp_path / "run"
    proc = cli("run", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.exit_code == 2, proc.output
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("normbench: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not run_dir.exists()


def test_resume_extends_a_film_run_like_an_uninterrupted_one(tmp_path):
    from normbench.api import run

    common = ["model=film", "model.maps=8", "batch_size=8", *SMALL_SET, "trainer.eval_every=3",
              "trainer.progress=none"]
    straight = run([*common, "trainer.max_steps=6"], tmp_path / "straight")
    run([*common, "trainer.max_steps=3"], tmp_path / "resumed")
    resumed = run([*common, "trainer.max_steps=6"], tmp_path / "resumed")
    assert resumed["steps"] == straight["steps"] == 6
    assert resumed["final"] == straight["final"]
    assert resumed["prior_test_acc"] == straight["prior_test_acc"]
