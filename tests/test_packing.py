"""Packed training (normbench/training/packing.py) against the plain runs it replaces."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from normbench import records
from normbench.api import compose
from normbench.models.gru import LoopGRU
from normbench.norms.layers import LayerNorm, RMSNorm
from normbench.training import distributed, folding
from normbench.training.checkpoints import read_checkpoint
from normbench.training.packing import Pack, _stack, fit_pack, train_pack, unpackable
from normbench.training.trainer import Trainer, prepare, train

STEPS = ["trainer.max_steps=6", "trainer.eval_every=3", "trainer.progress=none", "trainer.train_eval_samples=100",
         "trainer.eval_batch_size=200"]
SMALL_CLEVR = ["model=film", "dataset=clevr_like", "dataset.train_images=6", "dataset.val_images=4",
               "dataset.questions_per_image=4", "dataset.image_size=16", "batch_size=4"]
# Every model family, and every norm in the CNN: what packs, trained 6 steps packed and plain.
PACKED = {
    "cnn-batch": [],
    "cnn-group-batch2": ["norm=group", "batch_size=2"],
    "cnn-layer": ["norm=layer"],
    "cnn-instance": ["norm=instance"],
    "cnn-rms": ["norm=rms"],
    "cnn-weight": ["norm=weight"],
    "cnn-ghost": ["norm=ghost", "norm.virtual_batch_size=8"],
    "cnn-renorm": ["norm=renorm", "norm.relax_from=0", "norm.r_max_at=2", "norm.d_max_at=2"],
    "cnn-none-clip": ["norm=none", "optim.grad_clip_norm=0.5"],
    "cnn-batch-exact-adam": ["norm.population=exact", "optim=adam", "optim.lr=0.001"],
    "mlp-batch": ["model=mlp", "model.width=32"],
    "resnet-batch": ["dataset=digits", "model=resnet", "model.depth=8", "model.width=8", "batch_size=8"],
    "lstm-batch": ["model=lstm", "model.hidden_size=16", "model.values_per_step=4", "norm.gamma_init=0.1"],
    "lstm-layer": ["model=lstm", "model.hidden_size=16", "model.values_per_step=4", "norm=layer"],
    "lstm-weight": ["model=lstm", "model.hidden_size=16", "model.values_per_step=4", "norm=weight"],
    "lstm-none-noise": ["model=lstm", "model.hidden_size=16", "model.values_per_step=4", "norm=none",
                        "model.h0_noise=0.0"],
    # SGD: under Adam a gradient near zero is scaled up to a step of lr whatever its float noise
    "film": [*SMALL_CLEVR, "optim=sgd", "optim.lr=0.01", "batch_size=8", "dataset.train_images=12"],
}
# What cannot pack, and the reason each gives.
FALLS_BACK = {
    "lstm-fused": (["model=lstm", "model.hidden_size=16", "model.impl=torch", "norm=none"], "fused kernel"),
    "cnn-channels-last": (["dataset=digits", "trainer.channels_last=true"], "channels_last"),
    "cnn-compile": (["trainer.compile=true"], "compile"),
}


# The default suite trains these (the rest are marked slow: `pytest -m slow tests/test_packing.py`).
QUICK = ("cnn-group-batch2", "cnn-none-clip", "lstm-batch", "film")
# Weight tolerance (the optimizer state's: 10x). The FiLM model max-pools its last maps: float noise
# can move an argmax, and that sample's gradient then takes another path (momentum entries 10% apart).
TOLERANCE = {"film": 5e-3}
# Where that happens, the gradient lands at another position: 23 of 9,216 elements of one conv's
# momentum on one draw of the data. The share of optimizer-state elements allowed beyond tolerance:
FLIPS = {"film": 0.01}


def configs(extra, seeds=(0, 1, 2)):
    return [compose([*STEPS, *extra, f"seed={s}"]) for s in seeds]


def prepared(cfgs, root: Path, prefix: str) -> list[Trainer]:
    out = []
    for i, cfg in enumerate(cfgs):
        _, trainer = prepare(cfg, root / f"{prefix}{i}", distributed.Context())
        out.append(trainer)
    return out


@pytest.fixture
def clevr_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMBENCH_CACHE", str(tmp_path / "cache"))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float, flips: float = 0.0) -> bool:
    """Equal within ``tol`` (relative, plus absolute), but for at most a share ``flips`` of the elements."""
    bad = (a.double() - b.double()).abs() > tol * (1 + b.double().abs())
    return a.shape == b.shape and int(bad.sum()) <= flips * bad.numel()


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in PACKED])
def test_members_train_as_their_plain_runs(name, tmp_path, request):
    extra = PACKED[name]
    if "model=film" in extra:
        request.getfixturevalue("clevr_cache")
    cfgs = configs(extra)
    # The same initial weights, bit for bit, as the plain run builds them.
    for trainer, cfg in zip(prepared(cfgs, tmp_path, "init"), cfgs, strict=True):
        alone = Trainer(cfg, tmp_path / "alone")
        assert unpackable(trainer) is None
        for (k, a), b in zip(trainer.model.state_dict().items(), alone.model.state_dict().values(), strict=True):
            assert torch.equal(a, b), k
    packed = train_pack(cfgs, [tmp_path / f"p{i}" for i in range(3)])
    plain = [train(cfg, tmp_path / f"u{i}") for i, cfg in enumerate(cfgs)]
    for i, (p, u) in enumerate(zip(packed, plain, strict=True)):
        assert p["status"] == u["status"] == "completed"
        assert p["steps"] == u["steps"] == 6
        assert math.isclose(p["final"]["train_loss"], u["final"]["train_loss"], rel_tol=1e-4), (i, p["final"], u["final"])
        a, b = (read_checkpoint(tmp_path / f"{d}{i}" / records.CHECKPOINT_FILE) for d in ("p", "u"))
        assert a.keys() == b.keys()
        for k, v in b["model"].items():
            assert _close(a["model"][k], v, TOLERANCE.get(name, 1e-4)), (i, k)
        assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
        for k, state in b["optimizer"]["state"].items():
            for key, v in state.items():
                assert _close(torch.as_tensor(a["optimizer"]["state"][k][key]), torch.as_tensor(v),
                              10 * TOLERANCE.get(name, 1e-4), FLIPS.get(name, 0.0)), (i, k, key)
        assert a["source"]["perm"] is None or torch.equal(a["source"]["perm"], b["source"]["perm"])
        assert {f.name for f in (tmp_path / f"p{i}").iterdir()} == {f.name for f in (tmp_path / f"u{i}").iterdir()}


@pytest.mark.parametrize("name", list(FALLS_BACK))
def test_what_cannot_pack_says_why(name, tmp_path):
    extra, reason = FALLS_BACK[name]
    trainer = prepared(configs(extra, seeds=(0,)), tmp_path, "r")[0]
    assert reason in unpackable(trainer)


def test_a_pack_that_cannot_pack_trains_its_runs_alone(tmp_path, capsys):
    cfgs = configs(FALLS_BACK["lstm-fused"][0], seeds=(0, 1))
    summaries = train_pack(cfgs, [tmp_path / "a", tmp_path / "b"])
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    assert capsys.readouterr().out.count("trains alone, not packed: LSTM's fused kernel") == 2


# How each packable setup trains packed: folded into the channels, or under vmap, and why.
VMAP = {
    "cnn-weight": "weight norm's reparametrized weights have no folded rule",
    "cnn-ghost": "ghost batch norm has no folded rule",
    "cnn-renorm": "Batch Renorm has no folded rule",
    "resnet-batch": "its shortcut pads channels at the end of dim 1: the fold check refuses it",
    "lstm-batch": "recurrent cells", "lstm-layer": "recurrent cells", "lstm-weight": "recurrent cells",
    "lstm-none-noise": "recurrent cells", "film": "a GRU, FiLM layers and Inputs",
}


@pytest.mark.parametrize("name", list(PACKED))
def test_which_setups_train_folded(name, tmp_path, request):
    if "model=film" in PACKED[name]:
        request.getfixturevalue("clevr_cache")
    trainers = prepared(configs(PACKED[name], seeds=(0, 1)), tmp_path, "f")
    pack = Pack([t.model for t in trainers])
    pack.train()
    x, y = _stack([next(t.source.batches(0, 0)) for t in trainers])
    before = {n: b.clone() for n, b in pack.buffers.items()}
    pack.losses(trainers[0].task, trainers[0].forward, x, y)
    assert pack.path == ("vmap" if name in VMAP else "fold"), VMAP.get(name)
    if pack.path == "fold":  # the check against vmap ran on copies: one step's update, not two
        for n, b in pack.buffers.items():
            if n.endswith("num_batches_tracked"):
                assert torch.equal(b, before[n] + 1), n


FOLD_LAYERS = {
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1), (6, 3, 9)),
    "conv1d-grouped": (lambda: nn.Conv1d(4, 6, 3, groups=2, bias=False), (6, 4, 9)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), (6, 3, 5, 5)),
    "linear": (lambda: nn.Linear(5, 3), (6, 5)),
    "batch1d-features": (lambda: nn.BatchNorm1d(5), (6, 5)),
    "batch1d": (lambda: nn.BatchNorm1d(3), (6, 3, 7)),
    "batch2d": (lambda: nn.BatchNorm2d(3, momentum=0.3), (6, 3, 4, 4)),
    "group": (lambda: nn.GroupNorm(2, 4), (6, 4, 7)),
    "layer-features": (lambda: LayerNorm(5), (6, 5)),
    "layer": (lambda: LayerNorm(3), (6, 3, 4, 4)),
    "rms": (lambda: RMSNorm(3), (6, 3, 7)),
    "rms-features": (lambda: RMSNorm(5), (6, 5)),
}


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", list(FOLD_LAYERS))
def test_a_folded_layer_is_its_members_layers(name, train):
    """Outputs, input and weight gradients and running statistics of M=3 members folded equal
    each member's own layer, on random inputs and weights."""
    make, shape = FOLD_LAYERS[name]
    torch.manual_seed(0)
    members = [make() for _ in range(3)]
    for layer in members:
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p))
            for n, b in layer.named_buffers():
                if b.is_floating_point():
                    b.copy_(torch.rand_like(b) + (n == "running_var"))
        layer.train(train)
    alone = copy.deepcopy(members)
    x = 2 * torch.randn(3, *shape) + 1
    tensors = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in members]).requires_grad_()
               for n, _ in members[0].named_parameters()}
    tensors |= {n: torch.stack([dict(m.named_buffers())[n] for m in members]).contiguous()
                for n, _ in members[0].named_buffers()}
    wrapped = nn.Sequential(members[0])
    folded = folding.fold(wrapped, {f"0.{n}": t for n, t in tensors.items()}, 3)
    folded.train(train)
    xf = x.clone().requires_grad_()
    out = folding.unfold_outputs(folded(folding.fold_inputs(xf)), 3)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    for i, layer in enumerate(alone):
        xi = x[i].clone().requires_grad_()
        ref = layer(xi)
        (ref * weights[i]).sum().backward()
        assert torch.allclose(out[i], ref, atol=1e-5), i
        assert torch.allclose(xf.grad[i], xi.grad, atol=1e-4), i
        for n, p in layer.named_parameters():
            assert torch.allclose(tensors[n].grad[i], p.grad, atol=1e-4), (i, n)
        for n, b in layer.named_buffers():
            assert torch.allclose(tensors[n][i].double(), b.double(), atol=1e-6), (i, n)


