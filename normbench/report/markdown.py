"""``report.md``: the plots and tables of a report, readable on GitHub and in any editor.

The document is assembled from sections, each a list of Markdown lines; a section whose data is
missing (no curves, a single batch size) is left out rather than shown empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


def md_table(df: pd.DataFrame) -> list[str]:
    """A GitHub-flavoured Markdown table of ``df`` (cells as text, pipes escaped)."""
    if df is None or df.empty:
        return ["_(none)_"]

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join(" --- " for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in df.itertuples(index=False, name=None)]
    return [head, rule, *body]


@dataclass
class Section:
    """A heading, paragraphs, images and tables, in order."""

    title: str
    lines: list[str] = field(default_factory=list)

    def text(self, *paragraphs: str) -> Section:
        for p in paragraphs:
            self.lines.extend([p, ""])
        return self

    def image(self, path: Path, root: Path, alt: str, svg: Path | None = None) -> Section:
        rel = path.relative_to(root).as_posix()
        line = f"![{alt}]({rel})"
        if svg is not None:
            line += f"  \n[SVG]({svg.relative_to(root).as_posix()})"
            pdf = svg.with_suffix(".pdf")
            if pdf.exists():  # the figure for a paper, beside the SVG
                line += f" · [PDF]({pdf.relative_to(root).as_posix()})"
        self.lines.extend([line, ""])
        return self

    def table(self, df: pd.DataFrame, caption: str | None = None) -> Section:
        if caption:
            self.lines.extend([caption, ""])
        self.lines.extend([*md_table(df), ""])
        return self


def render(title: str, sections: Sequence[Section]) -> str:
    """The whole document: a title, then each non-empty section under a ``##`` heading."""
    out = [f"# {title}", ""]
    for s in sections:
        if not s.lines:
            continue
        out.extend([f"## {s.title}", "", *s.lines])
    return "\n".join(out).rstrip() + "\n"
