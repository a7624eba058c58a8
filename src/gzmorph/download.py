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
    path-traversal protection (absolute names, ``..``, links leaving
    ``dest_dir`` and special files are refused before anything is written).

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
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from tqdm.auto import tqdm

from gzmorph import __version__
from gzmorph.io import InputError, atomic_path

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


# --------------------------------------------------------------------- errors
class DownloadError(InputError):
    """A file could not be obtained from any of its URLs (message lists each failure)."""


class ChecksumError(DownloadError):
    """Every URL served bytes whose md5 differs from the pinned one."""


class ArchiveError(InputError):
    """An archive is unreadable or contains a member that would escape ``dest_dir``."""


class UnverifiedDownloadWarning(UserWarning):
    """A file was downloaded without a pinned md5; its computed md5 was recorded."""


class _Retryable(Exception):
    """A transient failure: try the same URL again after a pause."""


class _GiveUpOnURL(Exception):
    """A permanent failure for this URL (404, 403, bad scheme...): go to the next mirror."""


# ------------------------------------------------------------------- registry
@dataclass(frozen=True)
class RemoteFile:
    """One remote file: where to get it and how to check it.

    ``urls`` are tried in order (primary first, then mirrors); every URL must
    serve the *same bytes* (the md5 decides).  ``md5`` is ``None`` where no
    checksum has been published; the download is then unverified (warning +
    ``<name>.md5`` sidecar).  ``size`` in bytes where known (progress bar and
    a cheap completeness check), else ``None``.
    """

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    size: int | None = None
    description: str = ""
    source: str = ""  # where the URL / md5 were found

    def __post_init__(self):
        if isinstance(self.urls, str):
            object.__setattr__(self, "urls", (self.urls,))
        else:
            object.__setattr__(self, "urls", tuple(self.urls))
        if not self.urls:
            raise ValueError(f"RemoteFile {self.name!r} has no URL")
        if self.md5 is not None and not re.fullmatch(r"[0-9a-f]{32}", self.md5):
            raise ValueError(f"RemoteFile {self.name!r}: {self.md5!r} is not an md5 hex digest")

    def with_urls(self, *urls: str) -> "RemoteFile":
        """Same file, other URLs (e.g. a local mirror)."""
        return RemoteFile(self.name, tuple(urls), self.md5, self.size, self.description, self.source)


_GD = "mwalmsley/galaxy-datasets galaxy_datasets/shared/gz2.py (commit 38f00ea)"
_ZENODO = "Zenodo record 3565489 (Willett et al., 'Galaxy Zoo 2: Images from Original Sample')"