@pytest.mark.parametrize("fold", [True, False])
def test_each_member_takes_batch_statistics_from_its_own_batch_only(fold):
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3)) for _ in range(2)]
    alone = [nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3)) for _ in range(2)]
    for a, m in zip(alone, models, strict=True):
        a.load_state_dict(m.state_dict())
    pack = Pack(models, fold=fold)
    pack.train()
    x = torch.randn(2, 4, 2, 9)
    x[1] = 10 * x[1] + 5  # member 1's batch is far from member 0's

    class Identity:
        def loss(self, out, _y):
            return out.square().mean()

    losses = pack.losses(Identity(), lambda f, inp: f(inp), x, torch.zeros(2, 4))
    for i, a in enumerate(alone):
        out = a(x[i])
        assert torch.allclose(losses[i], out.square().mean(), atol=1e-6)
        assert torch.allclose(models[i][1].running_mean, a[1].running_mean, atol=1e-6)
        assert torch.allclose(models[i][1].running_var, a[1].running_var, atol=1e-5)
        assert int(models[i][1].num_batches_tracked) == 1
    assert not torch.allclose(models[0][1].running_mean, models[1][1].running_mean)
    assert pack.path == ("fold" if fold else "vmap")


def test_a_diverging_member_stops_alone(tmp_path):
    cfgs = configs(["trainer.max_steps=9", "trainer.eval_every=9", "trainer.log_every=3"])
    trainers = prepared(cfgs, tmp_path, "d")
    with torch.no_grad():
        trainers[1].model.head.bias.fill_(float("inf"))
    summaries = fit_pack(trainers)
    assert [s["status"] for s in summaries] == ["completed", "diverged", "completed"]
    assert summaries[1]["diverged_at_step"] == 0
    assert [s["steps"] for s in summaries] == [9, 0, 9]
    assert records.read_summary(tmp_path / "d1")["status"] == "diverged"
    assert records.read_summary(tmp_path / "d2")["final"]["test_acc"] == summaries[2]["final"]["test_acc"]


