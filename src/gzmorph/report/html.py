"""A small builder for the self-contained HTML report: every helper in one namespace.

Every pipeline stage contributes one :class:`Section` made of *blocks*
(``paragraph``, ``metrics``, ``table``, ``figure``, ``image_grid`` ...).  A
Snakemake rule writes its section to one **fragment** file with
:func:`write_fragment`; the final rule calls :func:`assemble` on all fragment
paths and writes one ``report/index.html`` with a header, a table of contents
and the sections sorted by their ``order``.

The page needs nothing outside itself: images are base64 ``data:`` URIs, the CSS
is inline and there is no JavaScript.

The helpers live in :mod:`.blocks` (text, tables, layout), :mod:`.figures`
(matplotlib figures and image grids), :mod:`.sections` (sections and their
fragment files) and :mod:`.page` (assembly of the page); the section builders of
the stages import them from here.  :mod:`.exports` writes a section's tables and
figures as files of their own too (``write_fragment(..., figures=, tables=)``), for
Snakemake's ``--report``.
"""

from __future__ import annotations

from .blocks import (
    Block, Export, bullet_list, columns, definition_list, details, esc, export_name, format_value, heading, metrics,
    note, paragraph, raw_html, table,
)
from .figures import (
    class_colours, class_grid, close_figure, data_uri, encode_array, encode_figure, figure, grid_png, image_grid,
    new_figure, style_axes,
)
from .page import assemble, page_css, render_page
from .sections import FRAGMENT_FORMAT, ORDER, Fragment, Section, fragment_text, read_fragment, slugify, write_fragment

__all__ = [
    "Block", "Export", "bullet_list", "columns", "definition_list", "details", "esc", "export_name", "format_value",
    "heading", "metrics", "note", "paragraph", "raw_html", "table",
    "class_colours", "class_grid", "close_figure", "data_uri", "encode_array", "encode_figure", "figure", "grid_png",
    "image_grid", "new_figure", "style_axes",
    "assemble", "page_css", "render_page",
    "FRAGMENT_FORMAT", "ORDER", "Fragment", "Section", "fragment_text", "read_fragment", "slugify", "write_fragment",
]
