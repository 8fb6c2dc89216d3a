"""The questions of the CLEVR-like set: CLEVR's functional programs, with the function input
types of CLEVR's ``metadata.json`` (``equal_<attr>`` compares two ``query_<attr>`` outputs,
``equal_integer``, ``less_than`` and ``greater_than`` two ``count`` outputs), sampled per template
with answers balanced by CLEVR's rejection rule (see :mod:`normbench.data.clevr_like` for the
templates).
"""

from __future__ import annotations

import itertools

import numpy as np

from normbench.data.clevr_world import (
    ATTRIBUTES,
    PLURAL,
    QUESTION_TYPES,
    RELATIONS,
    TEMPLATES,
    answers,
    related,
)


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
        # CLEVR's equal_<attr> compares two attribute values: query_<attr> of each object.
        p.add(template, [p.add(f"query_{attr}", [first[2]]), p.add(f"query_{attr}", [second[2]])])
        answer = yes_no[objects[first[1]][attr] == objects[second[1]][attr]]
        return f"Does the {first[0]} have the same {attr} as the {second[0]}?", answer, p.nodes
    first = s.set(p)
    second = s.set(p) if first is not None else None
    if second is None or first[0] == second[0]:
        return None
    a, b = len(first[1]), len(second[1])
    p.add(template, [p.add("count", [first[2]]), p.add("count", [second[2]])])  # integers, as CLEVR's
    if template == "greater_than":
        return f"Are there more {first[0]} than {second[0]}?", yes_no[a > b], p.nodes
    if template == "less_than":
        return f"Are there fewer {first[0]} than {second[0]}?", yes_no[a < b], p.nodes
    return f"Are there the same number of {first[0]} and {second[0]}?", yes_no[a == b], p.nodes


def accepts(counts: dict[str, int], answer: str) -> bool:
    """CLEVR's rejection rule: an answer is refused while its count exceeds 1.1 times the
    second-largest count of its template, or 5 times the median (at least 5). The counts start
    at 0 for every possible answer, so every prefix of the questions stays balanced."""
    ordered = sorted(counts.values())
    median = max(ordered[len(ordered) // 2], 5)
    return not (counts[answer] > 1.1 * ordered[-2] or counts[answer] > 5 * median)


def make_questions(scenes: list[list[dict]], questions_per_image: int, max_objects: int,
                   rng: np.random.Generator) -> list[dict]:
    """Questions for every scene, balanced per template by CLEVR's rule (:func:`accepts`).

    Every question type gets an equal share of the questions, split equally over its templates;
    each draw asks the template furthest behind its share (or, one time in five, any template),
    so the templates stay in proportion along the file too.
    """
    total = len(scenes) * questions_per_image
    per_type = {t: [k for k, v in TEMPLATES.items() if v == t] for t in QUESTION_TYPES}
    quota = {k: total / len(QUESTION_TYPES) / len(per_type[TEMPLATES[k]]) for k in TEMPLATES}
    counts = {k: dict.fromkeys(answers(k, max_objects), 0) for k in TEMPLATES}
    names = list(TEMPLATES)
    out = []
    for index, objects in enumerate(scenes):
        asked = set()
        for _ in range(questions_per_image):
            for _attempt in range(2000):
                done = sum(sum(c.values()) for c in counts.values()) or 1
                behind = [quota[k] / total - sum(counts[k].values()) / done for k in names]
                best = max(behind)
                template = names[rng.choice([i for i, b in enumerate(behind) if b >= best - 1e-9])] \
                    if rng.random() < 0.8 else names[rng.integers(len(names))]
                made = make_question(template, objects, rng)
                if made is None or made[0] in asked or not accepts(counts[template], made[1]):
                    continue
                question, answer, program = made
                counts[template][answer] += 1
                asked.add(question)
                out.append({"image_index": index, "question": question, "answer": answer,
                            "question_family_index": names.index(template), "template": template,
                            "question_type": TEMPLATES[template], "program": program})
                break
    return out