def test_a_member_directory_resumes_alone(tmp_path):
    cfgs = configs(["trainer.max_steps=6"])
    train_pack([compose([*STEPS, f"seed={s}", "trainer.max_steps=3"]) for s in range(3)],
               [tmp_path / f"m{i}" for i in range(3)])
    extended = train(cfgs[1], tmp_path / "m1")  # the step budget grows: it resumes at 3, unpacked
    assert extended["steps"] == 6 and extended["status"] == "completed"


def test_members_a_checkpoint_ahead_resume_at_the_packs_step(tmp_path, capsys):
    short = [compose([*STEPS, f"seed={s}", "trainer.max_steps=3"]) for s in range(3)]
    train_pack(short[:1], [tmp_path / "s0"])  # seed 0 has checkpoints at steps 0 and 3, seeds 1 and 2 none
    summaries = train_pack(configs([]), [tmp_path / f"s{i}" for i in range(3)])
    assert [s["steps"] for s in summaries] == [6, 6, 6]
    assert "resuming from step 0 of 6" in capsys.readouterr().out  # its previous checkpoint: one pack
    fresh = train_pack(configs([]), [tmp_path / f"f{i}" for i in range(3)])
    assert [s["final"] for s in summaries] == [s["final"] for s in fresh]


def test_loop_gru_is_nn_gru():
    torch.manual_seed(0)
    gru, loop = nn.GRU(5, 7, batch_first=True), LoopGRU(5, 7)
    loop.load_state_dict(gru.state_dict())
    x = torch.randn(3, 6, 5, requires_grad=True)
    out, h = gru(x)
    out2, h2 = loop(x)
    assert torch.allclose(out, out2, atol=1e-6) and torch.allclose(h, h2, atol=1e-6)
    g1 = torch.autograd.grad(out.square().sum(), [x, gru.weight_hh_l0])
    g2 = torch.autograd.grad(out2.square().sum(), [x, loop.weight_hh_l0])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g1, g2, strict=True))
    assert LoopGRU.can_replace(gru) and not LoopGRU.can_replace(nn.GRU(5, 7, num_layers=2, batch_first=True))
