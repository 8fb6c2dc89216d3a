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
a description that matches exactly one object, itself possibly relational. Answers are
balanced per template by rejection sampling: an answer is accepted only while its count is
below a cap (``ceil(quota / number of possible answers)``, raised slowly when the scenes
cannot supply the rarer answers), so no answer dominates a template and a question-only model
stays near chance.

The output has CLEVR v1.0's layout, so one loader reads this set and the real one::

    ROOT/images/{train,val}/CLEVR_{split}_{index:06d}.png
    ROOT/questions/CLEVR_{split}_questions.json   {"info": ..., "questions": [...]}
    ROOT/scenes/CLEVR_{split}_scenes.json         {"info": ..., "scenes": [...]}

Each question has CLEVR's keys (``question``, ``answer``, ``image_filename``, ``image_index``,
``split``, ``question_index``, ``question_family_index``, ``program``) plus ``question_type``
and ``template``. Generate a larger set with
``python -m normbench.data.clevr_like --out DIR --train 20000 --val 4000``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1
COLORS = {"gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
          "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208), "yellow": (255, 238, 51)}
SHAPES = ("cube", "sphere", "cylinder")
SIZES = ("large", "small")
ATTRIBUTES = {"size": SIZES, "color": tuple(COLORS), "shape": SHAPES}
PLURAL = {"cube": "cubes", "sphere": "spheres", "cylinder": "cylinders"}
# CLEVR's spatial relations; in the image "behind" is further up, "in front of" further down.
RELATIONS = {"left": "left of", "right": "right of", "behind": "behind", "front": "in front of"}
QUESTION_TYPES = ("exist", "count", "query_attribute", "compare_attribute", "compare_number")
TEMPLATES = {  # template -> (question type, possible answers, filled in by answers())
    "exist": "exist", "count": "count",
    "query_color": "query_attribute", "query_shape": "query_attribute", "query_size": "query_attribute",
    "equal_color": "compare_attribute", "equal_shape": "compare_attribute", "equal_size": "compare_attribute",
    "greater_than": "compare_number", "less_than": "compare_number", "equal_integer": "compare_number",
}
BACKGROUND = (196, 196, 190)
MAX_OBJECTS = 10  # CLEVR's maximum; more would not fit without overlaps


def answers(template: str, max_objects: int) -> tuple[str, ...]:
    """The answers a template can have."""
    if template == "count":
        return tuple(str(n) for n in range(max_objects + 1))
    if template.startswith("query_"):
        return ATTRIBUTES[template[len("query_"):]]
    return ("yes", "no")


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


def related(b: dict, relation: str, a: dict) -> bool:
    """Whether object ``b`` is ``relation`` of object ``a`` (``left``: b is left of a)."""
    return {"left": b["x"] < a["x"], "right": b["x"] > a["x"],
            "behind": b["y"] < a["y"], "front": b["y"] > a["y"]}[relation]


# -- questions ----------------------------------------------------------------------------------

class Program:
    """A CLEVR functional program under construction: a list of nodes, each naming its inputs."""

    def __init__(self):
        self.nodes: list[dict] = []

    def add(self, function: str, inputs=(), value=None) -> int:
        self.nodes.append({"function": function, "inputs": list(inputs),
                           "value_inputs": [] if value is None else [value]})
        return len(self.nodes) - 1


def noun(attrs: dict, plural: bool) -> str:
    words = [attrs[a] for a in ("size", "color") if a in attrs]
    if "shape" in attrs:
        words.append(PLURAL[attrs["shape"]] if plural else attrs["shape"])
    else:
        words.append("things" if plural else "thing")
    return " ".join(words)


def matches(o: dict, attrs: dict) -> bool:
    return all(o[a] == v for a, v in attrs.items())


def add_filters(program: Program, node: int, attrs: dict) -> int:
    for a in ("size", "color", "shape"):
        if a in attrs:
            node = program.add(f"filter_{a}", [node], attrs[a])
    return node


class Sampler:
    """Random sets and unique object references over one scene, with their programs."""

    def __init__(self, objects: list[dict], rng: np.random.Generator):
        self.objects, self.rng = objects, rng

    def random_attrs(self, exclude=(), max_attrs=2, like=None) -> dict:
        names = [a for a in ATTRIBUTES if a not in exclude]
        k = int(self.rng.integers(0, min(max_attrs, len(names)) + 1))
        chosen = list(self.rng.choice(names, size=k, replace=False)) if k else []
        # Values mostly from an object of the scene, so sets are often non-empty.
        source = like if like is not None else self.objects[self.rng.integers(len(self.objects))]
        return {a: (source[a] if self.rng.random() < 0.75 else
                    ATTRIBUTES[a][self.rng.integers(len(ATTRIBUTES[a]))]) for a in chosen}

    def unique(self, program: Program, exclude=(), depth=1):
        """``(phrase, index, node)`` of a description that matches exactly one object, or None."""
        target = int(self.rng.integers(len(self.objects)))
        o = self.objects[target]
        if depth > 0 and self.rng.random() < 0.35:  # relational: "the <thing> left of the <unique>"
            anchor_program = Program()
            ref = self.unique(anchor_program, depth=depth - 1)
            if ref is None or ref[1] == target:
                return None
            phrase_a, anchor, _ = ref
            relation = next(r for r in self.rng.permutation(list(RELATIONS))
                            if related(o, r, self.objects[anchor]))
            base = [j for j, b in enumerate(self.objects) if j != anchor and related(b, relation, self.objects[anchor])]
            for attrs in self._attr_subsets(o, exclude):
                if [j for j in base if matches(self.objects[j], attrs)] == [target]:
                    offset = len(program.nodes)
                    for node in anchor_program.nodes:
                        program.nodes.append({**node, "inputs": [i + offset for i in node["inputs"]]})
                    node = program.add("relate", [len(program.nodes) - 1], relation)
                    node = program.add("unique", [add_filters(program, node, attrs)])
                    return f"{noun(attrs, False)} {RELATIONS[relation]} the {phrase_a}", target, node
            return None
        for attrs in self._attr_subsets(o, exclude):
            if [j for j, b in enumerate(self.objects) if matches(b, attrs)] == [target]:
                node = add_filters(program, program.add("scene"), attrs)
                return noun(attrs, False), target, program.add("unique", [node])
        return None

    def _attr_subsets(self, o: dict, exclude) -> list[dict]:
        """Descriptions of ``o`` by subsets of its attributes (not ``exclude``), smaller ones first."""
        names = [a for a in ATTRIBUTES if a not in exclude]
        subsets = []
        for k in range(0, len(names) + 1):
            combos = list(itertools.combinations(names, k))
            self.rng.shuffle(combos)
            subsets += [{a: o[a] for a in combo} for combo in combos]
        return subsets

    def set(self, program: Program):
        """``(plural phrase, member indices, node)`` of a set of objects, possibly relational."""
        u = self.rng.random()
        if u < 0.5:
            attrs = self.random_attrs(max_attrs=3)
            members = [j for j, b in enumerate(self.objects) if matches(b, attrs)]
            return noun(attrs, True), members, add_filters(program, program.add("scene"), attrs)
        ref = self.unique(program, depth=0)
        if ref is None:
            return None
        phrase_a, anchor, node = ref
        a = self.objects[anchor]
        if u < 0.8:
            relation = list(RELATIONS)[self.rng.integers(len(RELATIONS))]
            attrs = self.random_attrs()
            members = [j for j, b in enumerate(self.objects)
                       if j != anchor and related(b, relation, a) and matches(b, attrs)]
            node = add_filters(program, program.add("relate", [node], relation), attrs)
            return f"{noun(attrs, True)} {RELATIONS[relation]} the {phrase_a}", members, node
        same = list(ATTRIBUTES)[self.rng.integers(len(ATTRIBUTES))]
        attrs = self.random_attrs(exclude=(same,), max_attrs=1)
        members = [j for j, b in enumerate(self.objects) if j != anchor and b[same] == a[same] and matches(b, attrs)]
        node = add_filters(program, program.add(f"same_{same}", [node]), attrs)
        return f"other {noun(attrs, True)} that have the same {same} as the {phrase_a}", members, node


def make_question(template: str, objects: list[dict], rng: np.random.Generator):
    """``(question, answer, program)`` for ``template`` on a scene, or None if this draw failed."""
    s, p = Sampler(objects, rng), Program()
    yes_no = {True: "yes", False: "no"}
    if template in ("exist", "count"):
        ref = s.set(p)
        if ref is None:
            return None
        phrase, members, node = ref
        p.add(template, [node])
        if template == "exist":
            return f"Are there any {phrase}?", yes_no[bool(members)], p.nodes
        return f"How many {phrase} are there?", str(len(members)), p.nodes
    if template.startswith("query_"):
        attr = template[len("query_"):]
        ref = s.unique(p, exclude=(attr,))
        if ref is None:
            return None
        phrase, target, node = ref
        p.add(template, [node])
        return f"What {attr} is the {phrase}?", objects[target][attr], p.nodes
    if template.startswith("equal_") and template != "equal_integer":
        attr = template[len("equal_"):]
        first, second = s.unique(p, exclude=(attr,)), None
        if first is not None:
            second = s.unique(p, exclude=(attr,))
        if second is None or first[1] == second[1]:
            return None
        p.add(template, [first[2], second[2]])
        answer = yes_no[objects[first[1]][attr] == objects[second[1]][attr]]
        return f"Does the {first[0]} have the same {attr} as the {second[0]}?", answer, p.nodes
    first = s.set(p)
    second = s.set(p) if first is not None else None
    if second is None or first[0] == second[0]:
        return None
    a, b = len(first[1]), len(second[1])
    p.add(template, [first[2], second[2]])
    if template == "greater_than":
        return f"Are there more {first[0]} than {second[0]}?", yes_no[a > b], p.nodes
    if template == "less_than":
        return f"Are there fewer {first[0]} than {second[0]}?", yes_no[a < b], p.nodes
    return f"Are there the same number of {first[0]} and {second[0]}?", yes_no[a == b], p.nodes


def make_questions(scenes: list[list[dict]], questions_per_image: int, max_objects: int,
                   rng: np.random.Generator) -> list[dict]:
    """Questions for every scene, balanced per template by rejecting over-represented answers.

    Every question type gets an equal share of the questions, split equally over its
    templates. A template's answer ``a`` is accepted while ``count[a] < cap``; the cap starts
    at ``ceil(quota / len(possible answers))`` and grows by a step when 200 draws in a row were
    rejected (scenes rarely hold, say, six red cubes).
    """
    total = len(scenes) * questions_per_image
    per_type = {t: [k for k, v in TEMPLATES.items() if v == t] for t in QUESTION_TYPES}
    quota = {k: total / len(QUESTION_TYPES) / len(per_type[TEMPLATES[k]]) for k in TEMPLATES}
    cap = {k: math.ceil(quota[k] / len(answers(k, max_objects))) for k in TEMPLATES}
    counts = {k: {} for k in TEMPLATES}
    accepted = {k: 0 for k in TEMPLATES}
    rejected = {k: 0 for k in TEMPLATES}
    names = list(TEMPLATES)
    out = []
    for index, objects in enumerate(scenes):
        asked = set()
        for _ in range(questions_per_image):
            for _attempt in range(2000):
                # The template furthest behind its quota (ties at random).
                behind = [quota[k] - accepted[k] for k in names]
                best = max(behind)
                template = names[rng.choice([i for i, b in enumerate(behind) if b >= best - 1e-9])] \
                    if rng.random() < 0.8 else names[rng.integers(len(names))]
                made = make_question(template, objects, rng)
                if made is None or made[0] in asked:
                    continue
                question, answer, program = made
                if counts[template].get(answer, 0) >= cap[template]:
                    rejected[template] += 1
                    if rejected[template] >= 200:
                        cap[template] += max(1, cap[template] // 20)
                        rejected[template] = 0
                    continue
                counts[template][answer] = counts[template].get(answer, 0) + 1
                accepted[template] += 1
                rejected[template] = 0
                asked.add(question)
                out.append({"image_index": index, "question": question, "answer": answer,
                            "question_family_index": names.index(template), "template": template,
                            "question_type": TEMPLATES[template], "program": program})
                break
    return out


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
                             "pixel_coords": [round(o["x"], 2), round(o["y"], 2), 0.0]} for o in objects],
                "relationships": relationships(objects),
            })
        questions = make_questions(scenes, questions_per_image, max_objects, rng)
        for i, q in enumerate(questions):
            q.update(split=split, question_index=i, image_filename=scene_records[q["image_index"]]["image_filename"])
        info = {"generator": "normbench.data.clevr_like", "version": GENERATOR_VERSION, "split": split, **params}
        for kind, key, items in (("questions", "questions", questions), ("scenes", "scenes", scene_records)):
            (out / kind).mkdir(exist_ok=True)
            (out / kind / f"CLEVR_{split}_{kind}.json").write_text(json.dumps({"info": info, key: items}))
    return out


