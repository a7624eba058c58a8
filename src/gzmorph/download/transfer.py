"""One file's HTTP transfer into ``<dest>.part``: resume with ``Range``, restart, and failure kinds.

:meth:`_Transfer.attempt` makes one request.  An interrupted transfer is resumed with an HTTP
``Range`` request (``206``); a server that ignores ``Range`` (answers ``200``) is restarted
from byte 0; ``416`` means "the partial file is already complete" when the sizes agree and
"start again" otherwise.  A failure is raised as :class:`_Retryable` (connection errors,
timeouts, truncated bodies, HTTP 5xx/408/425/429: try the same URL again after a pause) or
:class:`_GiveUpOnURL` (404, 403, bad scheme...: go to the next mirror).
"""

from __future__ import annotations

import contextlib
import http.client
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from gzmorph import __version__


class _Retryable(Exception):
    """A transient failure: try the same URL again after a pause."""


class _GiveUpOnURL(Exception):
    """A permanent failure for this URL (404, 403, bad scheme...): go to the next mirror."""


_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


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
        """One HTTP request; on return ``part`` holds the complete body (as far as we can tell).

        Resume from the bytes already in ``part`` (unless they are complete), open the URL,
        decide from the status whether the body continues or replaces ``part``, and receive it.
        """
        offset = self._resume_offset()
        if offset is None:
            return  # already complete: the checksum decides
        response = self._open(url, offset)
        if response is None:
            return  # the partial file already holds every byte
        with contextlib.closing(response):
            offset, mode, total, length = self._body_start(response, offset)
            self._receive(response, offset, mode, total, length)

    def _resume_offset(self) -> int | None:
        """Bytes of ``part`` to keep (0: start afresh); ``None`` when ``part`` already has ``size`` bytes."""
        offset = self.part.stat().st_size if self.part.exists() else 0
        if self.size is not None and offset > self.size:
            _truncate(self.part)
            offset = 0
        if self.size is not None and offset == self.size and offset > 0:
            self.resumed = True
            return None
        if offset == 0:
            self.resumed = False
        return offset

    def _open(self, url: str, offset: int):
        """The response to a GET (with ``Range`` from ``offset``); ``None`` for a 416 on a complete part."""
        headers = {"User-Agent": f"gzmorph/{__version__} (+python-urllib)", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            with contextlib.closing(e):
                if e.code == 416 and offset > 0:
                    _, _, total = _parse_content_range(e.headers.get("Content-Range"))
                    if total is not None and total == offset:
                        self.resumed = True
                        return None
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

    def _body_start(self, response, offset: int) -> tuple[int, str, int | None, int | None]:
        """``(offset, file mode, total size, Content-Length)``: append a 206 resume, else rewrite ``part``."""
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
        return offset, mode, total, length

    def _receive(self, response, offset: int, mode: str, total: int | None, length: int | None) -> None:
        """Copy the body into ``part`` in chunks (with a progress bar); a short body is retryable."""
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
