"""The CLEVR-like world's vocabulary: colours, shapes, sizes, CLEVR's spatial relations and scene
directions, the question templates and their answers. The scene generator
(:mod:`normbench.data.clevr_like`) and the question sampler (:mod:`normbench.data.clevr_questions`)
both read it, so neither imports the other's module for it.
"""

from __future__ import annotations

COLORS = {"gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
          "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208), "yellow": (255, 238, 51)}
SHAPES = ("cube", "sphere", "cylinder")
SIZES = ("large", "small")
ATTRIBUTES = {"size": SIZES, "color": tuple(COLORS), "shape": SHAPES}
PLURAL = {"cube": "cubes", "sphere": "spheres", "cylinder": "cylinders"}
# CLEVR's spatial relations; in the image "behind" is further up, "in front of" further down.
RELATIONS = {"left": "left of", "right": "right of", "behind": "behind", "front": "in front of"}
# CLEVR's scene "directions" for a camera looking straight down (x right, y away, z up).
DIRECTIONS = {"left": [-1.0, 0.0, 0.0], "right": [1.0, 0.0, 0.0], "behind": [0.0, 1.0, 0.0],
              "front": [0.0, -1.0, 0.0], "above": [0.0, 0.0, 1.0], "below": [0.0, 0.0, -1.0]}
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


def related(b: dict, relation: str, a: dict) -> bool:
    """Whether object ``b`` is ``relation`` of object ``a`` (``left``: b is left of a)."""
    return {"left": b["x"] < a["x"], "right": b["x"] > a["x"],
            "behind": b["y"] < a["y"], "front": b["y"] > a["y"]}[relation]
