"""The Sort-of-CLEVR generator: answers from the scenes, balance in every prefix, the loader, rendering."""

import json
import math
from collections import Counter

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from normbench.data import load_dataset, sort_of_clevr


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("sort_of_clevr")
    return sort_of_clevr.generate(root, train_images=300, val_images=60, questions_per_image=10, seed=2)


def read(root, split, kind):
    return json.loads((root / kind / f"CLEVR_{split}_{kind}.json").read_text())[kind]


def answer(question: str, objects: list[dict], image_size: int) -> str:
    """The answer from the scene's own record, parsed from the question's words (independently of the generator)."""
    colour = next(c for c in sort_of_clevr.COLORS if f" {c} object" in question)
    me = next(o for o in objects if o["color"] == colour)
    x, y = me["pixel_coords"][:2]
    others = [o for o in objects if o is not me]

    def dist(o):
        return math.dist(o["pixel_coords"][:2], (x, y))

    if question.startswith("What shape is the object closest"):
        return min(others, key=dist)["shape"]
    if question.startswith("What shape is the object furthest"):
        return max(others, key=dist)["shape"]
    if question.startswith("How many"):
        return str(sum(o["shape"] == me["shape"] for o in objects))
    if "left or the right" in question:
        return "left" if x < image_size / 2 else "right"
    if "top or the bottom" in question:
        return "top" if y < image_size / 2 else "bottom"
    return me["shape"]


def test_every_answer_follows_from_the_scene(generated):
    for split in ("train", "val"):
        scenes = read(generated, split, "scenes")
        questions = read(generated, split, "questions")
        assert len(questions) > 0.95 * 10 * len(scenes)
        wrong = [q["question"] for q in questions if answer(q["question"], scenes[q["image_index"]]["objects"], 32)
                 != q["answer"]]
        assert wrong == []
        for scene in scenes:
            assert sorted(o["color"] for o in scene["objects"]) == sorted(sort_of_clevr.COLORS)  # one of each colour


def test_answers_balanced_per_template_and_in_every_prefix(generated):
    questions = read(generated, "train", "questions")
    for template, options in sort_of_clevr.ANSWERS.items():
        counts = Counter(q["answer"] for q in questions if q["template"] == template)
        assert set(counts) == set(options) and len(set(counts.values())) == 1, (template, counts)
    prefix = questions[: len(questions) // 4]  # shuffled: a prefix is balanced too (within sampling noise)
    for template, options in sort_of_clevr.ANSWERS.items():
        counts = Counter(q["answer"] for q in prefix if q["template"] == template)
        n = sum(counts.values())
        assert max(counts.values()) <= n / len(options) + 4 * math.sqrt(n / len(options)), (template, counts)
    types = Counter(q["question_type"] for q in questions)
    assert set(types) == {"non_relational", "relational"}


def test_rendered_objects_have_their_colour_and_shape(generated):
    scene = read(generated, "val", "scenes")[0]
    with Image.open(generated / "images" / "val" / scene["image_filename"]) as image:
        pixels = np.asarray(image)
    for o in scene["objects"]:
        x, y = o["pixel_coords"][:2]
        mine = (pixels == sort_of_clevr.COLORS[o["color"]]).all(-1)
        assert mine[int(y), int(x)]
        rows, cols = np.nonzero(mine)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert (mine.sum() == box) == (o["shape"] == "square")  # a square fills its bounding box, a disc does not


def test_loader_reads_it_with_types_and_the_prior(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMBENCH_CACHE", str(tmp_path))
    cfg = OmegaConf.load(sort_of_clevr.__file__.replace("data/sort_of_clevr.py", "configs/dataset/sort_of_clevr.yaml"))
    cfg.update({"train_images": 60, "val_images": 20, "questions_per_image": 6})
    data = load_dataset(cfg)
    assert data.kind == "vqa" and data.name == "sort_of_clevr"
    assert set(data.test_groups) == {"non_relational", "relational"}
    assert data.x_train["images"].shape[1:] == (3, 32, 32)
    assert 0 < data.reference["prior_test_acc"] < 1 and "prior_test_acc_relational" in data.reference
    assert len(list(tmp_path.glob("sort_of_clevr-*"))) == 1
    # The validation split holds out whole images: no image has questions in both splits.
    train_images, val_images = set(data.x_train["image"].tolist()), set(data.x_val["image"].tolist())
    assert val_images and not train_images & val_images and len(val_images) == round(0.1 * 60)
