"""The report's text and table blocks: a :class:`Block` is trusted HTML; the helpers escape their text.

``paragraph``, ``heading``, ``note``, ``bullet_list``, ``definition_list``, ``metrics`` (headline
numbers), ``table`` (a DataFrame or rows), ``raw_html``, and the layout blocks ``columns`` and
``details``.  Figures and image grids are in :mod:`.figures`.

Every table, figure and image grid also carries an :class:`Export`: what it shows as data (a
DataFrame, a PNG, the grid's images), so that a rule can write each of them to a file of its own
beside the fragment (:func:`gzmorph.report.exports.write_exports`) for Snakemake's ``--report``.
"""

from __future__ import annotations

import html as _html
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

_NUM = ' class="num"'


@dataclass(frozen=True)
class Export:
    """A table or figure of a block as data, to be written to a file of its own.

    ``kind`` is ``"table"`` (``data``: a DataFrame, ``index``: whether its index is a column),
    ``"figure"`` (``data``: PNG bytes) or ``"grid"`` (``data``: ``(images, titles, ncols)``, drawn
    into one PNG when written); ``name`` is the file's stem (letters, digits and '-').
    """

    kind: str
    name: str
    data: Any = field(repr=False)
    caption: str | None = None
    index: bool = False


@dataclass(frozen=True)
class Block:
    """A rendered piece of a section: trusted HTML (helpers escape their text), and the tables
    and figures it shows as :class:`Export` data."""

    html: str
    kind: str = "raw"
    exports: tuple[Export, ...] = field(default=(), compare=False, repr=False)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.html


def esc(text: Any) -> str:
    """HTML-escape ``text`` (quotes included)."""
    return _html.escape(str(text), quote=True)


def export_name(*texts: Any, default: str = "item") -> str:
    """A file stem from the first non-empty of ``texts``: lower-case letters, digits and '-'."""
    for text in texts:
        stem = re.sub(r"[^a-z0-9]+", "-", str(text or "").lower()).strip("-")[:60].strip("-")
        if stem:
            return stem
    return default


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
            float_format: str | Callable[[float], str] | None = None, name: str | None = None) -> Block:
    """A row of headline numbers. Integers get thousands separators.

    Exported as a two-column table (``metric``, ``value``) named ``name`` (default: ``metrics``).
    """
    import pandas as pd

    cards = []
    for key, value in values.items():
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
            shown = f"{int(value):,}"
        else:
            shown = format_value(value, float_format)
        cards.append(f'<div class="gz-metric"><div class="gz-metric-value">{esc(shown)}</div>'
                     f'<div class="gz-metric-name">{esc(key)}</div></div>')
    cap = f'<div class="gz-caption">{_text_html(caption)}</div>' if caption else ""
    data = pd.DataFrame({"metric": [str(k) for k in values],
                         "value": pd.Series(list(values.values()), dtype=object)})
    return Block(f'<div class="gz-metrics">{"".join(cards)}</div>{cap}', "metrics",
                 (Export("table", export_name(name, default="metrics"), data, caption),))


def table(data, *, caption: str | None = None,
          float_format: str | Callable[[float], str] | None = None,
          index: bool | None = None, max_rows: int | None = 200,
          total_row: bool = False, name: str | None = None) -> Block:
    """A table from a pandas DataFrame, a list of dicts or a dict of columns.

    ``float_format`` is ``"{:.3f}"``, ``"%.3f"`` or a callable.  ``index``
    shows the DataFrame index (default: when it is not a plain RangeIndex).
    Rows beyond ``max_rows`` are left out with a note.  ``total_row`` marks the
    last row as a total (bold).  Exported whole (every row, unformatted values) as the table
    ``name`` (default: from the caption).
    """
    import pandas as pd

    if isinstance(data, pd.Series):
        data = data.to_frame()
    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(list(data) if not isinstance(data, Mapping) else data)
    df = data
    if index is None:
        index = not isinstance(df.index, pd.RangeIndex)
    export = Export("table", export_name(name, caption, default="table"), data, caption, bool(index))
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
                 f'</tr></thead><tbody>{"".join(rows)}</tbody></table>{more}</div>', "table", (export,))


def columns(*blocks: Block) -> Block:
    """Blocks side by side on a wide screen, stacked on a narrow one."""
    inner = "".join(f'<div class="gz-col">{b.html}</div>' for b in blocks)
    return Block(f'<div class="gz-columns">{inner}</div>', "columns", _exports_of(blocks))


def details(summary: str, *blocks: Block, open: bool = False) -> Block:
    """A collapsible group (``<details>``, works without JavaScript)."""
    inner = "".join(b.html for b in blocks)
    return Block(f'<details class="gz-details"{" open" if open else ""}><summary>{esc(summary)}</summary>'
                 f"{inner}</details>", "details", _exports_of(blocks))


def _exports_of(blocks: Iterable[Block]) -> tuple[Export, ...]:
    return tuple(e for b in blocks for e in b.exports)

