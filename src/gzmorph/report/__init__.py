"""The self-contained HTML report: sections per stage, assembled into one page.

A stage builds a :class:`Section` from blocks and writes it as a fragment::

    from gzmorph.report import ORDER, Section, figure, metrics, table, write_fragment
    sec = Section("Classification", anchor="classification", order=ORDER["classification"])
    sec.add(metrics({"accuracy": acc}), table(per_class_df), figure(fig, "Confusion matrix"))
    write_fragment(sec, snakemake.output.fragment)

and the report rule calls :func:`assemble` on all fragments.
"""

from .html import (
    ORDER, Block, Fragment, Section, assemble, bullet_list, class_grid, columns, data_uri, definition_list, details,
    encode_array, encode_figure, figure, format_value, heading, image_grid, metrics, new_figure, note,
    paragraph, raw_html, read_fragment, render_page, style_axes, table, write_fragment,
)

__all__ = [
    "ORDER", "Block", "Fragment", "Section", "assemble", "bullet_list", "class_grid", "columns", "data_uri",
    "definition_list", "details", "encode_array", "encode_figure", "figure", "format_value", "heading",
    "image_grid", "metrics", "new_figure", "note", "paragraph", "raw_html", "read_fragment", "render_page",
    "style_axes", "table", "write_fragment", "curation_section",
]


def __getattr__(name):  # keep pandas/matplotlib-heavy curation code out of plain imports
    if name == "curation_section":
        from .curation import curation_section

        return curation_section
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
