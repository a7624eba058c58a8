"""The image manifest: size and modification time of every source image, one line each.

The source rule writes it beside the source table; each time the workflow builds its DAG,
:func:`refresh_manifest` stats the listed files again and rewrites the manifest only when one
changed (replaced, restored, added or removed), so that the rules that decode images (they take
the manifest as an input) rerun exactly then.  This costs one ``stat`` per image and no reading,
which stays cheap at a million images, where a million declared inputs would not.

Standard library only: it runs when the DAG is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .io import atomic_path

HEADER = "size\tmtime_ns\tpath"


def manifest_lines(paths: Iterable[str]) -> list[str]:
    """``size<TAB>mtime_ns<TAB>path`` for each path; a missing file is ``-1<TAB>-1<TAB>path``."""
    lines = []
    for p in paths:
        try:
            st = os.stat(p)
            lines.append(f"{st.st_size}\t{st.st_mtime_ns}\t{p}")
        except OSError:
            lines.append(f"-1\t-1\t{p}")
    return lines


def write_manifest(path: str | Path, image_paths: Iterable[str]) -> None:
    """Write the manifest of ``image_paths`` (the source table's ``image_path`` column)."""
    text = "\n".join([HEADER, *manifest_lines(map(str, image_paths))]) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def refresh_manifest(path: str | Path) -> bool:
    """Re-stat the images a manifest lists; rewrite it if any changed.  True when it was rewritten."""
    path = Path(path)
    try:
        old = path.read_text().splitlines()
    except FileNotFoundError:
        return False
    if not old or old[0] != HEADER:
        return False  # not ours (or an older layout): the source rule rewrites it
    new = [HEADER, *manifest_lines(line.split("\t", 2)[2] for line in old[1:])]
    if new == old:
        return False
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(new) + "\n")
    return True
