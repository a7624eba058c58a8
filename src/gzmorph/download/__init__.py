"""Robust downloads of the public Galaxy Zoo files: mirrors, resume, retries, checksums.

Public API
----------
``fetch(urls, dest, md5=None, ...) -> Path``
    Download one file.  ``urls`` is one URL or a list of mirrors tried in
    order.  Bytes go to ``<dest>.part``; an interrupted transfer is resumed
    with an HTTP ``Range`` request (``206``); a server that ignores ``Range``
    (answers ``200``) is restarted from byte 0; ``416`` is understood as "the
    partial file is already complete" when the sizes agree and as "start again"
    otherwise.  Connection errors, timeouts, truncated bodies and HTTP
    5xx/408/429 are retried ``retries`` times with exponential ``backoff``;
    other HTTP errors (404, 403, ...) move straight on to the next mirror.  The
    complete file is checked against ``md5`` and only then renamed atomically
    to ``dest``; so ``dest`` exists only when it is complete (and verified,
    when an md5 is known).  A ``dest`` already present with the right md5 is
    returned without any network access.

``extract(archive, dest_dir) -> Path``
    Unpack a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive with a completion
    marker (an interrupted extraction is redone on the next call) and
    path-traversal protection: every member's final path is resolved, links
    included, before anything is written, and an archive with any member
    landing outside ``dest_dir`` (absolute names, ``..``, links leaving it,
    chains of links) or with special files is refused whole, naming the member.

``GZ2_FILES`` / ``RemoteFile``
    Registry of the Galaxy Zoo 2 remote files (URLs + mirrors, pinned md5).

Errors
------
``DownloadError`` subclasses :class:`gzmorph.io.InputError` (itself a
``ValueError``), so the workflow reports it like any other bad-input error:
a one-paragraph message naming the file, every URL tried and why it failed,
and telling the user to point ``data_dir`` at local copies instead.
``ChecksumError`` (a ``DownloadError``) is raised when every mirror served
bytes whose md5 differs from the pinned one; its message names URL, expected
and actual md5.  Bad bytes are deleted: no ``dest`` and no ``.part`` survive.
``ArchiveError`` (an ``InputError``) is raised for unsafe or unreadable archives.

A file without a pinned md5 is downloaded, an ``UnverifiedDownloadWarning``
is issued, and the md5 that was computed is recorded next to it in
``<dest>.md5`` (``md5sum`` format) so later runs and the user can compare.

Modules: :mod:`.mirrors` (:func:`fetch`: local copy, mirrors, retries, md5),
:mod:`.transfer` (one HTTP request with resume), :mod:`.archive` (:func:`extract`),
:mod:`.registry` (:data:`GZ2_FILES`) and :mod:`.errors`.
"""

from __future__ import annotations

from .archive import extract
from .errors import ArchiveError, ChecksumError, DownloadError, UnverifiedDownloadWarning
from .mirrors import fetch, fetch_all, fetch_remote, md5sum
from .registry import GZ2_FILES, RemoteFile

__all__ = [
    "ArchiveError",
    "ChecksumError",
    "DownloadError",
    "GZ2_FILES",
    "RemoteFile",
    "UnverifiedDownloadWarning",
    "extract",
    "fetch",
    "fetch_all",
    "fetch_remote",
    "md5sum",
]
