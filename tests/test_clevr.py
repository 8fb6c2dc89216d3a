"""The CLEVR-like generator and the CLEVR loader: layout, answers against the scenes, balance, vocabularies."""

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from normbench.data import clevr, clevr_like
from normbench.data import load_dataset as _load_dataset
from normbench.data.base import Inputs
from normbench.errors import ConfigError


def load_dataset(cfg):
    return _load_dataset(OmegaConf.create(cfg))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("clevr_like")
    return clevr_like.generate(root, train_images=40, val_images=12, questions_per_image=5, image_size=48, seed=3)


# The function signatures of CLEVR's question_generation/metadata.json (input types -> output type).
ATTRIBUTE_TYPES = {"color": "Color", "shape": "Shape", "size": "Size"}
SIGNATURES = {"scene": ((), "ObjectSet"), "unique": (("ObjectSet",), "Object"), "relate": (("Object",), "ObjectSet"),
              "count": (("ObjectSet",), "Integer"), "exist": (("ObjectSet",), "Bool"),
              **{f: (("Integer", "Integer"), "Bool") for f in ("equal_integer", "less_than", "greater_than")},
              **{f"filter_{a}": (("ObjectSet",), "ObjectSet") for a in ATTRIBUTE_TYPES},
              **{f"same_{a}": (("Object",), "ObjectSet") for a in ATTRIBUTE_TYPES},
              **{f"query_{a}": (("Object",), t) for a, t in ATTRIBUTE_TYPES.items()},
              **{f"equal_{a}": ((t, t), "Bool") for a, t in ATTRIBUTE_TYPES.items()}}


def relations_from_coordinates(scene):
    """What a CLEVR client computes from ``3d_coords`` and ``directions``: ``rel[r][i]`` = objects ``r`` of ``i``."""
    coords = [np.array(o["3d_coords"]) for o in scene["objects"]]
    return {r: [[j for j, b in enumerate(coords) if j != i and float(np.dot(b - a, scene["directions"][r])) > 0]
                for i, a in enumerate(coords)] for r in ("left", "right", "behind", "front")}


def execute(program, scene):
    """Run a CLEVR program with CLEVR's types and semantics (independently of the generator): every
    input must have the type metadata.json gives; bools answer yes/no, integers their digits."""
    objects, rel = scene["objects"], relations_from_coordinates(scene)
    values, types = [], []
    for node in program:
        f, v = node["function"], node["value_inputs"]
        want, out_type = SIGNATURES[f]
        assert tuple(types[i] for i in node["inputs"]) == want, f"{f} takes {want}"
        args = [values[i] for i in node["inputs"]]
        if f == "scene":
            out = set(range(len(objects)))
        elif f.startswith("filter_"):
            out = {i for i in args[0] if objects[i][f[len("filter_"):]] == v[0]}
        elif f == "unique":
            assert len(args[0]) == 1, "a unique reference matches several objects"
            out = next(iter(args[0]))
        elif f == "relate":
            out = set(rel[v[0]][args[0]])
        elif f.startswith("same_"):
            a = f[len("same_"):]
            out = {i for i in range(len(objects)) if i != args[0] and objects[i][a] == objects[args[0]][a]}
        elif f == "count":
            out = len(args[0])
        elif f == "exist":
            out = bool(args[0])
        elif f.startswith("query_"):
            out = objects[args[0]][f[len("query_"):]]
        elif f == "less_than":
            out = args[0] < args[1]
        elif f == "greater_than":
            out = args[0] > args[1]
        else:  # equal_integer, equal_<attr>
            out = args[0] == args[1]
        values.append(out)
        types.append(out_type)
    answer = values[-1]
    return ("yes" if answer else "no") if isinstance(answer, bool) else str(answer)


def test_generator_writes_clevr_layout(generated):
    for split, n_images in (("train", 40), ("val", 12)):
        images = sorted((generated / "images" / split).glob("*.png"))
        assert len(images) == n_images and images[0].name == f"CLEVR_{split}_000000.png"
        data = json.loads((generated / "questions" / f"CLEVR_{split}_questions.json").read_text())
        questions = data["questions"]
        assert len(questions) == 5 * n_images
        for q in questions:
            assert {"question", "answer", "image_filename", "image_index", "split", "question_type",
                    "question_family_index", "program"} <= set(q)
            assert q["split"] == split and q["image_filename"] == f"CLEVR_{split}_{q['image_index']:06d}.png"
            assert q["question_type"] in clevr_like.QUESTION_TYPES
        scenes = json.loads((generated / "scenes" / f"CLEVR_{split}_scenes.json").read_text())["scenes"]
        assert len(scenes) == n_images and all(3 <= len(s["objects"]) <= 6 for s in scenes)
        with Image.open(images[0]) as image:
            assert image.size == (48, 48) and image.mode == "RGB"


