"""Sections and their fragment files: one stage's part of the report, written by its own rule.

Fragment file format (version 1): the first line is an HTML comment
``<!-- gzmorph-section {json} -->`` holding ``title``, ``anchor``, ``order`` and
``format``; the rest is the rendered ``<section>`` element.  One file per rule
keeps the Snakemake output list simple.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..io import InputError, atomic_path
from .blocks import Block, esc

FRAGMENT_FORMAT = 1
_META_RE = re.compile(r"\A<!-- gzmorph-section (\{.*?\}) -->\n", re.S)
_ANCHOR_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9_-]*\Z")

#: Conventional ``order`` values, so sections of different stages sort the same
#: way whatever order the fragment paths are given in.
ORDER = {
    "curation": 10,
    "classification": 20,
    "distillation": 30,
    "embeddings": 40,
    "evaluation": 50,
    "appendix": 90,
}


def slugify(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s if s and s[0].isalpha() else f"s-{s}" if s else "section"


@dataclass
class Section:
    """One stage's part of the report.

    ``anchor`` is the element id used by the table of contents (default: a slug
    of the title); ``order`` sorts sections in :func:`assemble` (see
    :data:`ORDER`); ``summary`` is a one-line text shown in the contents.
    """

    title: str
    anchor: str | None = None
    blocks: list[Block] = field(default_factory=list)
    order: float = 100
    summary: str | None = None

    def __post_init__(self):
        if self.anchor is None:
            self.anchor = slugify(self.title)
        if not _ANCHOR_RE.match(self.anchor):
            raise ValueError(f"section anchor {self.anchor!r}: use letters, digits, '-' or '_', "
                             "starting with a letter")
        for b in self.blocks:
            _check_block(b)

    def add(self, *blocks: Block) -> "Section":
        for b in blocks:
            _check_block(b)
            self.blocks.append(b)
        return self

    @property
    def meta(self) -> dict:
        return {"format": FRAGMENT_FORMAT, "title": self.title, "anchor": self.anchor,
                "order": self.order, "summary": self.summary}

    def exports(self) -> list:
        """The tables and figures of the section's blocks, in page order (:class:`~.blocks.Export`)."""
        return [e for b in self.blocks for e in b.exports]

    def render(self) -> str:
        body = "\n".join(b.html for b in self.blocks)
        return (f'<section class="gz-section" id="{esc(self.anchor)}">\n'
                f'<h2><a class="gz-anchor" href="#{esc(self.anchor)}">{esc(self.title)}</a></h2>\n'
                f"{body}\n</section>\n")


def _check_block(b) -> None:
    if not isinstance(b, Block):
        raise TypeError(f"section blocks must be Block objects (from the helpers), got {type(b).__name__}")


@dataclass(frozen=True)
class Fragment:
    """A section read back from its fragment file."""

    title: str
    anchor: str
    order: float
    summary: str | None
    html: str
    path: Path | None = None


def _meta_comment(meta: dict) -> str:
    # "--" may not occur inside an HTML comment; outside JSON strings it never does.
    text = json.dumps(meta, ensure_ascii=True, sort_keys=True).replace("--", "-\\u002d")
    return f"<!-- gzmorph-section {text} -->\n"


def fragment_text(section: Section) -> str:
    return _meta_comment(section.meta) + section.render()


def write_fragment(section: Section, path: str | Path, *, figures: str | Path | None = None,
                   tables: str | Path | None = None) -> Path:
    """Write ``section`` to one fragment file (atomically); return the path.

    ``figures`` / ``tables``: folders that get each figure of the section as a PNG and each table
    as a TSV file as well (:func:`gzmorph.report.exports.write_exports`), written before the fragment.
    """
    if figures is not None or tables is not None:
        from .exports import write_exports

        write_exports(section.exports(), figures, tables)
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(fragment_text(section), encoding="utf-8")
    return path


def read_fragment(path: str | Path) -> Fragment:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    m = _META_RE.match(text)
    if not m:
        raise InputError(f"{path}: not a gzmorph report fragment (no '<!-- gzmorph-section {{...}} -->' "
                         "first line); write it with gzmorph.report.write_fragment")
    meta = json.loads(m.group(1))
    if meta.get("format") != FRAGMENT_FORMAT:
        raise InputError(f"{path}: fragment format {meta.get('format')!r}, expected {FRAGMENT_FORMAT}")
    return Fragment(title=meta["title"], anchor=meta["anchor"], order=meta.get("order", 100),
                    summary=meta.get("summary"), html=text[m.end():], path=path)
