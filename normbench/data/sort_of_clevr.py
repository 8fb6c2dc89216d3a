"""A Sort-of-CLEVR-style VQA set (Santoro et al. 2017), generated offline in seconds.

The small-scale proxy for FiLM's claims: a visual-reasoning task whose relational questions a
2-block, 32-map FiLM learns on two CPU cores, where the CLEVR-like set needs GPU-days.

Each ``image_size`` x ``image_size`` scene (32 by default) holds six objects, one of each colour
(red, green, blue, yellow, purple, gray), so a colour alone names an object; each is a square or
a circle of one size, at a random position, none overlapping. The number of squares in a scene
is uniform on 0..6 (so that every answer of the counting question occurs often enough to be
balanced). Questions have six fixed formats, two question types:

====================  ==============================================================  ==========
template              question (answers)                                                type
====================  ==============================================================  ==========
query_shape           "What shape is the red object?" (square, circle)                 non_relational
query_horizontal      "Is the red object on the left or the right?" (left, right)      non_relational
query_vertical        "Is the red object at the top or the bottom?" (top, bottom)      non_relational
closest_shape         "What shape is the object closest to the red object?"            relational
furthest_shape        "What shape is the object furthest from the red object?"         relational
count_same_shape      "How many objects have the same shape as the red object?" (1-6)  relational
====================  ==============================================================  ==========

Every (scene, template, colour) is a candidate; each template keeps the same number of
candidates of each of its answers (the rarest answer's count, at most the template's share),
drawn at random, so every answer of a template is equally frequent and a question-only model
is at chance. The questions are then shuffled, so that any prefix of the file is balanced too.

The set is written in CLEVR v1.0's layout (see :mod:`normbench.data.clevr_like`) and read by
the same loader; scenes record each object's ``color``, ``shape`` and ``pixel_coords``.
Questions carry no ``program`` (CLEVR's functions have no "closest"). Generate one with
``python -m normbench.data.sort_of_clevr --out DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 2  # 2: no ambiguous closest/furthest questions
COLORS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (40, 70, 230), "yellow": (240, 220, 40),
          "purple": (150, 40, 190), "gray": (128, 128, 128)}
SHAPES = ("square", "circle")
BACKGROUND = (0, 0, 0)
TEMPLATES = {  # template -> (question format, question type)
    "query_shape": ("What shape is the {} object?", "non_relational"),
    "query_horizontal": ("Is the {} object on the left or the right?", "non_relational"),
    "query_vertical": ("Is the {} object at the top or the bottom?", "non_relational"),
    "closest_shape": ("What shape is the object closest to the {} object?", "relational"),
    "furthest_shape": ("What shape is the object furthest from the {} object?", "relational"),
    "count_same_shape": ("How many objects have the same shape as the {} object?", "relational"),
}
ANSWERS = {"query_shape": SHAPES, "query_horizontal": ("left", "right"), "query_vertical": ("top", "bottom"),
           "closest_shape": SHAPES, "furthest_shape": SHAPES, "count_same_shape": tuple(str(k) for k in range(1, 7))}


def make_scenes(rng: np.random.Generator, n: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(n, 6, 2)`` (x, y pixels) and shapes ``(n, 6)`` (1: square) of ``n`` scenes."""
    k = len(COLORS)
    r = object_radius(image_size)
    xy = np.empty((n, k, 2))
    for i in range(n):
        placed: list[np.ndarray] = []
        while len(placed) < k:
            p = rng.uniform(r + 1, image_size - r - 1, size=2)
            if all(np.hypot(*(p - q)) > 2 * r + 1.5 for q in placed):
                placed.append(p)
        xy[i] = placed
    squares = rng.integers(0, k + 1, size=n)
    shapes = np.argsort(rng.random((n, k)), axis=1) < squares[:, None]  # a random `squares` of the six
    return xy, shapes.astype(np.int64)


def object_radius(image_size: int) -> float:
    return 0.09 * image_size


def render(xy: np.ndarray, shapes: np.ndarray, image_size: int) -> np.ndarray:
    """The scenes as uint8 ``(n, S, S, 3)`` images: squares and discs on a black floor."""
    r = object_radius(image_size)
    centre = np.arange(image_size) + 0.5
    dx = np.abs(centre[None, None, None, :] - xy[..., 0, None, None])  # (n, 6, 1, S)
    dy = np.abs(centre[None, None, :, None] - xy[..., 1, None, None])  # (n, 6, S, 1)
    square = (dx <= r) & (dy <= r)
    disc = dx ** 2 + dy ** 2 <= r ** 2
    masks = np.where(shapes[..., None, None] == 1, square, disc)  # (n, 6, S, S)
    palette = np.array(list(COLORS.values()), dtype=np.uint8)
    images = np.broadcast_to(np.array(BACKGROUND, dtype=np.uint8), (len(xy), image_size, image_size, 3)).copy()
    for c in range(len(COLORS)):
        images[masks[:, c]] = palette[c]
    return images


