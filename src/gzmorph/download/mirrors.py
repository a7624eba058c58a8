"""Getting one verified file: reuse a good local copy, try each mirror with retries, check the md5.

Bytes go to ``<dest>.part`` (:mod:`.transfer`); the complete file is checked against the
pinned md5 and only then renamed atomically to ``dest``, so ``dest`` exists only when it is
complete (and verified, when an md5 is known).  A file without a pinned md5 gets its
computed md5 recorded in the ``<dest>.md5`` sidecar (``md5sum`` format).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from gzmorph.io import atomic_path

from .errors import ChecksumError, DownloadError, UnverifiedDownloadWarning
from .registry import RemoteFile
from .transfer import _GiveUpOnURL, _Retryable, _Transfer, _truncate


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
    if dest.exists() and _keep_existing(dest, md5):
        return dest

    part = _part_path(dest)
    transfer = _Transfer(dest, part, size, timeout, chunk_size, progress,
                         resumed=part.exists() and part.stat().st_size > 0)
    checksum_failures = 0
    for url in url_list:
        actual, bad_checksum = _fetch_from(url, transfer, md5, retries, backoff, max_backoff)
        if actual is not None:
            _install(transfer, md5, actual, url)
            return dest
        if bad_checksum:
            checksum_failures += 1
    raise _failure(transfer, md5, url_list, checksum_failures)


def _keep_existing(dest: Path, md5: str | None) -> bool:
    """Whether ``dest`` is good as it is; if not, it is moved to ``<dest>.corrupt`` with a warning.

    Good: its md5 is the pinned one, or (nothing pinned) the one its sidecar recorded, or
    there is no sidecar.  (The warnings name the caller of :func:`fetch`.)
    """
    corrupt = dest.with_name(dest.name + ".corrupt")
    if md5 is None:
        recorded = _read_sidecar(dest)
        if recorded is None or md5sum(dest) == recorded:
            return True
        os.replace(dest, corrupt)
        warnings.warn(f"{dest} no longer matches the md5 recorded in {_sidecar_path(dest).name}; "
                      f"moved it to {corrupt.name} and downloading it again",
                      UnverifiedDownloadWarning, stacklevel=3)
        return False
    actual = md5sum(dest)
    if actual == md5:
        return True
    os.replace(dest, corrupt)
    warnings.warn(f"{dest} has md5 {actual}, expected {md5}; moved it to {corrupt.name} "
                  f"and downloading it again", RuntimeWarning, stacklevel=3)
    return False


def _fetch_from(url: str, transfer: _Transfer, md5: str | None, retries: int, backoff: float,
                max_backoff: float) -> tuple[str | None, bool]:
    """Get a complete, verified body from ``url`` into ``transfer.part``.

    Returns ``(md5 of the body, False)``, or ``(None, bad checksum?)`` after recording why
    the URL failed in ``transfer.failures``.  Transient failures are retried after an
    exponential pause; a body that fails the checksum after a resume is fetched once more
    from zero (the bytes kept from an earlier request may be stale), then bad bytes are deleted.
    """
    attempts = 0
    restarted_after_bad_resume = False
    while True:
        attempts += 1
        try:
            transfer.attempt(url)
        except _GiveUpOnURL as e:
            transfer.failures.append((url, str(e)))
            return None, False
        except _Retryable as e:
            if attempts > retries:
                transfer.failures.append((url, f"{e} (gave up after {attempts} attempts)"))
                return None, False
            time.sleep(min(backoff * 2 ** (attempts - 1), max_backoff))
            continue
        # a complete body is in .part: verify it
        actual = md5sum(transfer.part)
        if md5 is None or actual == md5:
            return actual, False
        was_resumed = transfer.resumed
        _truncate(transfer.part)
        transfer.resumed = False
        if was_resumed and not restarted_after_bad_resume:
            restarted_after_bad_resume = True
            continue
        transfer.failures.append(
            (url, f"checksum mismatch: expected md5 {md5}, got {actual} (bad bytes deleted)"))
        return None, True


def _install(transfer: _Transfer, md5: str | None, actual: str, url: str) -> None:
    """Rename the verified ``.part`` to ``dest``; without a pinned md5, record ``actual`` and warn."""
    dest = transfer.dest
    os.replace(transfer.part, dest)
    if md5 is None:
        _write_sidecar(dest, actual)
        warnings.warn(
            f"{dest.name} has no pinned md5, so it cannot be verified; downloaded from {url}, "
            f"md5 {actual} recorded in {_sidecar_path(dest).name}",
            UnverifiedDownloadWarning, stacklevel=3)


def _failure(transfer: _Transfer, md5: str | None, url_list: list[str], checksum_failures: int) -> DownloadError:
    """The error listing every URL tried and why it failed, and what the user can do instead."""
    dest, part = transfer.dest, transfer.part
    tried = "; ".join(f"{u} ({' '.join(str(why).split())})" for u, why in transfer.failures)
    expect = f" (expected md5 {md5})" if md5 else ""
    hint = (f"If you are offline or these links have died, obtain {dest.name}{expect} elsewhere, "
            f"put it in a directory and point `data_dir` at that directory (or at the unpacked "
            f"files) instead of downloading.")
    if part.exists():
        hint += f" The partial download {part} is kept and will be resumed on the next attempt."
    cls = ChecksumError if checksum_failures == len(transfer.failures) else DownloadError
    return cls(f"could not download {dest.name} from any of {len(url_list)} URL(s): {tried}. {hint}")


def fetch_remote(remote: RemoteFile, dest_dir: str | Path, **kwargs) -> Path:
    """:func:`fetch` a registry entry into ``dest_dir / remote.name``."""
    kwargs.setdefault("size", remote.size)
    return fetch(remote.urls, Path(dest_dir) / remote.name, remote.md5, **kwargs)


def fetch_all(files: Iterable[RemoteFile], dest_dir: str | Path, **kwargs) -> list[Path]:
    """Fetch several registry entries into ``dest_dir``; return their paths."""
    return [fetch_remote(f, dest_dir, **kwargs) for f in files]