def test_every_answer_follows_from_the_scene(generated):
    for split in ("train", "val"):
        questions = json.loads((generated / "questions" / f"CLEVR_{split}_questions.json").read_text())["questions"]
        scenes = json.loads((generated / "scenes" / f"CLEVR_{split}_scenes.json").read_text())["scenes"]
        wrong = [q["question"] for q in questions if execute(q["program"], scenes[q["image_index"]]) != q["answer"]]
        assert wrong == []
        for q in questions:
            assert clevr.question_type({"program": q["program"]}) == q["question_type"]  # as for real CLEVR
        for scene in scenes:
            assert relations_from_coordinates(scene) == scene["relationships"]


def test_question_texts_agree_with_the_scene_and_relations_with_positions(generated):
    questions = json.loads((generated / "questions" / "CLEVR_train_questions.json").read_text())["questions"]
    scenes = json.loads((generated / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]
    checked = 0
    for q in questions:
        objects = scenes[q["image_index"]]["objects"]
        if q["question"] == "How many things are there?":
            assert q["answer"] == str(len(objects))
            checked += 1
        for shape in ("cube", "sphere", "cylinder"):
            if q["question"] == f"Are there any {shape}s?":
                assert q["answer"] == ("yes" if any(o["shape"] == shape for o in objects) else "no")
                checked += 1
    for scene in scenes:
        xs = [o["pixel_coords"][0] for o in scene["objects"]]
        for i, left in enumerate(scene["relationships"]["left"]):
            assert set(left) == {j for j, x in enumerate(xs) if x < xs[i]}
    assert any(" left of " in q["question"] or " behind " in q["question"] for q in questions)
    assert any("same color as" in q["question"] or "same shape as" in q["question"] for q in questions)
    assert checked >= 0


def test_rendered_objects_have_their_colour(generated):
    scenes = json.loads((generated / "scenes" / "CLEVR_val_scenes.json").read_text())["scenes"]
    for scene in scenes[:5]:
        with Image.open(generated / "images" / "val" / scene["image_filename"]) as image:
            pixels = np.asarray(image)
        for o in scene["objects"]:
            x, y = o["pixel_coords"][:2]
            assert tuple(pixels[int(round(y)), int(round(x))]) == clevr_like.COLORS[o["color"]]


def test_answers_are_balanced_per_template_in_every_prefix(tmp_path):
    root = clevr_like.generate(tmp_path, train_images=150, val_images=1, questions_per_image=5, seed=1)
    questions = json.loads((root / "questions" / "CLEVR_train_questions.json").read_text())["questions"]
    by_template = {}
    for n, q in enumerate(questions, 1):
        counts = by_template.setdefault(q["template"], Counter())
        counts[q["answer"]] += 1
        if n % 25 == 0:  # in every prefix the commonest answer is within 10% (+1) of the second
            for template, c in by_template.items():
                ordered = sorted(c[a] for a in clevr_like.answers(template, 6))
                assert ordered[-1] <= 1.1 * ordered[-2] + 1, (n, template, c)
    assert set(by_template) == set(clevr_like.TEMPLATES)
    types = Counter(q["question_type"] for q in questions)
    assert max(types.values()) - min(types.values()) <= 0.05 * len(questions)


def test_generation_is_deterministic(tmp_path):
    a = clevr_like.generate(tmp_path / "a", train_images=6, val_images=2, seed=5)
    b = clevr_like.generate(tmp_path / "b", train_images=6, val_images=2, seed=5)
    for rel in ("questions/CLEVR_train_questions.json", "images/train/CLEVR_train_000003.png"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_default_set_is_generated_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMBENCH_CACHE", str(tmp_path))
    calls = []
    original = clevr_like.generate
    monkeypatch.setattr(clevr_like, "generate", lambda *a, **k: calls.append(k) or original(*a, **k))
    cfg = {"name": "clevr_like", "root": None, "train_images": 8, "val_images": 3, "questions_per_image": 2,
           "min_objects": 3, "max_objects": 5, "image_size": 32}
    first = load_dataset(cfg)
    second = load_dataset(cfg)
    assert len(calls) == 1
    assert len(list(tmp_path.glob("clevr_like-*"))) == 1
    umask = os.umask(0)
    os.umask(umask)
    mode = next(tmp_path.glob("clevr_like-*")).stat().st_mode & 0o777
    assert mode == 0o777 & ~umask  # a shared cache: not mkdtemp's 0700
    assert torch.equal(first.x_train["question"], second.x_train["question"])
    load_dataset({**cfg, "generator_seed": 1})
    assert len(calls) == 2 and len(list(tmp_path.glob("clevr_like-*"))) == 2


def test_loader_reads_the_generated_set(generated):
    data = load_dataset({"name": "clevr", "root": str(generated), "image_size": 32})
    assert data.kind == "vqa" and isinstance(data.x_train, Inputs)
    assert len(data.x_train) == 200 and len(data.x_test) == 60
    assert data.x_train["images"].shape == (40, 3, 32, 32) and data.x_train["images"].dtype == torch.uint8
    assert data.x_train["question"].dtype == torch.int64 and data.x_train["length"].max() == data.info["question_length"]
    assert set(data.test_groups) == set(clevr_like.QUESTION_TYPES)
    together = torch.cat(list(data.test_groups.values()))
    assert torch.equal(together.sort().values, torch.arange(len(data.x_test)))  # a partition of the test set
    assert 0 <= data.reference["prior_test_acc"] <= 1
    assert {f"prior_test_acc_{t}" for t in clevr_like.QUESTION_TYPES} <= set(data.reference)
    limited = load_dataset({"name": "clevr", "root": str(generated), "image_size": 32, "train_samples": 7,
                            "test_samples": 3})
    assert len(limited.x_train) == 7 and len(limited.x_test) == 3
    kept = clevr.read_questions(generated, "train", 7)
    assert len(limited.x_train["images"]) == len({q["image_filename"] for q in kept})  # only the images they need
    indices = [q["question_index"] for q in kept]
    assert indices != list(range(7)) and indices == sorted(indices)  # a fixed random subset, not the first 7
    assert kept == clevr.read_questions(generated, "train", 7)


def write_real_clevr(root):
    """A tiny directory as real CLEVR v1.0 is: no question_type, programs with 'function' keys, 480x320 images."""
    for split, colours in (("train", [(200, 0, 0), (0, 0, 200)]), ("val", [(0, 200, 0)])):
        (root / "images" / split).mkdir(parents=True)
        for i, colour in enumerate(colours):
            Image.new("RGB", (480, 320), colour).save(root / "images" / split / f"CLEVR_{split}_{i:06d}.png")
    program = {"count": [{"function": "scene", "inputs": [], "value_inputs": []},
                         {"function": "count", "inputs": [0], "value_inputs": []}],
               "exist": [{"function": "scene", "inputs": [], "value_inputs": []},
                         {"function": "exist", "inputs": [0], "value_inputs": []}],
               "query": [{"function": "scene", "inputs": [], "value_inputs": []},
                         {"function": "unique", "inputs": [0], "value_inputs": []},
                         {"function": "query_color", "inputs": [1], "value_inputs": []}]}

    def q(split, i, text, answer, kind):
        return {"split": split, "image_index": i, "image_filename": f"CLEVR_{split}_{i:06d}.png",
                "question": text, "answer": answer, "question_family_index": 0, "program": program[kind]}

    train = [q("train", 0, "How many things are there?", "3", "count"),
             q("train", 1, "How many things are there?", "3", "count"),
             q("train", 1, "How many cubes are there?", "1", "count"),
             q("train", 0, "Are there any cubes?", "yes", "exist"),
             q("train", 1, "What color is the sphere?", "red", "query")]
    val = [q("val", 0, "How many things are there?", "3", "count"),
           q("val", 0, "How many big spheres are there?", "2", "count"),
           q("val", 0, "Are there any spheres?", "no", "exist"),
           q("val", 0, "What color is the cube?", "green", "query")]
    (root / "questions").mkdir()
    for split, items in (("train", train), ("val", val)):
        (root / "questions" / f"CLEVR_{split}_questions.json").write_text(json.dumps({"info": {}, "questions": items}))
    return root


def test_loader_reads_real_clevr_format_and_builds_vocabularies(tmp_path):
    root = write_real_clevr(tmp_path / "CLEVR_v1.0")
    data = load_dataset({"name": "clevr", "root": str(root), "image_size": 16})
    assert data.info["answers"] == ["1", "3", "red", "yes", "<unk>"]  # 'green', 'no', '2' unseen in training
    assert data.num_classes == 5
    assert clevr.tokenize("How many big spheres?") == ["how", "many", "big", "spheres", "?"]
    vocab_size = data.info["vocab_size"]
    assert vocab_size == 4 + len({"how", "many", "things", "are", "there", "?", "cubes", "any", "what", "color", "is",
                                  "the", "sphere"})
    q = data.x_test["question"]
    assert (q[1] == 1).sum() == 2  # 'big', 'spheres': unknown words
    assert data.x_train["images"].shape == (2, 3, 16, 16)
    assert data.x_train["images"][0, 0].float().mean() > 190 and data.x_train["images"][0, 2].max() == 0
    assert data.y_test.tolist() == [1, 4, 4, 4]
    assert sorted(data.test_groups) == ["count", "exist", "query_attribute"]
    # Prior: majority training answer per type (count: '3', exist: 'yes', query: 'red'): right once in 4.
    assert data.reference["prior_test_acc"] == 0.25
    assert data.reference["prior_test_acc_count"] == 0.5 and data.reference["prior_test_acc_exist"] == 0.0
    lengths = data.x_train["length"]
    assert (data.x_train["question"][:, 0] == 2).all()  # <start>
    assert (data.x_train["question"].gather(1, (lengths - 1)[:, None]) == 3).all()  # <end>


def test_prior_per_template_sees_what_the_wording_tells():
    def q(template, answer):
        return {"template": template, "question_type": "exist", "answer": answer}

    # Two templates of one type: each has its own majority, which the per-type majority cannot follow.
    train = [q("a", "yes")] * 3 + [q("b", "no")] * 2
    test = [q("a", "yes"), q("a", "yes"), q("b", "no"), q("b", "no")]
    prior = clevr.question_prior(train, test)
    assert prior["prior_test_acc"] == 1.0 and prior["prior_test_acc_exist"] == 1.0
    assert prior["type_prior_test_acc"] == 0.5 and prior["type_prior_test_acc_exist"] == 0.5
    assert clevr.question_template({"question_family_index": 7}) == "family_7"  # real CLEVR's templates


@pytest.mark.parametrize("cfg,message", [
    ({"name": "clevr"}, "set dataset.root=DIR"),
    ({"name": "clevr", "root": "/nonexistent/clevr"}, "dataset.root=/nonexistent/clevr does not exist"),
    ({"name": "clevr", "root": "EMPTY"}, "lacks questions/CLEVR_train_questions.json, images/train"),
    ({"name": "clevr", "root": "REAL", "permute": True}, "dataset.permute=true is not defined"),
    ({"name": "clevr", "root": "REAL", "features": "resnet101"}, "needs weights"),
])
def test_bad_roots_and_options_are_config_errors(tmp_path, cfg, message):
    (tmp_path / "empty").mkdir()
    if cfg.get("root") == "EMPTY":
        cfg = {**cfg, "root": str(tmp_path / "empty")}
    if cfg.get("root") == "REAL":
        cfg = {**cfg, "root": str(write_real_clevr(tmp_path / "real"))}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_dataset(cfg)


def test_resnet101_features_are_computed_once_and_cached(tmp_path, monkeypatch):
    from normbench.data import features

    monkeypatch.setenv("NORMBENCH_CACHE", str(tmp_path / "cache"))
    root = write_real_clevr(tmp_path / "real")
    calls = []
    original = features.compute_features
    monkeypatch.setattr(features, "compute_features", lambda *a, **k: calls.append(1) or original(*a, **k))
    cfg = {"name": "clevr", "root": str(root), "image_size": 32, "features": "resnet101", "resnet_weights": "random"}
    first = load_dataset(cfg)
    assert len(calls) == 2  # train and test images
    assert first.x_train["images"].shape == (2, 1024, 2, 2) and first.info["image_kind"] == "features"
    second = load_dataset(cfg)
    assert len(calls) == 2  # read from the cache
    assert torch.equal(first.x_train["images"], second.x_train["images"])


def test_generator_command_line(tmp_path, capsys):
    assert clevr_like.main(["--out", str(tmp_path / "set"), "--train", "3", "--val", "2", "--questions-per-image", "2",
                            "--image-size", "40"]) == 0
    assert "train: 6 questions" in capsys.readouterr().out
    data = load_dataset({"name": "clevr_like", "root": str(tmp_path / "set"), "image_size": 40})
    assert data.name == "clevr_like" and len(data.x_train) == 6 and len(data.x_test) == 4
    # As the docs run it: a program of its own, which the dataset registry does not import twice.
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "normbench.data.clevr_like", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--out" in proc.stdout, proc.stderr
