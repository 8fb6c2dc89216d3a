"""CLEVR v1.0 (Johnson et al. 2017) and sets in its layout, as tensors for a FiLM model.

``dataset.root`` holds CLEVR's layout::

    images/train/*.png   images/val/*.png
    questions/CLEVR_train_questions.json   questions/CLEVR_val_questions.json

(the real CLEVR_v1.0 directory, or one written by :mod:`normbench.data.clevr_like`). CLEVR's
test split has no answers, so its ``val`` split serves as the test set
(``dataset.test_split``). ``dataset.train_samples`` / ``test_samples`` keep a fixed random
subset of N questions of each split (the same for every run), and only the images they refer
to are read.

What the model gets (:class:`~normbench.data.base.Inputs`):

- ``image``: int64 ``(N,)``, the row of the question's image in the shared table ``images``:
  uint8 ``(M, 3, S, S)`` pixels, resized (squashed, as Perez et al. do) to
  ``dataset.image_size``; or, with ``dataset.features=resnet101``, float16 ``(M, 1024, S/16,
  S/16)`` conv4 (``layer3``) features of torchvision's ResNet-101, computed once and cached.
  Each image is stored once, however many questions refer to it.
- ``question``: int64 ``(N, L)`` word indices, padded with 0 to the longest training question
  (longer test questions are cut); ``length``: int64 ``(N,)``.

The word vocabulary (``<pad>`` = 0, ``<unk>`` = 1, ``<start>`` = 2, ``<end>`` = 3, then the
training questions' words, lower case, punctuation as words; every question is wrapped in
``<start>`` ... ``<end>`` as in the FiLM authors' preprocessing) and the answer vocabulary come from the training questions; a test
answer never seen in training gets the class ``<unk>`` (always wrong).

Each question's type is its ``question_type`` key when it has one (the generated set), else
it follows from the last function of its program, as in the FiLM paper's table: ``exist``,
``count``, ``compare_number`` (equal_integer, less_than, greater_than), ``query_attribute``
(query_*), ``compare_attribute`` (equal_*). The test questions of each type form a group of the
test set (``TensorData.test_groups``, scored from the same pass), so a run records
``test_acc_<type>``. Question-only priors are scored on the test set and
recorded in the run's summary: the most frequent training answer of each template
(``prior_test_acc``, ``prior_test_acc_<type>``; the template is the question's ``template`` key
or CLEVR's ``question_family_index``) and of each type (``type_prior_test_acc``, ...).

Decoded and resized images are cached (``$NORMBENCH_CACHE`` or ``~/.cache/normbench``), keyed by
the image files' names, sizes and times and the target size, so a second run reads one file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from normbench.data.base import Inputs, TensorData, cache_dir, fixed_subset
from normbench.errors import ConfigError
from normbench.records import atomic_write_bytes

PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def tokenize(question: str) -> list[str]:
    """Lower-case words and punctuation marks: ``"Is it red?"`` -> ``["is", "it", "red", "?"]``."""
    return _TOKEN.findall(question.lower())


def question_type(q: dict) -> str:
    """The FiLM paper's question type of a CLEVR question (see the module docstring)."""
    if q.get("question_type"):
        return q["question_type"]
    program = q.get("program") or []
    last = (program[-1].get("function") or program[-1].get("type") or "") if program else ""
    if last in ("exist", "count"):
        return last
    if last in ("equal_integer", "less_than", "greater_than"):
        return "compare_number"
    if last.startswith("query_"):
        return "query_attribute"
    if last.startswith("equal_"):
        return "compare_attribute"
    return "other"


def _question_file(root: Path, split: str) -> Path:
    return root / "questions" / f"CLEVR_{split}_questions.json"


def check_layout(root: Path, splits) -> None:
    missing = [str(p.relative_to(root)) for split in splits
               for p in (_question_file(root, split), root / "images" / split) if not p.exists()]
    if not root.is_dir() or missing:
        what = "does not exist" if not root.is_dir() else f"lacks {', '.join(missing)}"
        raise ConfigError(f"dataset.root={root} {what}; CLEVR v1.0's layout is images/<split>/*.png and "
                          f"questions/CLEVR_<split>_questions.json for splits {' and '.join(splits)} "
                          "(or generate one: python -m normbench.data.clevr_like --out DIR)")


