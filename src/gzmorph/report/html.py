"""A small builder for the self-contained HTML report.

Every pipeline stage contributes one :class:`Section` made of *blocks*
(``paragraph``, ``metrics``, ``table``, ``figure``, ``image_grid`` ...).  A
Snakemake rule writes its section to one **fragment** file with
:func:`write_fragment`; the final rule calls :func:`assemble` on all fragment
paths and writes one ``report/index.html`` with a header, a table of contents
and the sections sorted by their ``order``.

The page needs nothing outside itself: images are base64 ``data:`` URIs, the CSS
is inline and there is no JavaScript.

Fragment file format (version 1): the first line is an HTML comment
``<!-- gzmorph-section {json} -->`` holding ``title``, ``anchor``, ``order`` and
``format``; the rest is the rendered ``<section>`` element.  One file per rule
keeps the Snakemake output list simple.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html as _html
import io
import json
import math
import numbers
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..io import InputError, atomic_path

FRAGMENT_FORMAT = 1
_META_RE = re.compile(r"\A<!-- gzmorph-section (\{.*?\}) -->\n", re.S)
_NUM = ' class="num"'
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


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    """A rendered piece of a section: trusted HTML (helpers escape their text)."""

    html: str
    kind: str = "raw"

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.html


def esc(text: Any) -> str:
    """HTML-escape ``text`` (quotes included)."""
    return _html.escape(str(text), quote=True)


def _text_html(text: str) -> str:
    """Escape text; blank lines separate paragraphs, ``code`` spans in backticks."""
    out = esc(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def paragraph(text: str, *, muted: bool = False) -> Block:
    """Plain text (escaped). Blank lines start a new paragraph; `backticks` give code."""
    cls = ' class="gz-muted"' if muted else ""
    paras = [p.strip() for p in re.split(r"\n\s*\n", str(text)) if p.strip()]
    return Block("".join(f"<p{cls}>{_text_html(p)}</p>" for p in paras), "paragraph")


def heading(text: str) -> Block:
    """A sub-heading inside a section."""
    return Block(f"<h3>{esc(text)}</h3>", "heading")


def note(text: str, *, kind: str = "info") -> Block:
    """A highlighted call-out box; ``kind`` is ``info`` or ``warn``."""
    if kind not in ("info", "warn"):
        raise ValueError(f"note kind must be 'info' or 'warn', not {kind!r}")
    return Block(f'<div class="gz-note gz-{kind}">{_text_html(text)}</div>', "note")


def raw_html(markup: str) -> Block:
    """Trusted HTML, inserted as is (it must not reference external URLs)."""
    return Block(str(markup), "raw")


def bullet_list(items: Iterable[Any]) -> Block:
    return Block("<ul>" + "".join(f"<li>{_text_html(str(i))}</li>" for i in items) + "</ul>", "list")


def definition_list(items: Mapping[str, Any]) -> Block:
    """Term/description pairs, e.g. a cut's rule per class."""
    body = "".join(f"<dt>{esc(k)}</dt><dd>{_text_html(str(v))}</dd>" for k, v in items.items())
    return Block(f'<dl class="gz-dl">{body}</dl>', "dl")


def format_value(value: Any, float_format: str | Callable[[float], str] | None = None) -> str:
    """Format one value for display (text, not escaped)."""
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "–"
        if float_format is None:
            if v == 0 or 1e-3 <= abs(v) < 1e6:
                return f"{v:.3f}" if abs(v) < 10 else f"{v:,.1f}"
            return f"{v:.3g}"
        if callable(float_format):
            return float_format(v)
        if "%" in float_format and "{" not in float_format:
            return float_format % v
        return float_format.format(v)
    return str(value)


def metrics(values: Mapping[str, Any], *, caption: str | None = None,
            float_format: str | Callable[[float], str] | None = None) -> Block:
    """A row of headline numbers. Integers get thousands separators."""
    cards = []
    for name, value in values.items():
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
            shown = f"{int(value):,}"
        else:
            shown = format_value(value, float_format)
        cards.append(f'<div class="gz-metric"><div class="gz-metric-value">{esc(shown)}</div>'
                     f'<div class="gz-metric-name">{esc(name)}</div></div>')
    cap = f'<div class="gz-caption">{_text_html(caption)}</div>' if caption else ""
    return Block(f'<div class="gz-metrics">{"".join(cards)}</div>{cap}', "metrics")


