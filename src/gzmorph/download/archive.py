"""Safe, resumable archive extraction (``.tar.gz``/``.tgz``/``.tar``/``.zip``).

A completion marker makes an interrupted extraction be redone on the next call, and
path-traversal protection refuses absolute names, ``..``, links leaving ``dest_dir`` and
special files before anything is written.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from gzmorph.io import atomic_path

from .errors import ArchiveError


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
    marker.unlink(missing_ok=True)
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
            _check_tar_member(m, archive, root)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        for m in tqdm(members, desc=f"extract {archive.name}", unit="file", file=sys.stderr,
                      disable=not progress, leave=False, mininterval=0.5):
            try:
                tf.extract(m, dest_dir, **kwargs)
            except _TAR_FILTER_ERRORS as e:  # pragma: no cover - pre-checks catch these first
                raise ArchiveError(f"{archive}: member {m.name!r} refused ({e})") from e


def _check_tar_member(m: tarfile.TarInfo, archive: Path, root: Path) -> None:
    """Refuse a member named outside ``root``, a device or FIFO, or a link pointing outside ``root``."""
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
