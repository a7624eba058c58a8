"""Fetch the Zoobot GZ2 release (catalogues + image archive) into a folder.

Kept apart from the reader (:mod:`gzmorph.sources.gz2_remote`) so that reading local
catalogues never imports the network code of :mod:`gzmorph.download`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..download import GZ2_FILES, RemoteFile, extract, fetch_remote
from .gz2_remote import CATALOGUES, IMAGES_ARCHIVE


def download_gz2(dest_dir: str | Path, *, include_images: bool = True, progress: bool = True,
                 files: Mapping[str, RemoteFile] | None = None, keep_archive: bool = True,
                 **fetch_kwargs) -> Path:
    """Fetch the Zoobot GZ2 catalogues (+ the image archive, unpacked) into ``dest_dir``.

    Every file is md5-checked, transfers resume, mirrors are tried in order (see
    :func:`gzmorph.download.fetch`; ``fetch_kwargs`` go there).  ``files``
    replaces registry entries by name (e.g. a local mirror).  With
    ``keep_archive=False`` the 3 GB tarball is deleted once unpacked; the
    extraction marker then stands for it.  Returns ``dest_dir``; read it with
    :func:`gzmorph.sources.gz2_remote.read_gz2_remote`.
    """
    dest_dir = Path(dest_dir)
    registry = {**GZ2_FILES, **(files or {})}
    for name in CATALOGUES.values():
        fetch_remote(registry[name], dest_dir, progress=progress, **fetch_kwargs)
    if include_images:
        remote = registry[IMAGES_ARCHIVE]
        archive = dest_dir / remote.name
        marker = dest_dir / f".{remote.name}.extracted"
        if archive.exists() or not marker.exists():
            fetch_remote(remote, dest_dir, progress=progress, **fetch_kwargs)
            extract(archive, dest_dir, progress=progress)
            if not keep_archive:
                archive.unlink()
    return dest_dir