#: The Galaxy Zoo 2 files.  The first three are what Zoobot's ``galaxy-datasets``
#: package downloads (its ``gz2()`` loader); md5s are the ones it pins.
GZ2_FILES: dict[str, RemoteFile] = {f.name: f for f in (
    RemoteFile(
        "gz2_train_catalog.parquet",
        ("https://dl.dropboxusercontent.com/s/vu77e3sh2s5c250/gz2_train_catalog.parquet",),
        md5="d5507a9332c75fd84a7f2562567da36b",
        description="Zoobot GZ2 train catalogue (80% of 209,293 'original' GZ2 galaxies, vote counts)",
        source=_GD,
    ),
    RemoteFile(
        "gz2_test_catalog.parquet",
        ("https://dl.dropboxusercontent.com/s/t8eh6f3oupndpl3/gz2_test_catalog.parquet",),
        md5="ac1fba88d0e8a95ee4f4eef79ea03063",
        description="Zoobot GZ2 test catalogue (the other 20%, train_test_split random_state=42)",
        source=_GD,
    ),
    RemoteFile(
        "images_gz2.tar.gz",
        ("https://dl.dropboxusercontent.com/s/5so7yof2afe761p/images_gz2.tar.gz",),
        md5="e3eab2fec57a6a60577236b9e0a6913d",
        description="Zoobot GZ2 JPEGs, 424x424, unpacks to images/<first 6 digits of dr7objid>/<dr7objid>.jpg",
        source=_GD,
    ),
    RemoteFile(
        "gz2_hart16.csv.gz",
        ("https://gz2hart.s3.amazonaws.com/gz2_hart16.csv.gz",
         "https://s3.amazonaws.com/gz2hart/gz2_hart16.csv.gz"),  # same bucket, path-style address
        md5=None,
        description="Hart et al. 2016 GZ2 Table 1 (normal-depth sample, new debiasing), CSV",
        source="data.galaxyzoo.org",
    ),
    RemoteFile(
        "images_gz2.zip",
        ("https://zenodo.org/records/3565489/files/images_gz2.zip?download=1",
         "https://zenodo.org/record/3565489/files/images_gz2.zip"),
        # md5 printed for the zip 'directly from Zenodo' in galaxy-datasets
        # notebooks/gz2_split.ipynb (commit 5f1e8eb); also pinned by its older gz2.py.
        md5="bc647032d31e50c798770cf4430525c7",
        description="GZ2 original-sample JPEGs named <asset_id>.jpg (243,434 images)",
        source=_ZENODO,
    ),
    RemoteFile(
        "gz2_filename_mapping.csv",
        ("https://zenodo.org/records/3565489/files/gz2_filename_mapping.csv?download=1",
         "https://zenodo.org/record/3565489/files/gz2_filename_mapping.csv"),
        md5=None,
        description="objid, sample, asset_id: maps Hart16 rows to images_gz2.zip file names",
        source=_ZENODO,
    ),
    RemoteFile(
        "zoo2MainSpecz.csv.gz",
        ("https://zooniverse-data.s3.amazonaws.com/galaxy-zoo-2/zoo2MainSpecz.csv.gz",
         "https://s3.amazonaws.com/zooniverse-data/galaxy-zoo-2/zoo2MainSpecz.csv.gz"),
        md5=None,
        description="Willett et al. 2013 GZ2 Table 5 (main sample with spectroscopic redshifts)",
        source="data.galaxyzoo.org",
    ),
)}

#: md5s of earlier versions of the Zoobot catalogues (same URLs, regenerated files);
#: a local file matching one of these is an *old* catalogue, not a corrupt one.
GZ2_SUPERSEDED_MD5 = {
    "gz2_train_catalog.parquet": ("4601cf8f7bea8ab0d79b2aada1a4663d", "f489c9ec7dcf8d99f728bd00ee00b1d0"),
    "gz2_test_catalog.parquet": ("65bc4d26cb1dd1426fed4f3c357cb42c", "8b2d74c93d35f86cc34f1d058b3b220b"),
}


# -------------------------------------------------------------------- helpers
def md5sum(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _sidecar_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".md5")


def _write_sidecar(dest: Path, digest: str) -> None:
    with atomic_path(_sidecar_path(dest)) as tmp:
        Path(tmp).write_text(f"{digest}  {dest.name}\n")


