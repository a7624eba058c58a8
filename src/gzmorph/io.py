"""Small I/O helpers shared by every stage: atomic writes and clear input errors."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files -rw------- whatever the umask says; outputs get the mode the user's
# umask gives any new file (read once: os.umask can only be read by setting it)
FILE_MODE = 0o666 & ~_process_umask()


class InputError(ValueError):
    """Bad user input (a file, row, column or config key); the message names it."""


#: atomic_path's temporary file beside ``<name>``: ``.<name>.<random>.tmp`` (hidden, and no glob
#: for ``*.<ext>`` of the outputs matches it); the random part is tempfile's, [a-z0-9_]
TEMP_SUFFIX = ".tmp"
_TEMP_RANDOM = "[a-z0-9_]+"


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; move it into place only on success.

    A crash or an exception leaves no file at ``path`` that looks complete.  The temporary file
    (``.<name>.<random>.tmp``) is removed when the write fails; a process killed outright
    leaves it, and :func:`sweep_temporaries` (run when a rule starts) removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_path` (never an output)."""
    return re.fullmatch(rf"\..+\.{_TEMP_RANDOM}{re.escape(TEMP_SUFFIX)}", Path(path).name) is not None


def temporaries_of(path: str | Path) -> list[Path]:
    """Leftover temporary files of :func:`atomic_path` for ``path``: ``.<name>.<random>.tmp`` beside it.

    Only ``path``'s own: ``.a.b.<random>.tmp`` belongs to ``a.b``, not to ``a``.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{_TEMP_RANDOM}{re.escape(TEMP_SUFFIX)}")
    try:
        entries = list(os.scandir(path.parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(path.parent / e.name for e in entries
                  if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False))


def sweep_temporaries(paths) -> list[Path]:
    """Remove the leftover temporary files of :func:`atomic_path` beside each of ``paths`` (the
    outputs of a rule about to run: a job killed by SIGKILL leaves them); return what was removed."""
    removed = []
    for path in paths:
        for tmp in temporaries_of(path):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def load_bundle(path: str | Path, fmt: str, what: str, missing_hint: str = "") -> dict:
    """A torch-saved dict tagged ``format == fmt`` (models, experts, synthetic sets).

    Missing, unreadable or foreign files are one ``InputError`` naming the file and ``what``.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found: the file does not exist{missing_hint}")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file
        raise InputError(f"{path}: {what} cannot be read ({err})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != fmt:
        found = bundle.get("format", "no format key") if isinstance(bundle, dict) else type(bundle).__name__
        hint = " (a training checkpoint?)" if isinstance(bundle, dict) and "optimizer" in bundle else ""
        raise InputError(f"{path}: not a gzmorph {what} ({found}){hint}")
    return bundle


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")
