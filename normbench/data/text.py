"""Character-level text for language modelling: a plain text file, Penn Treebank, or the default.

``dataset.root`` names where the text is:

- a file: any UTF-8 text; its first ``1 - test_fraction`` (by characters) is the training
  split, the rest the test split;
- a directory with Penn Treebank's character files ``ptb.char.train.txt`` and
  ``ptb.char.test.txt`` (``ptb.char.valid.txt`` is not used): characters separated by spaces,
  ``_`` between words, one sentence per line; they are decoded to plain text (``_`` -> space);
- a directory with ``train.txt`` and ``test.txt``;
- ``null`` (the default): the text of Python's own documentation topics, the pages that
  ``help("assert")`` and friends show, which ship with every CPython in the standard-library
  module ``pydoc_data.topics`` (about 465,000 characters of English technical prose on
  CPython 3.11, 79 topics joined in sorted order). It is real text, available offline on any
  machine with Python, with long-range structure (sections, indented grammar rules, code
  examples); its exact content changes a little between Python versions, so the record notes the
  corpus's size and hash.

The vocabulary is every character of the corpus (train and test), sorted. Training segments
are consecutive non-overlapping windows of ``seq_len`` characters (``x``) and the same windows
shifted by one (``y``, the next character at every position); ``seq_len`` is the longest
training length :math:`T_{max}` of a recurrent batch norm. The test split is cut the same way,
and again into segments of each length in ``eval_lengths`` (longer ones: the BN-LSTM then runs
past :math:`T_{max}` on the population statistics of its last training step); each segment
starts from a zero state.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from normbench.data.base import TensorData
from normbench.errors import ConfigError

PTB_FILES = ("ptb.char.train.txt", "ptb.char.test.txt")
SPLIT_FILES = ("train.txt", "test.txt")
# The sources' own validation text, used as the validation split when present.
PTB_VALID, SPLIT_VALID = "ptb.char.valid.txt", "valid.txt"
DEFAULT_SOURCE = "pydoc_data.topics (Python's documentation topics, standard library)"


def default_corpus() -> str:
    """The embedded default: Python's ``pydoc_data.topics``, every topic in sorted order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip("\n") for key in sorted(topics)) + "\n"


def decode_ptb(text: str) -> str:
    """Penn Treebank's character format (``a e r _ b a n k``) to plain text (``aer bank``)."""
    lines = []
    for line in text.splitlines():
        tokens = line.split()
        lines.append("".join(" " if tok == "_" else tok for tok in tokens))
    return "\n".join(lines) + "\n"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"dataset.root: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_splits(root, test_fraction: float) -> tuple[str, str | None, str, str]:
    """The training text, the validation text (None when the source has none of its own), the
    test text and a one-line description of the source."""
    if root is None:
        text = default_corpus()
        cut = int(len(text) * (1 - test_fraction))
        return text[:cut], None, text[cut:], DEFAULT_SOURCE
    path = Path(str(root)).expanduser()
    if path.is_file():
        text = _read(path)
        cut = int(len(text) * (1 - test_fraction))
        return text[:cut], None, text[cut:], str(path)
    if not path.is_dir():
        raise ConfigError(f"dataset.root={root} does not exist; give a text file, a directory with "
                          f"{' and '.join(PTB_FILES)} (Penn Treebank) or with {' and '.join(SPLIT_FILES)}, "
                          "or dataset.root=null for the embedded default")
    if all((path / f).is_file() for f in PTB_FILES):
        train, test = (decode_ptb(_read(path / f)) for f in PTB_FILES)
        valid = path / PTB_VALID
        return train, decode_ptb(_read(valid)) if valid.is_file() else None, test, f"Penn Treebank characters in {path}"
    if all((path / f).is_file() for f in SPLIT_FILES):
        train, test = (_read(path / f) for f in SPLIT_FILES)
        valid = path / SPLIT_VALID
        return train, _read(valid) if valid.is_file() else None, test, str(path)
    raise ConfigError(f"dataset.root={root} holds neither {' and '.join(PTB_FILES)} (Penn Treebank) nor "
                      f"{' and '.join(SPLIT_FILES)}; point dataset.root at one of those or at a text file")


def segments(ids: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows of ``length`` characters and their next-character targets."""
    n = (len(ids) - 1) // length
    x = ids[: n * length].reshape(n, length)
    y = ids[1: n * length + 1].reshape(n, length)
    return x, y


def load(cfg) -> TensorData:
    if cfg.get("permute", False):
        raise ConfigError("dataset.permute=true has no meaning for text (it permutes input positions of "
                          "fixed-size samples); use dataset.permute=false")
    if float(cfg.get("label_noise", 0.0)) > 0:
        raise ConfigError("dataset.label_noise is for classification datasets; use dataset.label_noise=0 for text")
    seq_len = cfg.get("seq_len", 100)
    eval_lengths = list(cfg.get("eval_lengths", []) or [])
    test_fraction = float(cfg.get("test_fraction", 0.1))
    train, val, test, source = read_splits(cfg.get("root"), test_fraction)
    val_fraction = float(cfg.get("val_fraction", 0.0))
    if val_fraction <= 0:
        val = None
    elif val is None or len(val) <= seq_len:
        # no validation text of its own (or one too short for a segment): the training text's
        # last part, contiguous, since neighbouring segments share their context
        cut = int(len(train) * (1 - val_fraction))
        train, val = train[:cut], train[cut:]
    max_chars = cfg.get("max_train_chars")
    if max_chars is not None:
        train = train[:max_chars]
    vocab = sorted(set(train) | set(test) | set(val or ""))
    index = {ch: i for i, ch in enumerate(vocab)}

    def ids_of(text: str) -> np.ndarray:
        return np.fromiter((index[ch] for ch in text), dtype=np.int64, count=len(text))

    train_ids, test_ids = ids_of(train), ids_of(test)
    val_ids = None if val is None else ids_of(val)
    splits = [("training", train_ids), ("test", test_ids)] + ([("validation", val_ids)] if val is not None else [])
    for split, ids in splits:
        longest = max([seq_len] + eval_lengths) if split == "test" else seq_len
        if len(ids) <= longest:
            raise ConfigError(f"the {split} text of {source} has {len(ids)} characters, too few for one segment "
                              f"of {longest}; use more text or a smaller dataset.seq_len / dataset.eval_lengths")
    x_train, y_train = segments(train_ids, seq_len)
    x_test, y_test = segments(test_ids, seq_len)
    x_val = y_val = None
    if val_ids is not None:
        x_val, y_val = (torch.as_tensor(a) for a in segments(val_ids, seq_len))
    extra = {}
    for length in eval_lengths:
        if length != seq_len:
            x, y = segments(test_ids, length)
            extra[f"len{length}"] = (torch.as_tensor(x), torch.as_tensor(y))
    digest = hashlib.sha1((train + "\0" + test + "\0" + (val or "")).encode("utf-8")).hexdigest()[:12]
    return TensorData(
        name=cfg.get("name", "text"), kind="text",
        x_train=torch.as_tensor(x_train), y_train=torch.as_tensor(y_train),
        x_test=torch.as_tensor(x_test), y_test=torch.as_tensor(y_test), x_val=x_val, y_val=y_val,
        num_classes=len(vocab), extra_tests=extra,
        source=f"{source}: {len(train)} + {len(val or '')} + {len(test)} characters (train, validation, test), "
               f"{len(vocab)} symbols, sha1 {digest}",
    )
