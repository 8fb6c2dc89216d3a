"""A CLEVR-like visual question answering set, generated offline in seconds.

Each scene has ``min_objects`` to ``max_objects`` objects on a plain floor, drawn from above
with PIL: a colour (CLEVR's eight: gray, red, blue, green, brown, purple, cyan, yellow), a
shape (cube: a square, sphere: a disc, cylinder: an upright body with a lighter elliptical
top), a size (large, small) and a position; objects never overlap, and any two differ by a
few pixels both across (left/right) and in depth (behind/in front of: up/down in the image).
CLEVR's materials (rubber, metal) are left out.

Questions come from templates of CLEVR's five question types, built as CLEVR's functional
programs (``scene``, ``filter_<attr>``, ``unique``, ``relate``, ``same_<attr>``, ``count``,
``exist``, ``query_<attr>``, ``equal_<attr>``, ``equal_integer``, ``less_than``,
``greater_than``), so every answer is computed from the scene:

==================  ================================================================
type                templates (answers)
==================  ================================================================
exist               "Are there any {set}?" (yes/no)
count               "How many {set} are there?" (0 .. max_objects)
query_attribute     "What color/shape/size is the {object}?"
compare_attribute   "Does the {object} have the same color/shape/size as the {object}?"
compare_number      "Are there more/fewer {set} than {set}?", "... the same number of ..."
==================  ================================================================

A ``{set}`` is a filter on some attributes ("small red things"), optionally relative to a
uniquely described object ("cubes left of the large cyan sphere") or sharing an attribute
with one ("other things that have the same color as the small cylinder"); an ``{object}`` is
a description that matches exactly one object, itself possibly relational. Programs follow
the function input types of CLEVR's ``metadata.json``, so CLEVR's own question engine
executes them to the stored answers. Answers are balanced per template by CLEVR's rejection
rule (an answer is refused while its count exceeds 1.1 times the template's second-largest),
applied along the file, so every prefix is balanced and a question-only model stays near its
per-template prior (recorded in each run's summary).

The output has CLEVR v1.0's layout, so one loader reads this set and the real one::

    ROOT/images/{train,val}/CLEVR_{split}_{index:06d}.png
    ROOT/questions/CLEVR_{split}_questions.json   {"info": ..., "questions": [...]}
    ROOT/scenes/CLEVR_{split}_scenes.json         {"info": ..., "scenes": [...]}

Scenes have CLEVR's ``objects`` (``color``, ``shape``, ``size``, ``pixel_coords``, and
``3d_coords``: the top view's position on CLEVR's -3..3 floor, x to the right, y away from the
camera (up in the image), z the object's half height), ``directions`` (the unit vectors of a
camera looking straight down, so ``relationships`` follow from ``3d_coords`` and ``directions``
with no margin) and ``relationships``. CLEVR's ``material`` and ``rotation`` are absent (every
object is one flat colour), and ``pixel_coords``' depth is 0.

Each question has CLEVR's keys (``question``, ``answer``, ``image_filename``, ``image_index``,
``split``, ``question_index``, ``question_family_index``, ``program``) plus ``question_type``
and ``template``. Generate a larger set with
``python -m normbench.data.clevr_like --out DIR --train 20000 --val 4000``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from normbench.data.clevr_questions import make_questions
from normbench.data.clevr_world import (  # noqa: F401  (the world's vocabulary, read here by its users)
    ATTRIBUTES,
    BACKGROUND,
    COLORS,
    DIRECTIONS,
    MAX_OBJECTS,
    PLURAL,
    QUESTION_TYPES,
    RELATIONS,
    SHAPES,
    SIZES,
    TEMPLATES,
    answers,
    related,
)

GENERATOR_VERSION = 2  # 2: programs in CLEVR's types, CLEVR's balancing rule, 3d_coords and directions
# -- scenes -------------------------------------------------------------------------------------

def radius(size: str, image_size: int) -> float:
    return (0.11 if size == "large" else 0.065) * image_size


def make_scene(rng: np.random.Generator, image_size: int, min_objects: int, max_objects: int) -> list[dict]:
    """Objects with colour, shape, size and pixel position; none overlap, all pairs apart in x and y."""
    for _restart in range(1000):
        n = int(rng.integers(min_objects, max_objects + 1))
        objects: list[dict] = []
        for _ in range(200):
            size = SIZES[rng.integers(len(SIZES))]
            r = radius(size, image_size)
            x, y = rng.uniform(r + 1, image_size - r - 1, size=2)
            if all(math.hypot(x - o["x"], y - o["y"]) > r + radius(o["size"], image_size) + 2
                   and abs(x - o["x"]) >= 2 and abs(y - o["y"]) >= 2 for o in objects):
                objects.append({"color": list(COLORS)[rng.integers(len(COLORS))],
                                "shape": SHAPES[rng.integers(len(SHAPES))], "size": size,
                                "x": float(x), "y": float(y)})
                if len(objects) == n:
                    return objects
    raise ValueError(f"cannot place {min_objects} to {max_objects} objects apart in a {image_size}x{image_size} image; "
                     "use fewer objects or a larger image_size")


def render(objects: list[dict], image_size: int):
    """The scene as a PIL RGB image, objects drawn back (top) to front (bottom)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for o in sorted(objects, key=lambda o: o["y"]):
        r, x, y = radius(o["size"], image_size), o["x"], o["y"]
        fill = COLORS[o["color"]]
        edge = tuple(int(c * 0.6) for c in fill)
        if o["shape"] == "cube":
            draw.rectangle([x - r, y - r, x + r, y + r], fill=fill, outline=edge)
        elif o["shape"] == "sphere":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=edge)
        else:  # cylinder: an upright body with a lighter elliptical top
            w = 0.7 * r
            top = tuple(min(255, int(c * 0.5 + 128)) for c in fill)
            draw.rectangle([x - w, y - 0.6 * r, x + w, y + r], fill=fill, outline=edge)
            draw.ellipse([x - w, y - r, x + w, y - 0.2 * r], fill=top, outline=edge)
    return image