def cache_key(**params) -> str:
    fields = {**params, "generator_version": GENERATOR_VERSION}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def cached(**params) -> Path:
    """The generated set for ``params`` in the cache directory, generated on first use."""
    from normbench.data.base import cache_dir

    path = cache_dir() / f"clevr_like-{cache_key(**params)}"
    if (path / "questions" / "CLEVR_val_questions.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".clevr_like-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700: others sharing the cache must read it
    try:
        generate(tmp, **params)
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
    from normbench.data.clevr import _positive, read
    from normbench.errors import ConfigError

    root = cfg.get("root")
    if root is None:
        params = {key: _positive(cfg, key, None) for key in _GENERATOR_KEYS}
        if not params["min_objects"] <= params["max_objects"] <= MAX_OBJECTS:
            raise ConfigError(f"dataset.min_objects={params['min_objects']} and dataset.max_objects="
                              f"{params['max_objects']}: need min_objects <= max_objects <= {MAX_OBJECTS}")
        seed = cfg.get("generator_seed", 0)
        try:
            root = cached(**params, image_size=_positive(cfg, "image_size", 64), seed=seed)
        except ValueError as exc:
            raise ConfigError(f"dataset={cfg.get('name', 'clevr_like')}: {exc}") from None
    return read(Path(str(root)).expanduser(), cfg, "clevr_like")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m normbench.data.clevr_like", description=(
        "Generate a CLEVR-like VQA set in CLEVR v1.0's layout (images/, questions/, scenes/); train on it with "
        "`normbench run model=film dataset=clevr dataset.root=OUT`."))
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--val", type=int, default=400, help="validation (test) images (default 400)")
    parser.add_argument("--questions-per-image", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64, help="rendered size in pixels (default 64)")
    parser.add_argument("--min-objects", type=int, default=3)
    parser.add_argument("--max-objects", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = generate(args.out, args.train, args.val, args.questions_per_image, args.image_size,
                   args.min_objects, args.max_objects, args.seed)
    for split in ("train", "val"):
        n = len(json.loads((out / "questions" / f"CLEVR_{split}_questions.json").read_text())["questions"])
        print(f"{split}: {n} questions -> {out / 'questions' / f'CLEVR_{split}_questions.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