def read_questions(root: Path, split: str, limit) -> list[dict]:
    path = _question_file(root, split)
    try:
        questions = json.loads(path.read_text())["questions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a CLEVR questions file (a JSON object with a 'questions' list): {exc}") from None
    if limit is not None:  # a fixed random subset: a file in some order (CLEVR's: by image) gives no biased slice
        questions = [questions[i] for i in sorted(fixed_subset(len(questions), limit).tolist())]
    if not questions:
        raise ConfigError(f"{path} holds no questions")
    for q in questions:
        if "answer" not in q or "question" not in q or "image_filename" not in q:
            raise ConfigError(f"{path}: question {q.get('question_index', '?')} lacks a question, answer or "
                              f"image_filename (CLEVR's test split has no answers: use the val split)")
    return questions


def load_images(root: Path, split: str, filenames: list[str], size: int) -> np.ndarray:
    """The images as uint8 ``(M, 3, size, size)``, squashed to a square; cached after the first read."""
    from PIL import Image


    paths = [root / "images" / split / name for name in filenames]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} image(s) named by the {split} questions are missing, e.g. {missing[0]}")
    digest = hashlib.sha1(str(size).encode())
    for p in paths:
        stat = p.stat()
        digest.update(f"{p.resolve()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    cache = cache_dir() / "clevr-images" / f"{digest.hexdigest()[:16]}.npy"
    if cache.exists():
        return np.load(cache)
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(image).transpose(2, 0, 1)
    buffer = io.BytesIO()
    np.save(buffer, out)
    atomic_write_bytes(cache, buffer.getvalue())
    return out


def encode(questions: list[dict], vocab: dict[str, int], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Word indices ``(N, length)`` between ``<start>`` and ``<end>`` (as the FiLM authors' preprocessing),
    padded with 0, and the lengths ``(N,)``; a longer question is cut before its ``<end>``."""
    tokens = torch.zeros(len(questions), length, dtype=torch.int64)
    lengths = torch.empty(len(questions), dtype=torch.int64)
    for i, q in enumerate(questions):
        words = [vocab.get(w, vocab[UNK]) for w in tokenize(q["question"])][:length - 2]
        ids = [vocab[START], *words, vocab[END]]
        tokens[i, :len(ids)] = torch.tensor(ids)
        lengths[i] = len(ids)
    return tokens, lengths


def question_template(q: dict) -> str:
    """The question's template: its ``template`` key (the generated sets), else CLEVR's
    ``question_family_index``, else its type."""
    if q.get("template"):
        return q["template"]
    if q.get("question_family_index") is not None:
        return f"family_{q['question_family_index']}"
    return question_type(q)


def _majority_hits(train_q: list[dict], test_q: list[dict], key) -> list[bool]:
    """Whether each test answer is the most frequent training answer of its group ``key(q)``."""
    counts: dict[str, Counter] = {}
    for q in train_q:
        counts.setdefault(key(q), Counter())[q["answer"]] += 1
    overall = Counter(q["answer"] for q in train_q)
    majority = {g: max(sorted(c), key=c.__getitem__) for g, c in counts.items()}
    fallback = max(sorted(overall), key=overall.__getitem__)
    return [q["answer"] == majority.get(key(q), fallback) for q in test_q]


def question_prior(train_q: list[dict], test_q: list[dict]) -> dict[str, float]:
    """The test accuracy of question-only priors: what a model that ignores the image can reach.

    ``prior_test_acc``: the most frequent training answer of each template (a question-only
    model sees the template in the wording), overall and per question type
    (``prior_test_acc_<type>``); ``type_prior_test_acc``: the same per question type.
    """
    types = [question_type(q) for q in test_q]
    reference = {}
    for name, key in (("prior_test_acc", question_template), ("type_prior_test_acc", question_type)):
        hits = _majority_hits(train_q, test_q, key)
        reference[name] = sum(hits) / len(hits)
        for t in sorted(set(types)):
            type_hits = [h for h, s in zip(hits, types, strict=True) if s == t]
            reference[f"{name}_{t}"] = sum(type_hits) / len(type_hits)
    return reference


def _refuse_unsupported(cfg, name: str) -> None:
    if cfg.get("permute", False):
        raise ConfigError(f"dataset.permute=true is not defined for dataset={name} (a permutation of pixels "
                          "would break the spatial questions); use dataset.permute=false")
    if float(cfg.get("label_noise", 0.0)) > 0:
        raise ConfigError(f"dataset.label_noise is not supported for dataset={name}; use dataset.label_noise=0")


def read(root: Path, cfg, name: str) -> TensorData:
    """The CLEVR-format set in ``root`` as :class:`TensorData` (``kind="vqa"``)."""
    _refuse_unsupported(cfg, name)
    features = cfg.get("features", "pixels")
    size = cfg.get("image_size", 64)
    train_split, test_split = cfg.get("train_split", "train"), cfg.get("test_split", "val")
    check_layout(root, (train_split, test_split))
    train_q = read_questions(root, train_split, cfg.get("train_samples"))
    test_q = read_questions(root, test_split, cfg.get("test_samples"))

    words = sorted({w for q in train_q for w in tokenize(q["question"])})
    vocab = {PAD: 0, UNK: 1, START: 2, END: 3, **{w: i + 4 for i, w in enumerate(words)}}
    answers = sorted({q["answer"] for q in train_q})
    if any(q["answer"] not in answers for q in test_q):
        answers.append(UNK)
    answer_index = {a: i for i, a in enumerate(answers)}
    max_len = max(len(tokenize(q["question"])) for q in train_q) + 2  # <start>, <end>

    def split_inputs(questions, split):
        filenames = sorted({q["image_filename"] for q in questions})
        row = {f: i for i, f in enumerate(filenames)}
        images = torch.from_numpy(load_images(root, split, filenames, size))
        if features == "resnet101":
            from normbench.data.features import resnet101_features

            images = resnet101_features(images, cfg.get("resnet_weights"), bool(cfg.get("download", False)))
        tokens, lengths = encode(questions, vocab, max_len)
        x = Inputs({"image": torch.tensor([row[q["image_filename"]] for q in questions], dtype=torch.int64),
                    "question": tokens, "length": lengths}, {"images": images}, group="image")
        y = torch.tensor([answer_index.get(q["answer"], answer_index.get(UNK, 0)) for q in questions],
                         dtype=torch.int64)
        return x, y

    x_train, y_train = split_inputs(train_q, train_split)
    x_test, y_test = split_inputs(test_q, test_split)

    test_types = [question_type(q) for q in test_q]
    types = sorted(set(test_types))
    groups = {t: torch.tensor([i for i, s in enumerate(test_types) if s == t], dtype=torch.int64) for t in types}

    reference = question_prior(train_q, test_q)

    info = {"vocab_size": len(vocab), "question_length": max_len, "answers": answers,
            "question_types": types, "image_kind": "features" if features == "resnet101" else "pixels",
            "image_shape": tuple(x_train["images"].shape[1:])}
    source = (f"{root}: {len(train_q)} {train_split} + {len(test_q)} {test_split} questions, "
              f"{len(x_train['images'])} + {len(x_test['images'])} images, {len(vocab)} words, {len(answers)} answers")
    return TensorData(name=name, kind="vqa", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                      num_classes=len(answers), test_groups=groups, source=source, info=info, reference=reference)


def load(cfg) -> TensorData:
    root = cfg.get("root")
    if root is None:
        raise ConfigError("dataset=clevr reads CLEVR v1.0 from disk; set dataset.root=DIR (the CLEVR_v1.0 directory "
                          "with images/ and questions/), or use dataset=clevr_like (generated offline)")
    return read(Path(str(root)).expanduser(), cfg, "clevr")