def table(data, *, caption: str | None = None,
          float_format: str | Callable[[float], str] | None = None,
          index: bool | None = None, max_rows: int | None = 200,
          total_row: bool = False) -> Block:
    """A table from a pandas DataFrame, a list of dicts or a dict of columns.

    ``float_format`` is ``"{:.3f}"``, ``"%.3f"`` or a callable.  ``index``
    shows the DataFrame index (default: when it is not a plain RangeIndex).
    Rows beyond ``max_rows`` are left out with a note.  ``total_row`` marks the
    last row as a total (bold).
    """
    import pandas as pd

    if isinstance(data, pd.Series):
        data = data.to_frame()
    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(list(data) if not isinstance(data, Mapping) else data)
    df = data
    if index is None:
        index = not isinstance(df.index, pd.RangeIndex)
    n_total = len(df)
    if max_rows is not None and n_total > max_rows:
        df = df.iloc[:max_rows]
    cols = list(df.columns)
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in cols]

    head = []
    if index:
        head.append(f'<th scope="col">{esc(df.index.name or "")}</th>')
    for c, num in zip(cols, numeric):
        head.append(f'<th scope="col"{_NUM if num else ""}>{esc(c)}</th>')
    rows = []
    last = len(df) - 1
    for i, (idx, row) in enumerate(zip(df.index, df.itertuples(index=False, name=None))):
        cells = []
        if index:
            cells.append(f'<th scope="row">{esc(format_value(idx))}</th>')
        for v, num in zip(row, numeric):
            cells.append(f'<td{_NUM if num else ""}>{esc(format_value(v, float_format))}</td>')
        cls = ' class="gz-total"' if total_row and i == last else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    cap = f"<caption>{_text_html(caption)}</caption>" if caption else ""
    more = ""
    if len(df) < n_total:
        more = f'<div class="gz-muted gz-small">{n_total - len(df):,} more rows not shown.</div>'
    return Block(f'<div class="gz-table-wrap"><table class="gz-table">{cap}<thead><tr>{"".join(head)}'
                 f'</tr></thead><tbody>{"".join(rows)}</tbody></table>{more}</div>', "table")


