"""The package's layout, counted: modules at the top of ``normbench/``, import cycles among its
modules (imports inside functions counted), and imports of a room above the importer's.

    python scripts/check_layout.py        # prints the counts; exit 1 if any rule is broken

The rooms, from the ground floor up (a room may import its own modules and those of the rooms
it lists):
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "normbench"
MAX_TOP = 8
GROUND = "ground"
#: room -> the rooms it may import (besides itself); the ground floor is the top-level modules.
ROOMS = {
    GROUND: set(),
    "config": {GROUND},
    "norms": {GROUND, "config"},
    "data": {GROUND, "config"},
    "models": {GROUND, "config", "norms"},
    "training": {GROUND, "config", "norms", "data", "models"},
    "report": {GROUND, "config"},
    "claims": {GROUND, "config", "report"},
    "cli": {GROUND, "config", "norms", "data", "models", "training", "report", "claims"},
    "entry": {GROUND, "config", "norms", "data", "models", "training", "report", "claims", "cli"},
}
#: the entry points (`python -m`, the Python API): they may import any room
ENTRY = {"normbench.api", "normbench.__main__", "normbench.report.__main__"}
__doc__ += "".join(f"\n    {room:<9} -> {', '.join(sorted(allowed)) or '(nothing)'}" for room, allowed in ROOMS.items())


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in out if m in known and m != name}


def room(name: str) -> str:
    parts = name.split(".")
    if name in ENTRY:
        return "entry"
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else GROUND


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    found = cycles(graph)
    upward = sorted(f"{a} ({room(a)}) imports {b} ({room(b)})" for a, deps in graph.items() for b in deps
                    if room(b) != room(a) and room(b) not in ROOMS[room(a)])
    print(f"top-level modules: {len(top)} (at most {MAX_TOP}): {', '.join(top)}")
    print(f"modules: {len(known)}, import edges: {sum(map(len, graph.values()))}")
    print(f"import cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    print(f"imports of a room above: {len(upward)}")
    for line in upward:
        print("  " + line)
    return int(len(top) > MAX_TOP or bool(found) or bool(upward))


if __name__ == "__main__":
    sys.exit(main())