def candidate_answers(xy: np.ndarray, shapes: np.ndarray, image_size: int) -> dict[str, np.ndarray]:
    """Each template's answer index ``(n, 6)`` for every scene and colour; -1 where the question
    would be ambiguous (a closest or furthest object less than a pixel ahead of the next one)."""
    distance = np.linalg.norm(xy[:, :, None] - xy[:, None, :], axis=-1)  # (n, 6, 6)
    eye = np.eye(len(COLORS), dtype=bool)
    near = np.sort(np.where(eye, np.inf, distance), -1)
    far = np.sort(np.where(eye, -np.inf, distance), -1)
    closest = np.where(eye, np.inf, distance).argmin(-1)
    furthest = np.where(eye, -np.inf, distance).argmax(-1)
    same = (shapes[:, :, None] == shapes[:, None, :]).sum(-1)  # including itself: 1..6
    half = image_size / 2
    pick = np.take_along_axis
    # shape index: SHAPES = (square, circle), shapes 1 = square -> 0
    return {"query_shape": 1 - shapes, "query_horizontal": (xy[..., 0] >= half).astype(np.int64),
            "query_vertical": (xy[..., 1] >= half).astype(np.int64),
            "closest_shape": np.where(near[..., 1] - near[..., 0] < 1, -1, 1 - pick(shapes, closest, 1)),
            "furthest_shape": np.where(far[..., -1] - far[..., -2] < 1, -1, 1 - pick(shapes, furthest, 1)),
            "count_same_shape": same - 1}


def balanced_questions(answers: dict[str, np.ndarray], per_template: int, rng: np.random.Generator) -> list[dict]:
    """Equally many questions of each answer of each template (see the module docstring), shuffled."""
    colors = list(COLORS)
    out = []
    for family, (template, (text, qtype)) in enumerate(TEMPLATES.items()):
        flat = answers[template].reshape(-1)
        options = ANSWERS[template]
        by_answer = [np.flatnonzero(flat == a) for a in range(len(options))]
        quota = min(per_template // len(options), *(len(ix) for ix in by_answer))
        for a, ix in enumerate(by_answer):
            for j in rng.choice(ix, size=quota, replace=False):
                scene, color = divmod(int(j), len(colors))
                out.append({"image_index": scene, "question": text.format(colors[color]), "answer": options[a],
                            "question_family_index": family, "template": template, "question_type": qtype})
    return [out[i] for i in rng.permutation(len(out))]


def generate(out: str | Path, train_images: int = 10000, val_images: int = 2000, questions_per_image: int = 10,
             image_size: int = 32, seed: int = 0) -> Path:
    """Write a Sort-of-CLEVR set in CLEVR v1.0's layout into ``out``; return ``out``."""
    from PIL import Image

    from normbench.data.clevr_like import write_split

    out = Path(out)
    params = {"train_images": train_images, "val_images": val_images, "questions_per_image": questions_per_image,
              "image_size": image_size, "seed": seed, "generator_version": GENERATOR_VERSION}
    for split_index, (split, n) in enumerate((("train", train_images), ("val", val_images))):
        rng = np.random.default_rng([seed, split_index, 7])
        xy, shapes = make_scenes(rng, n, image_size)
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        scenes = []
        for index, pixels in enumerate(render(xy, shapes, image_size)):
            filename = f"CLEVR_{split}_{index:06d}.png"
            Image.fromarray(pixels).save(out / "images" / split / filename, compress_level=1)
            scenes.append({"split": split, "image_index": index, "image_filename": filename, "objects": [
                {"color": c, "shape": SHAPES[1 - int(shapes[index, k])],
                 "pixel_coords": [round(float(xy[index, k, 0]), 2), round(float(xy[index, k, 1]), 2), 0.0]}
                for k, c in enumerate(COLORS)]})
        questions = balanced_questions(candidate_answers(xy, shapes, image_size),
                                       n * questions_per_image // len(TEMPLATES), rng)
        write_split(out, split, questions, scenes,
                    {"generator": "normbench.data.sort_of_clevr", "version": GENERATOR_VERSION, **params})
    return out


_GENERATOR_KEYS = ("train_images", "val_images", "questions_per_image")


def load(cfg):
    """``dataset=sort_of_clevr``: the set in ``dataset.root``, or the one the config's keys generate (cached)."""
    from normbench.data.clevr import read
    from normbench.data.clevr_like import cached

    root = cfg.get("root")
    if root is None:
        params = {key: cfg.get(key) for key in _GENERATOR_KEYS}
        params.update(image_size=cfg.get("image_size", 32), seed=cfg.get("generator_seed", 0))
        root = cached("sort_of_clevr", generate, GENERATOR_VERSION, **params)
    return read(Path(str(root)).expanduser(), cfg, "sort_of_clevr")


def main(argv=None) -> int:
    from normbench.data.clevr_like import generator_parser, print_written

    args = generator_parser("sort_of_clevr", "a Sort-of-CLEVR VQA set", 10000, 2000, 10, 32).parse_args(argv)
    return print_written(generate(args.out, args.train, args.val, args.questions_per_image, args.image_size,
                                  args.seed))


if __name__ == "__main__":
    sys.exit(main())
