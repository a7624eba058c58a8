"""Safe, resumable archive extraction (``.tar.gz``/``.tgz``/``.tar``/``.zip``).

A completion marker makes an interrupted extraction be redone on the next call.  Before the
first byte is written, every member's final path is resolved the way the file system will
resolve it, following the links the archive itself creates (tar symlinks and hard links) and
those already in the destination; an archive with any member that would land outside
``dest_dir`` (absolute names, ``..``, links leaving it, members written through such links,
chains of links), with device files or FIFOs, or with members that clash (a file where a
directory goes) is refused whole, with one error naming the member.  Tar members are then
extracted with the standard library's ``data`` filter as well.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import NoReturn

from tqdm.auto import tqdm

from gzmorph.io import atomic_path

from .errors import ArchiveError

#: links followed while resolving one path before it counts as a loop (Linux allows 40)
MAX_LINK_HOPS = 40


def _marker_path(archive: Path, dest_dir: Path) -> Path:
    return dest_dir / f".{archive.name}.extracted"


def _archive_stamp(archive: Path) -> str:
    st = archive.stat()
    return f"{archive.name} size={st.st_size} mtime_ns={st.st_mtime_ns}\n"


def _refuse(archive: Path, name: str, why: str) -> NoReturn:
    raise ArchiveError(f"{archive}: member {name!r} {why}; refusing to extract this archive "
                       f"(nothing was written)")


def _check_member_name(name: str, archive: Path) -> tuple[str, ...]:
    """Refuse names that would land outside the destination; return the path's components."""
    norm = name.replace("\\", "/")
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if not norm or norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in parts:
        _refuse(archive, name, "would be written outside the destination directory")
    return parts


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


class _Layout:
    """What the destination will hold, member by member: the entries planned so far over what
    is on disk, so that each member's final path is resolved, links included, before any write.

    Paths are tuples of components under ``root`` (the real path of the destination).
    """

    def __init__(self, archive: Path, root: Path):
        self.archive = archive
        self.root = root
        self._root = str(root)
        self.planned: dict[tuple[str, ...], tuple[str, str | None]] = {}  # -> (kind, link target)
        self.links: dict[tuple[str, ...], str] = {}  # planned symlink -> member name
        self._disk: dict[tuple[str, ...], tuple[str, str | None] | None] = {}

    def entry(self, parts: tuple[str, ...]) -> tuple[str, str | None] | None:
        """``("file"|"dir"|"link", link target)`` at ``parts``, or None where nothing is."""
        if parts in self.planned:
            return self.planned[parts]
        if parts not in self._disk:
            if len(parts) > 1 and self._disk.get(parts[:-1], ()) is None:
                self._disk[parts] = None  # nothing on disk under a missing folder: no lstat
                return None
            path = os.path.join(self._root, *parts)
            try:
                st = os.lstat(path)
            except OSError:
                found = None
            else:
                if stat.S_ISLNK(st.st_mode):
                    found = ("link", os.readlink(path))
                else:
                    found = ("dir" if stat.S_ISDIR(st.st_mode) else "file", None)
            self._disk[parts] = found
        return self._disk[parts]

    def resolve(self, name: str, path: str | tuple[str, ...], start: tuple[str, ...] = (),
                follow_last: bool = True) -> tuple[str, ...] | None:
        """The physical location of ``path`` (relative to ``start``), or None outside ``root``."""
        pending = list(reversed(path.split("/") if isinstance(path, str) else path))
        out = list(start)
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not out:
                    return None
                out.pop()
                continue
            here = (*out, part)
            found = self.entry(here)
            if found is not None and found[0] == "link" and (pending or follow_last):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    _refuse(self.archive, name, f"goes through a loop of links at {'/'.join(here)!r}")
                target = found[1]
                if target.startswith("/"):  # an absolute link already on disk
                    inside = _relative_to(target, self.root)
                    if inside is None:
                        return None
                    out = []
                    target = inside
                pending.extend(reversed(target.split("/")))
                continue
            if found is not None and found[0] == "file" and pending:
                _refuse(self.archive, name, f"goes through {'/'.join(here)!r}, which is a file")
            out.append(part)
        return tuple(out)

    def place(self, name: str, rel: tuple[str, ...], kind: str) -> tuple[str, ...]:
        """Plan a ``file`` or ``dir`` member at ``rel``; return its physical location."""
        final = self.resolve(name, rel)
        if final is None:
            _refuse(self.archive, name, "would be written outside the destination directory")
        found = self.entry(final)
        if found is not None and found[0] != kind:
            _refuse(self.archive, name, f"is a {kind} where {'/'.join(final) or '.'!r} is a {found[0]}")
        self.planned[final] = (kind, None)
        return final

    def place_symlink(self, name: str, rel: tuple[str, ...], linkname: str) -> None:
        parent = self.resolve(name, rel[:-1])
        followed = self.resolve(name, rel)  # the data filter resolves an existing entry there
        if parent is None or followed is None:
            _refuse(self.archive, name, "would be written outside the destination directory")
        here = (*parent, rel[-1])
        found = self.entry(here)
        if found is not None and found[0] == "dir":
            _refuse(self.archive, name, f"is a link where {'/'.join(here)!r} is a directory")
        if self.resolve(name, linkname, start=parent) is None:
            _refuse(self.archive, name, f"is a link to {linkname!r}, which points outside the "
                                        f"destination directory")
        self.planned[here] = ("link", linkname)
        self.links[here] = name

    def check_links(self) -> None:
        """Every link the archive leaves must still end inside (later members may have moved it)."""
        for here, name in self.links.items():
            if self.planned.get(here, ("",))[0] != "link":
                continue  # replaced by a later member
            if self.resolve(name, here) is None:
                _refuse(self.archive, name, f"is a link to {self.planned[here][1]!r}, which points "
                                            f"outside the destination directory through later members")


