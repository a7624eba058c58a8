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
import re
from pathlib import Path
from typing import Iterable

from .io import InputError, atomic_path

HEADER = "size\tmtime_ns\tpath"
#: what a listed path cannot hold: the manifest is one line per image (NUL: no file name has one)
LINE_BREAK = re.compile("[\n\r\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def path_error(path: str) -> str:
    """Why ``path`` cannot be an image path of a source ("" when it can): a line break or NUL, or
    another encoding than UTF-8."""
    if LINE_BREAK.search(path):
        return f"the image path {path!r} holds a line break or NUL; rename the file"
    return encoding_error(path)


def encoding_error(path: str) -> str:
    """Why the file name ``path`` cannot become an id or a line of text ("" when it can): a name in
    another encoding than UTF-8 (e.g. cp1252, from an archive made on Windows)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return f"the image path {path!r} is not valid UTF-8; rename the file"
    return ""


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
    paths = [str(p) for p in image_paths]
    for p in paths:
        if why := path_error(p):
            raise InputError(f"{path}: {why}")
    text = "\n".join([HEADER, *manifest_lines(paths)]) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def refresh_manifest(path: str | Path, write: bool = True) -> bool:
    """Re-stat the images a manifest lists; rewrite it if any changed.  True when it was rewritten
    (``write=False``: when it would be, leaving it as it is)."""
    path = Path(path)
    try:
        old = path.read_text().split("\n")[:-1]  # lines as written (a path may hold other separators)
    except FileNotFoundError:
        return False
    if not old or old[0] != HEADER:
        return False  # not ours (or an older layout): the source rule rewrites it
    if any(line.count("\t") < 2 for line in old[1:]):  # a path with a line break, listed by an older gzmorph
        if write:
            path.unlink()  # the source rule writes it again, and names the path that cannot be listed
        return True
    new = [HEADER, *manifest_lines(line.split("\t", 2)[2] for line in old[1:])]
    if new == old:
        return False
    if not write:
        return True
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(new) + "\n")
    return True


def manifest_in_use(path: str | Path, lock_dir: str | Path = ".snakemake/locks") -> bool:
    """Whether a running Snakemake process holds ``path`` (listed in one of its lock files, which
    name every input and output of the run's jobs, relative to the working folder).  Such a run
    records the manifest as its jobs' input when they finish: rewriting it under them would mark a
    store decoded from the old images as up to date."""
    target = os.path.abspath(path)
    for lock in Path(lock_dir).glob("*.lock"):
        try:
            keys = lock.read_text().splitlines()
        except OSError:
            continue
        if any(os.path.abspath(k) == target for k in keys):
            return True
    return False


def content_digest(paths: Iterable[str], cache: str | Path) -> str:
    """SHA-256 over the contents of ``paths`` (in order; "" for none), for a rule's params: a file
    replaced by one with an older modification time (``cp -p``, ``rsync -a``, an unpacked archive)
    then still reruns the rule, which Snakemake's time comparison alone does not.  A file is read
    again only when its size or modification time differs from what ``cache`` (a JSON file of
    ``path: [size, mtime_ns, sha256]``) saw last, so a DAG build of unchanged gigabyte encoders or
    catalogues costs one ``stat`` each."""
    import hashlib
    import json

    paths = [str(p) for p in paths]
    if not paths:
        return ""
    cache = Path(cache)
    try:
        seen = json.loads(cache.read_text())
        seen = seen if isinstance(seen, dict) else {}
    except (OSError, ValueError):
        seen = {}
    total, changed = hashlib.sha256(), False
    for p in paths:
        st = os.stat(p)
        key = os.path.abspath(p)
        entry = seen.get(key)
        if not (isinstance(entry, list) and len(entry) == 3 and entry[:2] == [st.st_size, st.st_mtime_ns]
                and isinstance(entry[2], str)):  # else (a new stat, or a damaged cache) read the file
            with open(p, "rb") as fh:
                entry = [st.st_size, st.st_mtime_ns, hashlib.file_digest(fh, "sha256").hexdigest()]
            seen[key], changed = entry, True
        total.update(str(entry[2]).encode())
    if changed:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            Path(tmp).write_text(json.dumps(seen, indent=0))
    return total.hexdigest()
