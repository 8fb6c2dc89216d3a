"""Character-level language modelling: the text dataset, bits per character, and LM runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from normbench.cli.hydra_app import CONFIG_DIR, final_line
from normbench.data import load_dataset
from normbench.data.text import decode_ptb, default_corpus, segments
from normbench.errors import ConfigError
from normbench.metrics import metric
from normbench.training.tasks import LanguageModelling
from normbench.training.trainer import train

TEXT = "the cat sat on the mat. " * 40 + "a dog! " * 30  # 1170 characters, 16 symbols


def text_cfg(root, **extra):
    cfg = {"name": "text", "root": str(root) if root is not None else None, "seq_len": 10,
           "eval_lengths": [25], "test_fraction": 0.2, "max_train_chars": None, "permute": False,
           "label_noise": 0.0}
    cfg.update(extra)
    return OmegaConf.create(cfg)


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_text_file_segments_targets_and_vocabulary(text_file):
    data = load_dataset(text_cfg(text_file))
    assert data.kind == "text" and data.num_classes == len(set(TEXT))
    vocab = sorted(set(TEXT))
    decode = lambda ids: "".join(vocab[i] for i in ids.tolist())  # noqa: E731
    cut = int(len(TEXT) * 0.8)
    train, test = TEXT[:cut], TEXT[cut:]
    assert data.x_train.shape == ((len(train) - 1) // 10, 10)
    assert data.x_train.dtype == torch.int64
    assert decode(data.x_train[0]) == train[:10]
    assert decode(data.y_train[0]) == train[1:11]        # the next character at every position
    assert decode(data.x_train[3]) == train[30:40]       # consecutive, non-overlapping
    assert decode(data.x_test[0]) == test[:10]
    x25, y25 = data.extra_tests["len25"]
    assert x25.shape == ((len(test) - 1) // 25, 25) and decode(y25[1]) == test[26:51]
    assert "corpus.txt" in data.source and "sha1" in data.source


def test_segments_drop_only_the_tail():
    ids = torch.arange(23).numpy()
    x, y = segments(ids, 5)
    assert x.shape == (4, 5) and x[-1, -1] == 19 and y[-1, -1] == 20


def test_penn_treebank_character_files(tmp_path):
    (tmp_path / "ptb.char.train.txt").write_text("a e r _ b a n k n o t e\nc a t _ s a t\n" * 20)
    (tmp_path / "ptb.char.valid.txt").write_text("x y z\n")
    (tmp_path / "ptb.char.test.txt").write_text("t h e _ c a t\n" * 20)
    assert decode_ptb("a e r _ b a n k\nc a t\n") == "aer bank\ncat\n"
    data = load_dataset(text_cfg(tmp_path, eval_lengths=[]))
    assert data.num_classes == len(set("aer banknote\ncat sat\nthe cat\n"))
    assert "Penn Treebank" in data.source and data.extra_tests == {}


def test_train_and_test_files(tmp_path):
    (tmp_path / "train.txt").write_text("abcab" * 50)
    (tmp_path / "test.txt").write_text("cabca" * 20)
    data = load_dataset(text_cfg(tmp_path))
    assert data.num_classes == 3 and len(data.x_test) == (100 - 1) // 10


def test_embedded_default_is_pythons_documentation_topics():
    text = default_corpus()
    assert len(text) > 100_000 and "assert" in text
    data = load_dataset(text_cfg(None, seq_len=100, eval_lengths=[200]))
    assert "pydoc_data.topics" in data.source
    assert data.x_train.shape[1] == 100 and len(data.x_train) > 1000
    assert data.extra_tests["len200"][0].shape[1] == 200


@pytest.mark.parametrize("extra, match", [
    ({"permute": True}, "permute"),
    ({"label_noise": 0.1}, "label_noise"),
    ({"seq_len": 5000}, "too few"),
])
def test_bad_text_options(text_file, extra, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset(text_cfg(text_file, **extra))


def test_missing_or_unusable_root(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset(text_cfg(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="holds neither"):
        load_dataset(text_cfg(tmp_path))
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\xff\xfe\x00" * 50)
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_dataset(text_cfg(binary))


class FixedProbabilities(nn.Module):
    """Gives the correct next character probability p, spreading 1-p over the others."""

    def __init__(self, vocab: int, p: float):
        super().__init__()
        self.vocab, self.p = vocab, p

    def forward(self, x):
        probs = torch.full((*x.shape, self.vocab), (1 - self.p) / (self.vocab - 1))
        probs.scatter_(-1, ((x + 1) % self.vocab).unsqueeze(-1), self.p)  # target = x + 1
        return probs.log()


def test_bits_per_character_on_known_cases():
    task = LanguageModelling()
    x = torch.randint(0, 8, (5, 7))
    y = (x + 1) % 8
    nats, bpc = task.evaluate(FixedProbabilities(8, 0.5), x, y, batch_size=2)
    assert math.isclose(bpc, 1.0, rel_tol=1e-6) and math.isclose(nats, math.log(2), rel_tol=1e-6)
    nats, bpc = task.evaluate(FixedProbabilities(8, 1 / 8), x, y, batch_size=3)  # uniform: log2(8) bits
    assert math.isclose(bpc, 3.0, rel_tol=1e-6)
    # The training loss is the mean per character in nats.
    logits = FixedProbabilities(8, 0.25)(x)
    assert math.isclose(task.loss(logits, y).item(), math.log(4), rel_tol=1e-6)
    bpc = metric(task.metric)  # the vocabulary: lower is better, the gap is test - train
    assert bpc.reached(1.2, 1.3) and not bpc.reached(1.4, 1.3) and bpc.gap(1.0, 1.5) == 0.5


def lm_overrides(root, run_dir, *extra):
    return ["dataset=text", f"dataset.root={root}", "dataset.seq_len=10", "dataset.eval_lengths=[25]",
            "dataset.test_fraction=0.2", "model=lstm", "model.hidden_size=16", "norm=batch", "optim=adam",
            "optim.grad_clip_norm=1.0", "batch_size=8", "trainer.max_steps=12", "trainer.eval_every=6",
            "trainer.train_eval_samples=40", "trainer.progress=none", *extra]


def test_language_model_run_records_bits_per_character(text_file, tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg(lm_overrides(text_file, run_dir))
    summary = train(cfg, run_dir)
    assert summary["status"] == "completed" and summary["primary_metric"] == "bpc"
    assert summary["higher_is_better"] is False
    final = summary["final"]
    assert set(final) == {"train_loss", "train_bpc", "val_loss", "val_bpc", "test_loss", "test_bpc",
                          "test_loss_len25", "test_bpc_len25", "step_loss"}
    assert math.isclose(final["test_bpc"], final["test_loss"] / math.log(2), rel_tol=1e-9)
    assert summary["best_val_bpc"] == min(r["val_bpc"] for r in map(json.loads, (run_dir / "metrics.jsonl").open()))
    assert math.isclose(summary["generalization_gap"], final["test_bpc"] - final["train_bpc"])
    assert "best_val_acc" not in summary and "target_bpc" in summary
    assert "corpus.txt" in summary["env"]["dataset_source"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [0, 6, 12]
    assert {"train_bpc", "test_bpc", "test_bpc_len25"} <= set(records[-1]) and "test_acc" not in records[-1]
    assert records[-1]["test_bpc"] < records[0]["test_bpc"]  # it learns something in 12 steps
    line = final_line(summary, run_dir)
    assert "test bpc" in line and "len25" in line


def test_language_model_resumes_bit_for_bit(text_file, tmp_path):
    straight = train(compose_cfg(lm_overrides(text_file, tmp_path / "a")), tmp_path / "a")
    train(compose_cfg(lm_overrides(text_file, tmp_path / "b", "trainer.max_steps=6")), tmp_path / "b")
    resumed = train(compose_cfg(lm_overrides(text_file, tmp_path / "b")), tmp_path / "b")
    assert resumed["final"] == straight["final"]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.endswith("steps_tracked") for k in a)


def test_target_bpc_gives_steps_to_target(text_file, tmp_path):
    summary = train(compose_cfg(lm_overrides(text_file, tmp_path / "r", "trainer.target_bpc=100")), tmp_path / "r")
    assert summary["steps_to_target"] == 0 and summary["target_bpc"] == 100


def test_feed_forward_model_on_text_fails_before_training(text_file, tmp_path):
    overrides = [o for o in lm_overrides(text_file, tmp_path) if not o.startswith("model")] + ["model=cnn"]
    with pytest.raises(ConfigError, match="model=cnn cannot read dataset=text"):
        train(compose_cfg(overrides), tmp_path / "cnn")
    assert not (tmp_path / "cnn" / "summary.json").exists()


def test_the_validation_text_is_the_sources_own_or_the_training_texts_end(tmp_path):
    """Penn Treebank's own valid file is the validation split; without one, the training text's
    last val_fraction, contiguous (neighbouring segments share their context)."""
    (tmp_path / "ptb.char.train.txt").write_text("a b c d _ " * 200)
    (tmp_path / "ptb.char.valid.txt").write_text("d c b a _ " * 30)
    (tmp_path / "ptb.char.test.txt").write_text("a b c _ " * 50)
    train, valid = (len(decode_ptb(t)) for t in ("a b c d _ " * 200, "d c b a _ " * 30))  # 1001, 151
    own = load_dataset(text_cfg(tmp_path, eval_lengths=[], val_fraction=0.1))
    assert (len(own.x_train), len(own.x_val)) == ((train - 1) // 10, (valid - 1) // 10)
    assert f"{train} + {valid} + " in own.source
    (tmp_path / "ptb.char.valid.txt").unlink()
    carved = load_dataset(text_cfg(tmp_path, eval_lengths=[], val_fraction=0.1))
    cut = int(train * 0.9)
    assert (len(carved.x_train), len(carved.x_val)) == ((cut - 1) // 10, (train - cut - 1) // 10)
    assert torch.equal(carved.x_val, carved.x_val[:1].expand_as(carved.x_val))  # the tail: "abcd " repeated