def relationships(objects: list[dict]) -> dict[str, list[list[int]]]:
    """CLEVR's scene relationships: ``rel[r][i]`` lists the objects that are ``r`` of object ``i``."""
    rel = {}
    for name in RELATIONS:
        rel[name] = [[j for j, b in enumerate(objects) if j != i and related(b, name, a)]
                     for i, a in enumerate(objects)]
    return rel


def world_coords(o: dict, image_size: int) -> list[float]:
    """``o``'s position on CLEVR's floor (-3..3; y grows up the image) and its half height."""
    return [round(6 * o["x"] / image_size - 3, 4), round(3 - 6 * o["y"] / image_size, 4),
            0.7 if o["size"] == "large" else 0.35]


# -- the set on disk ----------------------------------------------------------------------------

def generate(out: str | Path, train_images: int = 2000, val_images: int = 400, questions_per_image: int = 5,
             image_size: int = 64, min_objects: int = 3, max_objects: int = 6, seed: int = 0) -> Path:
    """Write a CLEVR-like set in CLEVR v1.0's layout into ``out``; return ``out``."""

    if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {min_objects} and {max_objects}")
    out = Path(out)
    params = {"train_images": train_images, "val_images": val_images, "questions_per_image": questions_per_image,
              "image_size": image_size, "min_objects": min_objects, "max_objects": max_objects, "seed": seed,
              "generator_version": GENERATOR_VERSION}
    for split_index, (split, n_images) in enumerate((("train", train_images), ("val", val_images))):
        rng = np.random.default_rng([seed, split_index])
        scenes = [make_scene(rng, image_size, min_objects, max_objects) for _ in range(n_images)]
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        scene_records = []
        for index, objects in enumerate(scenes):
            filename = f"CLEVR_{split}_{index:06d}.png"
            render(objects, image_size).save(out / "images" / split / filename, compress_level=1)
            scene_records.append({
                "split": split, "image_index": index, "image_filename": filename,
                "objects": [{"color": o["color"], "shape": o["shape"], "size": o["size"],
                             "pixel_coords": [round(o["x"], 2), round(o["y"], 2), 0.0],
                             "3d_coords": world_coords(o, image_size)} for o in objects],
                "directions": DIRECTIONS, "relationships": relationships(objects),
            })
        questions = make_questions(scenes, questions_per_image, max_objects, rng)
        write_split(out, split, questions, scene_records,
                    {"generator": "normbench.data.clevr_like", "version": GENERATOR_VERSION, **params})
    return out