def _read_sidecar(dest: Path) -> str | None:
    p = _sidecar_path(dest)
    try:
        text = p.read_text().split()
    except OSError:
        return None
    return text[0] if text and re.fullmatch(r"[0-9a-f]{32}", text[0]) else None


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.I)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``'bytes 10-99/100'`` -> (10, 99, 100); ``'bytes */100'`` -> (None, None, 100)."""
    if not value:
        return None, None, None
    m = _CONTENT_RANGE.match(value.strip())
    if not m:
        return None, None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    end = int(m.group(2)) if m.group(2) is not None else None
    total = int(m.group(3)) if m.group(3) not in (None, "*") else None
    return start, end, total


def _int_header(headers, name: str) -> int | None:
    value = headers.get(name) if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _truncate(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ---------------------------------------------------------------------- fetch
@dataclass
class _Transfer:
    """State of one file's download across attempts and mirrors."""

    dest: Path
    part: Path
    size: int | None
    timeout: float
    chunk_size: int
    progress: bool
    resumed: bool = False  # some bytes of the current .part came from an earlier request
    failures: list[tuple[str, str]] = field(default_factory=list)

    def attempt(self, url: str) -> None:
        """One HTTP request; on return ``part`` holds the complete body (as far as we can tell)."""
        offset = self.part.stat().st_size if self.part.exists() else 0
        if self.size is not None and offset > self.size:
            _truncate(self.part)
            offset = 0
        if self.size is not None and offset == self.size and offset > 0:
            self.resumed = True
            return  # already complete: the checksum decides
        if offset == 0:
            self.resumed = False
        headers = {"User-Agent": f"gzmorph/{__version__} (+python-urllib)", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            with contextlib.closing(e):
                if e.code == 416 and offset > 0:
                    _, _, total = _parse_content_range(e.headers.get("Content-Range"))
                    if total is not None and total == offset:
                        self.resumed = True
                        return  # the partial file already holds every byte
                    _truncate(self.part)
                    raise _Retryable(f"HTTP 416 for a resume at byte {offset}; restarting from zero") from e
                if e.code in _RETRYABLE_HTTP:
                    raise _Retryable(_describe(e)) from e
                raise _GiveUpOnURL(_describe(e)) from e
        except ValueError as e:  # malformed URL
            raise _GiveUpOnURL(str(e)) from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, str):  # 'unknown url type', not a network failure
                raise _GiveUpOnURL(_describe(e)) from e
            raise _Retryable(_describe(e)) from e
        except (OSError, http.client.HTTPException) as e:
            raise _Retryable(_describe(e)) from e

        with contextlib.closing(response):
            status = getattr(response, "status", None) or response.getcode()
            length = _int_header(response.headers, "Content-Length")
            if status == 206 and offset > 0:
                start, _, total = _parse_content_range(response.headers.get("Content-Range"))
                if start != offset:
                    _truncate(self.part)
                    raise _Retryable(f"server resumed at byte {start}, not {offset}; restarting from zero")
                mode = "ab"
                self.resumed = True
            elif status in (200, 206):  # 200: full body (a server that ignores Range lands here too)
                if offset:
                    _truncate(self.part)
                offset, mode, total = 0, "wb", length
                self.resumed = False
            else:
                raise _GiveUpOnURL(f"unexpected HTTP status {status}")
            if total is None:
                total = self.size
            received = 0
            bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=self.dest.name, file=sys.stderr, disable=not self.progress,
                       leave=False, mininterval=0.5, dynamic_ncols=True)
            try:
                with open(self.part, mode) as f:
                    while True:
                        try:
                            chunk = response.read(self.chunk_size)
                        except (OSError, http.client.HTTPException) as e:
                            raise _Retryable(
                                f"transfer interrupted after {offset + received} bytes ({_describe(e)})") from e
                        if not chunk:
                            break
                        f.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            finally:
                bar.close()
            if length is not None and received < length:
                raise _Retryable(f"connection closed after {offset + received} of {offset + length} bytes")


