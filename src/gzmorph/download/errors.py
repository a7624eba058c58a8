"""The errors and the warning of :mod:`gzmorph.download` (bad-input errors, reported like any other)."""

from __future__ import annotations

from gzmorph.io import InputError


class DownloadError(InputError):
    """A file could not be obtained from any of its URLs (message lists each failure)."""


class ChecksumError(DownloadError):
    """Every URL served bytes whose md5 differs from the pinned one."""


class ArchiveError(InputError):
    """An archive is unreadable or contains a member that would escape ``dest_dir``."""


class UnverifiedDownloadWarning(UserWarning):
    """A file was downloaded without a pinned md5; its computed md5 was recorded."""
