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


def portable_path(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies inside it, else absolute: how the
    workflow records the data and images of a project, so that a project folder moved or renamed
    as a whole (results, data and all) names the same files and reruns nothing."""
    import os

    full = os.path.abspath(path)  # no file-system access: a catalogue's paths are many
    rel = os.path.relpath(full)
    return full if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------- model files (safetensors)

#: the safetensors metadata key whose value is a gzmorph file's JSON header
BUNDLE_HEADER_KEY = "gzmorph"
#: the rule that writes each kind of gzmorph file (by format family), for the hints of files to rewrite
WRITER_RULE = {"gzmorph.classifier": "train_classifier", "gzmorph.representation": "train_representation",
               "gzmorph.expert": "train_expert", "gzmorph.synthetic": "distill"}
_MAX_HEADER = 100_000_000  # safetensors' own limit on the header's size


def save_bundle(path: str | Path, bundle: dict, fmt: str) -> None:
    """Write ``bundle`` (nested dicts, lists, tuples, tensors, numpy arrays and scalars, plain values)
    atomically as a safetensors file that no reader can make run code.

    The tensors (and numpy arrays) are the file's weights, named by where they sit in the bundle
    (``levels/0/state_dict/conv1.weight``); everything else is one JSON document in the safetensors
    metadata under ``"gzmorph"``: ``{"format": fmt, "versions": {"gzmorph", "torch", "safetensors"},
    "bundle": the bundle with each tensor replaced by {"$tensor": name}}`` (tuples, numpy values,
    non-finite floats and non-string keys are tagged ``{"$tuple": ...}`` etc. so that they come back
    as they were).  :func:`load_bundle` reads it back.
    """
    from safetensors.torch import save_file

    if isinstance(bundle, dict) and bundle.get("format", fmt) != fmt:
        raise ValueError(f"{path}: bundle of format {bundle['format']!r} saved as {fmt!r}")
    tensors: dict = {}
    header = {"format": fmt, "versions": _versions(), "bundle": _encode(bundle, "", tensors, set())}
    text = json.dumps(header, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={BUNDLE_HEADER_KEY: text})


def bundle_header(path: str | Path) -> dict | None:
    """The JSON part of a gzmorph file (its ``format`` and the bundle's plain values; tensors are
    not read), read from the safetensors header without torch, for checks when the DAG is built;
    ``None`` for a file that is not one."""
    import struct

    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 2 <= n <= _MAX_HEADER:
                return None
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        header = json.loads(meta[BUNDLE_HEADER_KEY])
    except (OSError, struct.error, ValueError, KeyError, AttributeError, TypeError, RecursionError):
        return None  # RecursionError: a hostile header nested deeper than json can follow
    return header if isinstance(header, dict) else None


def load_bundle(path: str | Path, fmt: str, what: str, missing_hint: str = "") -> dict:
    """The bundle of a gzmorph file of format ``fmt`` written by :func:`save_bundle` (models, experts,
    synthetic sets); tensors come back on the CPU.

    Nothing in the file is ever executed: an old pickled file (older gzmorph versions wrote
    ``torch.save`` pickles), or any other file that is not a safetensors file, is refused unread.  Missing,
    unreadable or foreign files are one ``InputError`` naming the file and ``what``, asking for one
    written by this gzmorph (and the ``snakemake --forcerun <rule>`` that writes one in the workflow).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found: the file does not exist{missing_hint}")
    retrain = _retrain_hint(fmt, what)
    kind = _file_kind(path)
    if kind == "pickle":
        raise InputError(f"{path}: not a gzmorph {what}: a pickled file (a model file of an older gzmorph, "
                         f"or a training checkpoint), which gzmorph never loads as loading it could run code; "
                         f"{retrain}")
    if kind != "safetensors":
        raise InputError(f"{path}: {what} cannot be read: {kind}; {retrain}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if BUNDLE_HEADER_KEY not in meta:
                raise InputError(f"{path}: not a gzmorph {what} (a safetensors file without a gzmorph header); "
                                 f"{retrain}")
            header = json.loads(meta[BUNDLE_HEADER_KEY])
            found = header.get("format", "no format key") if isinstance(header, dict) else "no format key"
            if found != fmt:
                raise InputError(f"{path}: not a gzmorph {what} ({found})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - a safe_open, not a dict
        bundle = _decode(header.get("bundle"), tensors)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - a truncated, damaged or foreign file
        raise InputError(f"{path}: {what} cannot be read ({one_line(err)}); {retrain}") from None
    if not isinstance(bundle, dict):
        raise InputError(f"{path}: not a gzmorph {what} (holds a {type(bundle).__name__}, not a dict); {retrain}")
    bundle.setdefault("format", fmt)
    return bundle


def one_line(err: BaseException) -> str:
    """An exception as one line.  torch's multi-line weights-only refusal (whose first line advises
    ``weights_only=False``, i.e. running the file) becomes its reason: ``refused by the weights-only
    loader: Trying to load unsupported GLOBAL posix.system ...``."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        reasons = [ln.removeprefix("WeightsUnpickler error:").strip() for ln in lines[1:]
                   if not ln.startswith("Check the documentation")]
        return "refused by the weights-only loader" + (f": {reasons[0]}" if reasons else "")
    return lines[0] if lines else type(err).__name__


def _retrain_hint(fmt: str, what: str) -> str:
    """What to give instead of a file that is no ``what`` of this gzmorph: words for the console
    commands' users and the workflow's alike."""
    rule = WRITER_RULE.get(fmt.split("/", 1)[0])
    where = f" (in the workflow: snakemake --forcerun {rule})" if rule else ""
    return f"give a {what} written by this gzmorph{where}"


def _file_kind(path: Path) -> str:
    """``"safetensors"``, ``"pickle"`` (torch.save's zip or a bare pickle), or why it is neither;
    read from the first bytes only."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(9)
    if not head:
        return "the file is empty"
    if len(head) == 9:
        n = int.from_bytes(head[:8], "little")
        if head[8:9] == b"{" and n <= min(_MAX_HEADER, path.stat().st_size - 8):
            return "safetensors"
    if head[:1] == b"\x80" or zipfile.is_zipfile(path):
        return "pickle"
    return "not a safetensors file"


def _versions() -> dict:
    import safetensors
    import torch

    from . import __version__

    return {"gzmorph": __version__, "torch": torch.__version__, "safetensors": safetensors.__version__}


def _tensor_name(where: str, tensors: dict) -> str:
    name, k = where or "tensor", 1
    while name in tensors:
        k += 1
        name = f"{where}#{k}"
    return name


def _store_tensor(t, where: str, tensors: dict, storages: set) -> str:
    t = t.detach().cpu()
    ptr = t.untyped_storage().data_ptr() if t.numel() else None
    shared = ptr is not None and (ptr in storages or t.untyped_storage().nbytes() != t.nbytes)
    if shared or not t.is_contiguous():
        t = t.contiguous().clone()
    if ptr is not None:
        storages.add(t.untyped_storage().data_ptr())
    name = _tensor_name(where, tensors)
    tensors[name] = t
    return name


def _encode(obj, where: str, tensors: dict, storages: set):
    """``obj`` as JSON, its tensors and arrays moved to ``tensors`` (see :func:`save_bundle`)."""
    import math

    import numpy as np
    import torch

    def sub(key, value):
        return _encode(value, f"{where}/{key}" if where else str(key), tensors, storages)

    if obj is None or isinstance(obj, (bool, str)) and not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, np.generic):
        value = obj.item()
        if isinstance(value, np.generic) or not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"{where or 'bundle'}: cannot store a numpy {obj.dtype} value")
        return {"$numpy": obj.dtype.str, "value": _encode(value, where, tensors, storages)}
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else {"$float": repr(float(obj))}
    if torch.is_tensor(obj):
        return {"$tensor": _store_tensor(obj, where, tensors, storages)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject or obj.dtype.fields is not None:
            raise TypeError(f"{where or 'bundle'}: cannot store a numpy array of dtype {obj.dtype}")
        arr = np.ascontiguousarray(obj)
        if arr.dtype.kind in "biuf" and arr.dtype.isnative and arr.dtype.itemsize <= 8:
            t, raw = torch.from_numpy(arr), False
        else:  # strings, complex, other byte orders, ...: the raw bytes
            t, raw = torch.from_numpy(arr.reshape(-1).view(np.uint8).copy()), True
        out = {"$ndarray": _store_tensor(t, where, tensors, storages), "dtype": arr.dtype.str}
        return out | {"shape": list(arr.shape)} if raw else out
    if isinstance(obj, tuple):
        return {"$tuple": [sub(i, v) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [sub(i, v) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not isinstance(k, np.generic) and not k.startswith("$") for k in obj):
            return {k: sub(k, v) for k, v in obj.items()}
        return {"$dict": [[_encode(k, where, tensors, storages), sub(k, v)] for k, v in obj.items()]}
    raise TypeError(f"{where or 'bundle'}: cannot store a {type(obj).__name__} in a gzmorph file")


def _decode(obj, tensors: dict):
    """The inverse of :func:`_encode`."""
    import numpy as np

    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1 and "$tensor" in obj:
        return tensors[obj["$tensor"]]
    if "$ndarray" in obj:
        arr = tensors[obj["$ndarray"]].numpy()
        dtype = np.dtype(obj["dtype"])
        if "shape" in obj:
            return arr.view(dtype).reshape(obj["shape"]).copy()
        return arr.astype(dtype, copy=False)
    if "$numpy" in obj:
        return np.array(_decode(obj["value"], tensors), dtype=np.dtype(obj["$numpy"]))[()]
    if len(obj) == 1 and "$float" in obj:
        return float(obj["$float"])
    if len(obj) == 1 and "$tuple" in obj:
        return tuple(_decode(v, tensors) for v in obj["$tuple"])
    if len(obj) == 1 and "$dict" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["$dict"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


@contextlib.contextmanager
def parquet_stream(path: str | Path, schema=None, metadata: dict | None = None):
    """Write a Parquet file a batch at a time, atomically: yields ``write(table or DataFrame)``.

    The file appears at ``path`` only when the block ends without an error (see :func:`atomic_path`),
    so memory holds one batch, never the whole table.  ``metadata`` (str -> JSON value) goes into
    the schema metadata under ``gzmorph.<key>``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {f"gzmorph.{k}".encode(): json.dumps(v, default=_json_default).encode() for k, v in (metadata or {}).items()}
    state = {"writer": None, "schema": schema}
    with atomic_path(path) as tmp:
        def write(batch):
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
            if state["writer"] is None:
                state["schema"] = (state["schema"] or table.schema).with_metadata(meta)
                state["writer"] = pq.ParquetWriter(tmp, state["schema"], compression="zstd")
            state["writer"].write_table(table.cast(state["schema"]))

        try:
            yield write
            if state["writer"] is None:  # nothing written: an empty table with the schema, if known
                if schema is None:
                    raise ValueError(f"{path}: no rows and no schema to write")
                write(schema.empty_table())
        finally:
            if state["writer"] is not None:
                state["writer"].close()