def fetch(urls: str | Sequence[str], dest: str | Path, md5: str | None = None, *,
          retries: int = 4, timeout: float = 30, backoff: float = 2.0, max_backoff: float = 60.0,
          progress: bool = True, chunk_size: int = 1 << 20, size: int | None = None) -> Path:
    """Download ``urls`` (one URL or mirrors tried in order) to ``dest``; return ``dest``.

    * ``dest`` present and its md5 equals ``md5`` -> returned at once, no network.
      Present without a pinned ``md5`` -> trusted if it matches the ``<dest>.md5`` sidecar
      recorded when it was downloaded (or if there is no sidecar).  Present with a *different* md5 -> moved to ``<dest>.corrupt``
      (with a warning) and downloaded again.
    * Bytes are written to ``<dest>.part``; an existing ``.part`` is resumed.
    * ``retries``: extra attempts per URL for transient failures; the pause before
      retry *n* is ``min(backoff * 2**(n-1), max_backoff)`` seconds.
    * ``timeout``: seconds for connecting and for each socket read.
    * ``size``: expected size in bytes, if known (progress total, completeness shortcut).

    Raises :class:`ChecksumError` when every URL served bytes with the wrong md5,
    :class:`DownloadError` when no URL produced the file.
    """
    dest = Path(dest)
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("fetch() needs at least one URL")
    md5 = md5.lower() if md5 else None
    dest.parent.mkdir(parents=True, exist_ok=True)

    if dest.exists():
        if md5 is None:
            recorded = _read_sidecar(dest)
            if recorded is None or md5sum(dest) == recorded:
                return dest
            corrupt = dest.with_name(dest.name + ".corrupt")
            os.replace(dest, corrupt)
            warnings.warn(f"{dest} no longer matches the md5 recorded in {_sidecar_path(dest).name}; "
                          f"moved it to {corrupt.name} and downloading it again",
                          UnverifiedDownloadWarning, stacklevel=2)
        else:
            actual = md5sum(dest)
            if actual == md5:
                return dest
            corrupt = dest.with_name(dest.name + ".corrupt")
            os.replace(dest, corrupt)
            warnings.warn(f"{dest} has md5 {actual}, expected {md5}; moved it to {corrupt.name} "
                          f"and downloading it again", RuntimeWarning, stacklevel=2)

    part = _part_path(dest)
    transfer = _Transfer(dest, part, size, timeout, chunk_size, progress,
                         resumed=part.exists() and part.stat().st_size > 0)
    checksum_failures = 0
    for url in url_list:
        attempts = 0
        restarted_after_bad_resume = False
        while True:
            attempts += 1
            try:
                transfer.attempt(url)
            except _GiveUpOnURL as e:
                transfer.failures.append((url, str(e)))
                break
            except _Retryable as e:
                if attempts > retries:
                    transfer.failures.append((url, f"{e} (gave up after {attempts} attempts)"))
                    break
                time.sleep(min(backoff * 2 ** (attempts - 1), max_backoff))
                continue
            # a complete body is in .part: verify it
            actual = md5sum(part)
            if md5 is not None and actual != md5:
                was_resumed = transfer.resumed
                _truncate(part)
                transfer.resumed = False
                if was_resumed and not restarted_after_bad_resume:
                    # the bytes kept from an earlier request may be stale: one fresh try
                    restarted_after_bad_resume = True
                    continue
                checksum_failures += 1
                transfer.failures.append(
                    (url, f"checksum mismatch: expected md5 {md5}, got {actual} (bad bytes deleted)"))
                break
            os.replace(part, dest)
            if md5 is None:
                _write_sidecar(dest, actual)
                warnings.warn(
                    f"{dest.name} has no pinned md5, so it cannot be verified; downloaded from {url}, "
                    f"md5 {actual} recorded in {_sidecar_path(dest).name}",
                    UnverifiedDownloadWarning, stacklevel=2)
            return dest

    lines = "\n".join(f"  - {u}: {why}" for u, why in transfer.failures)
    expect = f" (expected md5 {md5})" if md5 else ""
    hint = (f"If you are offline or these links have died, obtain {dest.name}{expect} elsewhere, "
            f"put it in a directory and point `data_dir` at that directory (or at the unpacked "
            f"files) instead of downloading.")
    if part.exists():
        hint += f" The partial download {part} is kept and will be resumed on the next attempt."
    cls = ChecksumError if checksum_failures == len(transfer.failures) else DownloadError
    raise cls(f"could not download {dest.name} from any of {len(url_list)} URL(s):\n{lines}\n{hint}")


def fetch_remote(remote: RemoteFile, dest_dir: str | Path, **kwargs) -> Path:
    """:func:`fetch` a registry entry into ``dest_dir / remote.name``."""
    kwargs.setdefault("size", remote.size)
    return fetch(remote.urls, Path(dest_dir) / remote.name, remote.md5, **kwargs)


# -------------------------------------------------------------------- extract
def _marker_path(archive: Path, dest_dir: Path) -> Path:
    return dest_dir / f".{archive.name}.extracted"


def _archive_stamp(archive: Path) -> str:
    st = archive.stat()
    return f"{archive.name} size={st.st_size} mtime_ns={st.st_mtime_ns}\n"