# --------------------------------------------------------------------------- images


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def encode_array(image: np.ndarray, *, fmt: str = "png", max_px: int | None = None,
                 quality: int = 90) -> tuple[str, int, int]:
    """Encode one H×W, H×W×3 or H×W×4 uint8 image; return ``(data_uri, width, height)``.

    Images larger than ``max_px`` on their long side are downscaled first.
    """
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise ValueError(f"image must be uint8 or float in [0, 1], got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"image must be H×W, H×W×3 or H×W×4, got shape {arr.shape}")
    img = Image.fromarray(np.ascontiguousarray(arr))
    if max_px is not None and max(img.size) > max_px:
        scale = max_px / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    fmt = fmt.lower()
    if fmt in ("jpg", "jpeg"):
        img.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
        mime = "image/jpeg"
    elif fmt == "png":
        img.save(buf, format="PNG", optimize=True)
        mime = "image/png"
    else:
        raise ValueError(f"fmt must be 'png' or 'jpeg', not {fmt!r}")
    return data_uri(buf.getvalue(), mime), img.width, img.height


def encode_figure(fig, *, dpi: int = 144, close: bool = True) -> tuple[str, int, int]:
    """Render a matplotlib figure to a PNG data URI; return ``(uri, css_width, css_height)``.

    The PNG is rendered at ``dpi`` and shown at 100 px per inch, so it stays
    sharp on high-density screens.  The figure is closed afterwards.
    """
    from PIL import Image

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    finally:
        if close:
            close_figure(fig)
    payload = buf.getvalue()
    with Image.open(io.BytesIO(payload)) as im:
        w, h = im.size
    scale = 100.0 / dpi
    return data_uri(payload, "image/png"), round(w * scale), round(h * scale)


def close_figure(fig) -> None:
    """Close ``fig`` in pyplot's registry if pyplot is in use (without importing it)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)


def new_figure(figsize: tuple[float, float] = (6.4, 3.6), **kwargs):
    """A matplotlib ``Figure`` outside pyplot (no global state, Agg rendering), constrained layout."""
    from matplotlib.figure import Figure

    kwargs.setdefault("layout", "constrained")
    return Figure(figsize=figsize, **kwargs)


def style_axes(ax, *, grid: str | None = "y") -> None:
    """The report's axes style: no top/right spines, light grid on ``grid`` ('x', 'y', 'both' or None)."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9aa1b1")
    ax.tick_params(colors="#3a4150", labelsize=9)
    if grid:
        ax.grid(True, axis=grid, color="#e3e6ee", linewidth=0.8)
        ax.set_axisbelow(True)


def figure(fig, caption: str | None = None, *, dpi: int = 144, alt: str | None = None) -> Block:
    """A matplotlib figure as an embedded PNG with a caption; closes the figure."""
    uri, w, h = encode_figure(fig, dpi=dpi)
    cap = f"<figcaption>{_text_html(caption)}</figcaption>" if caption else ""
    return Block(f'<figure class="gz-figure"><img src="{uri}" width="{w}" height="{h}" '
                 f'alt="{esc(alt or caption or "figure")}">{cap}</figure>', "figure")


def image_grid(images, titles: Sequence[Any] | None = None, *, ncols: int = 8,
               caption: str | None = None, cell_px: int = 112, max_px: int | None = 160,
               fmt: str = "png", pixelated: bool | None = None, label: str | None = None) -> Block:
    """A responsive grid of image tensors (N×H×W×3 uint8, or a list of arrays).

    Each image is embedded at its own resolution (downscaled to ``max_px`` when
    larger) and shown ``cell_px`` wide; images smaller than the cell are
    upscaled with ``image-rendering: pixelated`` (``pixelated=None``: when
    upscaled).  ``titles`` (one per image, ``\\n`` for a line break) go under
    each image.  The grid wraps to fewer than ``ncols`` columns on a narrow
    screen.  ``label`` names the grid in a small heading above it.
    """
    images = list(images) if not isinstance(images, np.ndarray) else images
    n = len(images)
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images")
    cells = []
    for i in range(n):
        uri, w, h = encode_array(images[i], fmt=fmt, max_px=max_px)
        pix = pixelated if pixelated is not None else (max(w, h) < cell_px)
        cls = ' class="gz-pixelated"' if pix else ""
        title = "" if titles is None else str(titles[i])
        t_html = "<br>".join(esc(part) for part in title.split("\n"))
        alt = esc(title.replace("\n", " ") or f"image {i}")
        cells.append(f'<div class="gz-cell"><img{cls} src="{uri}" width="{w}" height="{h}" alt="{alt}">'
                     + (f'<div class="gz-cell-title">{t_html}</div>' if title else "") + "</div>")
    if not cells:
        cells.append('<div class="gz-muted gz-small">(no images)</div>')
    lab = f'<div class="gz-grid-label">{esc(label)}</div>' if label else ""
    cap = f"<figcaption>{_text_html(caption)}</figcaption>" if caption else ""
    style = f"--gz-cell:{int(cell_px)}px;--gz-ncols:{int(ncols)}"
    return Block(f'<figure class="gz-grid-figure">{lab}<div class="gz-grid" style="{style}">'
                 f'{"".join(cells)}</div>{cap}</figure>', "image_grid")


def columns(*blocks: Block) -> Block:
    """Blocks side by side on a wide screen, stacked on a narrow one."""
    inner = "".join(f'<div class="gz-col">{b.html}</div>' for b in blocks)
    return Block(f'<div class="gz-columns">{inner}</div>', "columns")


def details(summary: str, *blocks: Block, open: bool = False) -> Block:
    """A collapsible group (``<details>``, works without JavaScript)."""
    inner = "".join(b.html for b in blocks)
    return Block(f'<details class="gz-details"{" open" if open else ""}><summary>{esc(summary)}</summary>'
                 f"{inner}</details>", "details")


# --------------------------------------------------------------------------- sections


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


def write_fragment(section: Section, path: str | Path) -> Path:
    """Write ``section`` to one fragment file (atomically); return the path."""
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


# --------------------------------------------------------------------------- page


def page_css() -> str:
    from .style import CSS

    return CSS


def _version() -> str:
    try:
        from .. import __version__
        return __version__
    except Exception:  # pragma: no cover
        return "unknown"


def _config_rows(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            rows.extend(_config_rows(v, key + "."))
        elif isinstance(v, (list, tuple)):
            rows.append((key, ", ".join(format_value(x) for x in v) if len(v) <= 12
                         else f"[{len(v)} items]"))
        else:
            rows.append((key, format_value(v)))
    return rows


def render_page(fragments: Sequence[Fragment], *, title: str, meta: Mapping[str, Any] | None = None) -> str:
    """The full HTML page for already-ordered fragments."""
    meta = dict(meta or {})
    dataset = meta.pop("dataset", None)
    config = meta.pop("config", None)
    date = meta.pop("date", None) or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    version = meta.pop("version", None) or _version()

    facts = []
    if dataset is not None:
        facts.append(("dataset", str(dataset)))
    facts.append(("generated", str(date)))
    facts.append(("gzmorph", str(version)))
    for k, v in meta.items():  # any other scalar header facts
        if not isinstance(v, (Mapping, list, tuple)):
            facts.append((str(k), format_value(v)))
    facts_html = "".join(f'<div class="gz-fact"><span class="gz-fact-k">{esc(k)}</span>'
                         f'<span class="gz-fact-v">{esc(v)}</span></div>' for k, v in facts)

    config_html = ""
    if config:
        rows = "".join(f"<tr><th scope=\"row\">{esc(k)}</th><td>{esc(v)}</td></tr>"
                       for k, v in _config_rows(config))
        config_html = (f'<details class="gz-details gz-config"><summary>Configuration</summary>'
                       f'<div class="gz-table-wrap"><table class="gz-table gz-kv">{rows}</table></div></details>')

    toc_items = []
    for i, f in enumerate(fragments, 1):
        summ = f'<span class="gz-toc-summary">{esc(f.summary)}</span>' if f.summary else ""
        toc_items.append(f'<li><a href="#{esc(f.anchor)}"><span class="gz-toc-n">{i}</span>'
                         f"{esc(f.title)}</a>{summ}</li>")
    toc = (f'<nav class="gz-toc" aria-label="Contents"><div class="gz-toc-title">Contents</div>'
           f'<ol>{"".join(toc_items)}</ol></nav>') if fragments else ""
    body = "\n".join(f.html for f in fragments) if fragments else \
        '<p class="gz-muted">No sections were produced.</p>'
    sub = f'<div class="gz-subtitle">{esc(dataset)}</div>' if dataset is not None else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="gzmorph {esc(version)}">
<title>{esc(title)}{' – ' + esc(dataset) if dataset is not None else ''}</title>
<style>
{page_css()}
</style>
</head>
<body>
<header class="gz-header" id="top">
<div class="gz-header-inner">
<h1>{esc(title)}</h1>{sub}
<div class="gz-facts">{facts_html}</div>
{config_html}
</div>
</header>
<div class="gz-layout">
{toc}
<main class="gz-main">
{body}
</main>
</div>
<footer class="gz-footer">Generated by gzmorph {esc(version)} · {esc(date)} · self-contained page, no external resources · <a href="#top">back to top</a></footer>
</body>
</html>
"""


def assemble(fragment_paths: Iterable[str | Path], out_html: str | Path, *, title: str = "gzmorph report",
             meta: Mapping[str, Any] | None = None, sections: Iterable[Section] = ()) -> Path:
    """Read fragments (and in-memory ``sections``), sort them and write one HTML page atomically.

    Sections are sorted by their ``order``; ties keep the order given
    (fragment paths first, then ``sections``).  ``meta`` may hold ``dataset``,
    ``config`` (a dict, shown collapsible), ``date`` and ``version`` and any
    other scalar facts for the header.  Duplicate anchors are an error.
    """
    frags = [read_fragment(p) for p in fragment_paths]
    frags += [Fragment(s.title, s.anchor, s.order, s.summary, s.render()) for s in sections]
    seen: dict[str, Fragment] = {}
    for f in frags:
        if f.anchor in seen:
            raise InputError(f"two report sections use the anchor {f.anchor!r}: "
                             f"{seen[f.anchor].path or seen[f.anchor].title} and {f.path or f.title}")
        seen[f.anchor] = f
    ordered = [f for _, _, f in sorted((f.order, i, f) for i, f in enumerate(frags))]
    text = render_page(ordered, title=title, meta=meta)
    out_html = Path(out_html)
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return out_html