def write_split(out: Path, split: str, questions: list[dict], scenes: list[dict], info: dict) -> None:
    """A split's question and scene files in CLEVR's layout: each question numbered and given its
    split and image file name (from its scene), both files under the same ``info``."""
    for i, q in enumerate(questions):
        q.update(split=split, question_index=i, image_filename=scenes[q["image_index"]]["image_filename"])
    info = {**info, "split": split}
    for kind, items in (("questions", questions), ("scenes", scenes)):
        (out / kind).mkdir(exist_ok=True)
        (out / kind / f"CLEVR_{split}_{kind}.json").write_text(json.dumps({"info": info, kind: items}))


def cached(prefix: str, generate_set, version: int, **params) -> Path:
    """The set ``generate_set(dir, **params)`` writes, in the cache directory, generated on first use.

    Keyed by ``prefix``, the generator's ``version`` and ``params``; written to a temporary
    directory and renamed into place, so a reader never sees a half-written set.
    """
    from normbench.data.base import cache_dir

    key = hashlib.sha1(json.dumps({**params, "generator_version": version}, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"{prefix}-{key}"
    if (path / "questions" / "CLEVR_val_questions.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700: others sharing the cache must read it
    try:
        generate_set(tmp, **params)
        try:
            os.replace(tmp, path)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


_GENERATOR_KEYS = ("train_images", "val_images", "questions_per_image", "min_objects", "max_objects")


def load(cfg):
    """``dataset=clevr_like``: the set in ``dataset.root``, or the one the config's parameters generate.

    With ``root: null`` the set is generated on first use (a few seconds for the default 2000 + 400
    images) and cached under ``$NORMBENCH_CACHE`` (or ``~/.cache/normbench``), keyed by the
    generator's parameters; it is rendered at ``dataset.image_size``. Then it is read like CLEVR
    (:func:`normbench.data.clevr.read`).
    """
    from normbench.data.clevr import read
    from normbench.errors import ConfigError

    root = cfg.get("root")
    if root is None:
        params = {key: cfg.get(key) for key in _GENERATOR_KEYS}
        if not params["min_objects"] <= params["max_objects"] <= MAX_OBJECTS:
            raise ConfigError(f"dataset.min_objects={params['min_objects']} and dataset.max_objects="
                              f"{params['max_objects']}: need min_objects <= max_objects <= {MAX_OBJECTS}")
        seed = cfg.get("generator_seed", 0)
        try:
            root = cached("clevr_like", generate, GENERATOR_VERSION, **params,
                          image_size=cfg.get("image_size", 64), seed=seed)
        except ValueError as exc:
            raise ConfigError(f"dataset={cfg.get('name', 'clevr_like')}: {exc}") from None
    return read(Path(str(root)).expanduser(), cfg, "clevr_like")


def generator_parser(module: str, what: str, train: int, val: int, per_image: int, image_size: int):
    """The command line of a generator module (``python -m normbench.data.<module> --out DIR``)."""
    parser = argparse.ArgumentParser(prog=f"python -m normbench.data.{module}", description=(
        f"Generate {what} in CLEVR v1.0's layout (images/, questions/, scenes/); train on it with "
        f"`normbench run model=film dataset={module} dataset.root=OUT`."))
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train", type=int, default=train, help=f"training images (default {train})")
    parser.add_argument("--val", type=int, default=val, help=f"validation (test) images (default {val})")
    parser.add_argument("--questions-per-image", type=int, default=per_image)
    parser.add_argument("--image-size", type=int, default=image_size, help=f"rendered size in pixels (default {image_size})")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def print_written(out: Path) -> int:
    """Say where a generator wrote each split's questions; the exit status."""
    for split in ("train", "val"):
        path = out / "questions" / f"CLEVR_{split}_questions.json"
        print(f"{split}: {len(json.loads(path.read_text())['questions'])} questions -> {path}")
    return 0


def main(argv=None) -> int:
    parser = generator_parser("clevr_like", "a CLEVR-like VQA set", 2000, 400, 5, 64)
    parser.add_argument("--min-objects", type=int, default=3)
    parser.add_argument("--max-objects", type=int, default=6)
    args = parser.parse_args(argv)
    return print_written(generate(args.out, args.train, args.val, args.questions_per_image, args.image_size,
                                  args.min_objects, args.max_objects, args.seed))


if __name__ == "__main__":
    sys.exit(main())