def _relative_to(target: str, root: Path) -> str | None:
    """``target`` (absolute) relative to ``root`` as a POSIX path, or None when outside."""
    norm = Path(os.path.normpath(target))
    for candidate in (norm, Path(os.path.realpath(norm))):
        if candidate.is_relative_to(root):
            return candidate.relative_to(root).as_posix()
    return None


def extract(archive: str | Path, dest_dir: str | Path, *, progress: bool = True, force: bool = False) -> Path:
    """Unpack ``archive`` into ``dest_dir``; return ``dest_dir``.

    A marker ``dest_dir/.<archive name>.extracted`` (holding the archive's size and
    mtime) is written only after the last member; while it is present and matches,
    later calls return at once.  An interrupted extraction leaves no marker and is
    redone in full.  Every member's final path is resolved *before* anything is
    written (links the archive creates and links already in ``dest_dir`` followed):
    a member landing outside ``dest_dir`` however it gets there (absolute path, ``..``,
    a link leaving it, a member written through links), a device or FIFO member, or a
    member clashing with another raises :class:`ArchiveError` naming it, and nothing
    is written, not even ``dest_dir``.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: archive not found")
    marker = _marker_path(archive, dest_dir)
    stamp = _archive_stamp(archive)
    if not force and marker.exists() and marker.read_text() == stamp:
        return dest_dir
    kind = _archive_kind(archive)
    try:
        if kind == "zip":
            _extract_zip(archive, dest_dir, marker, progress)
        else:
            _extract_tar(archive, dest_dir, marker, progress)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise ArchiveError(f"{archive}: cannot read archive ({e}); delete it to download it again") from e
    with atomic_path(marker) as tmp:
        Path(tmp).write_text(stamp)
    return dest_dir


def _start_writing(dest_dir: Path, marker: Path) -> None:
    """Called once the whole archive is checked: the first write."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)


def _extract_zip(archive: Path, dest_dir: Path, marker: Path, progress: bool) -> None:
    root = dest_dir.resolve()
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        layout = _Layout(archive, root)
        plan = []
        for info in infos:
            rel = _check_member_name(info.filename, archive)
            if not rel:
                continue  # "./"
            kind = "dir" if info.is_dir() else "file"
            plan.append((info, kind, layout.place(info.filename, rel, kind)))
        _start_writing(dest_dir, marker)
        for info, kind, final in tqdm(plan, desc=f"extract {archive.name}", unit="file", file=sys.stderr,
                                      disable=not progress, leave=False, mininterval=0.5):
            target = root.joinpath(*final)
            if kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def _extract_tar(archive: Path, dest_dir: Path, marker: Path, progress: bool) -> None:
    root = dest_dir.resolve()
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        layout = _Layout(archive, root)
        for m in members:
            _plan_tar_member(m, archive, layout)
        layout.check_links()
        _start_writing(dest_dir, marker)
        for m in tqdm(members, desc=f"extract {archive.name}", unit="file", file=sys.stderr,
                      disable=not progress, leave=False, mininterval=0.5):
            try:
                tf.extract(m, dest_dir, filter=_data_without_modes)
            except tarfile.FilterError as e:  # pragma: no cover - the plan refuses these first
                raise ArchiveError(f"{archive}: member {m.name!r} refused ({e})") from e


def _data_without_modes(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    """tarfile's "data" filter, and no chmod: the files get the user's umask, never an exec bit."""
    return tarfile.data_filter(member, dest_path).replace(mode=None, deep=False)


def _plan_tar_member(m: tarfile.TarInfo, archive: Path, layout: _Layout) -> None:
    """Refuse a special file, a name or link that is not plain, or a member whose final path
    (links followed) is outside the destination; else add it to ``layout``."""
    if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
        what = "device file" if m.ischr() or m.isblk() else "FIFO" if m.isfifo() else "special file"
        _refuse(archive, m.name, f"is a {what}")
    if "\\" in m.name or ((m.issym() or m.islnk()) and "\\" in m.linkname):
        _refuse(archive, m.name, "has a backslash in its name or link")  # a separator on Windows only
    rel = _check_member_name(m.name, archive)
    if not rel:  # "./"
        if not m.isdir():
            _refuse(archive, m.name, "is not a directory but names the destination itself")
        return
    if (m.issym() or m.islnk()) and (not m.linkname or m.linkname.startswith("/")):
        _refuse(archive, m.name, f"is a link to {m.linkname!r}, an absolute path or nothing")
    if m.issym():
        layout.place_symlink(m.name, rel, m.linkname)
        return
    if m.islnk():  # its target is named from the archive's root; os.link follows links
        source = layout.resolve(m.name, m.linkname)
        if source is None:
            _refuse(archive, m.name, f"is a hard link to {m.linkname!r}, which is outside the "
                                     f"destination directory")
        found = layout.entry(source)
        if found is not None and found[0] == "dir":
            _refuse(archive, m.name, f"is a hard link to {m.linkname!r}, a directory")
    layout.place(m.name, rel, "dir" if m.isdir() else "file")
