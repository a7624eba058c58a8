"""Every table and figure of a section as a file of its own, for Snakemake's ``--report``.

The HTML report embeds its figures and tables in the page; a rule that writes a section fragment
also writes them here, from the same blocks (:class:`~.blocks.Export`), so that the workflow can
declare them with ``report(directory(...), patterns=["{name}.png"], category=...)``:

* figures (matplotlib figures, as the page's PNG; image grids, drawn by :func:`.figures.grid_png`)
  go to ``<figures>/<name>.png``;
* tables (and the headline numbers of a ``metrics`` block) go to ``<tables>/<name>.tsv``, every
  row, values unformatted.

Names are unique within a section (a repeated name gets ``-2``, ``-3`` ...).  Each file is written
atomically (:func:`gzmorph.io.atomic_path`); files of an earlier run that this one does not write
are removed first.
"""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_path
from .blocks import Export

FIGURE_SUFFIX = ".png"
TABLE_SUFFIX = ".tsv"


def unique_exports(exports) -> list[Export]:
    """``exports`` with repeated names made unique (``name``, ``name-2``, ``name-3`` ...)."""
    exports = list(exports)
    taken = {(e.kind == "table", e.name) for e in exports}  # a name given as such ('x-2') is never reused
    used: set = set()
    out = []
    for e in exports:
        table, n, name = e.kind == "table", 1, e.name
        while (table, name) in used or (name != e.name and (table, name) in taken):
            n += 1
            name = f"{e.name}-{n}"
        used.add((table, name))
        out.append(e if name == e.name else Export(e.kind, name, e.data, e.caption, e.index))
    return out


def write_exports(exports, figures: str | Path | None, tables: str | Path | None) -> dict[str, list[Path]]:
    """Write the figures of ``exports`` (a section's :meth:`~.sections.Section.exports`) to PNG files
    in the folder ``figures`` and its tables to TSV files in ``tables`` (``None``: not written);
    return the paths written."""
    from .figures import grid_png

    written: dict[str, list[Path]] = {"figures": [], "tables": []}
    items = unique_exports(exports)
    for folder, key, suffix in ((figures, "figures", FIGURE_SUFFIX), (tables, "tables", TABLE_SUFFIX)):
        if folder is None:
            continue
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"*{suffix}"):  # an earlier run's files, which this one may not write
            old.unlink()
        for e in items:
            if (e.kind == "table") != (key == "tables"):
                continue
            path = folder / f"{e.name}{suffix}"
            with atomic_path(path) as tmp:
                if e.kind == "table":
                    e.data.to_csv(tmp, sep="\t", index=e.index)
                elif e.kind == "figure":
                    Path(tmp).write_bytes(e.data)
                else:
                    images, titles, ncols, *row_labels = e.data
                    Path(tmp).write_bytes(grid_png(images, titles, ncols=ncols, label=e.caption,
                                                   row_labels=row_labels[0] if row_labels else None))
            written[key].append(path)
    return written