def _check_member_name(name: str, archive: Path) -> PurePosixPath:
    """Refuse names that would land outside the destination; return the normalised relative path."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if not norm or p.is_absolute() or re.match(r"^[A-Za-z]:", norm) or ".." in p.parts:
        raise ArchiveError(f"{archive}: member {name!r} would be written outside the destination "
                           f"directory; refusing to extract this archive")
    return p


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise ArchiveError(f"{archive}: not a .tar.gz/.tgz/.tar/.zip archive")


def extract(archive: str | Path, dest_dir: str | Path, *, progress: bool = True, force: bool = False) -> Path:
    """Unpack ``archive`` into ``dest_dir``; return ``dest_dir``.

    A marker ``dest_dir/.<archive name>.extracted`` (holding the archive's size and
    mtime) is written only after the last member; while it is present and matches,
    later calls return at once.  An interrupted extraction leaves no marker and is
    redone in full.  Every member is checked *before* anything is written: absolute
    paths, ``..`` components, symlinks/hardlinks pointing outside ``dest_dir`` and
    device/FIFO members raise :class:`ArchiveError`.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: archive not found")
    dest_dir.mkdir(parents=True, exist_ok=True)
    marker = _marker_path(archive, dest_dir)
    stamp = _archive_stamp(archive)
    if not force and marker.exists() and marker.read_text() == stamp:
        return dest_dir
    _truncate(marker)
    kind = _archive_kind(archive)
    try:
        if kind == "zip":
            _extract_zip(archive, dest_dir, progress)
        else:
            _extract_tar(archive, dest_dir, progress)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise ArchiveError(f"{archive}: cannot read archive ({e}); delete it to download it again") from e
    with atomic_path(marker) as tmp:
        Path(tmp).write_text(stamp)
    return dest_dir


def _extract_zip(archive: Path, dest_dir: Path, progress: bool) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_member_name(info.filename, archive)
        root = dest_dir.resolve()
        for info in tqdm(infos, desc=f"extract {archive.name}", unit="file", file=sys.stderr,
                         disable=not progress, leave=False, mininterval=0.5):
            rel = _check_member_name(info.filename, archive)
            target = dest_dir.joinpath(*rel.parts)
            if not target.resolve().is_relative_to(root):  # e.g. through a pre-existing symlink
                raise ArchiveError(f"{archive}: member {info.filename!r} resolves outside {dest_dir}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


_TAR_FILTER_ERRORS = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


def _extract_tar(archive: Path, dest_dir: Path, progress: bool) -> None:
    root = dest_dir.resolve()
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for m in members:
            rel = _check_member_name(m.name, archive)
            if m.isdev() or m.isfifo():
                raise ArchiveError(f"{archive}: member {m.name!r} is a device or FIFO; refusing to extract")
            if m.issym() or m.islnk():
                link = m.linkname.replace("\\", "/")
                base = PurePosixPath(*rel.parts[:-1]) if m.issym() else PurePosixPath()
                if PurePosixPath(link).is_absolute():
                    raise ArchiveError(f"{archive}: link {m.name!r} -> {m.linkname!r} is absolute")
                target = os.path.normpath(os.path.join(str(root), str(base), link))
                if not Path(target).is_relative_to(root):
                    raise ArchiveError(f"{archive}: link {m.name!r} -> {m.linkname!r} points outside "
                                       f"the destination directory")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        for m in tqdm(members, desc=f"extract {archive.name}", unit="file", file=sys.stderr,
                      disable=not progress, leave=False, mininterval=0.5):
            try:
                tf.extract(m, dest_dir, **kwargs)
            except _TAR_FILTER_ERRORS as e:  # pragma: no cover - pre-checks catch these first
                raise ArchiveError(f"{archive}: member {m.name!r} refused ({e})") from e


def fetch_all(files: Iterable[RemoteFile], dest_dir: str | Path, **kwargs) -> list[Path]:
    """Fetch several registry entries into ``dest_dir``; return their paths."""
    return [fetch_remote(f, dest_dir, **kwargs) for f in files]
