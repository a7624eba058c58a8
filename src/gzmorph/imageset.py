"""Curated image tensors in Parquet: uint8 H×W×3 images keyed by galaxy id.

Layout of ``curated/images.parquet``: one row per galaxy, columns ``id``
(int64) and ``image`` (binary, the C-ordered H×W×3 uint8 pixels), row groups
of a few thousand rows, and the shape in the schema metadata under
``gzmorph.image_shape``, and a SHA-256 of the ids and pixels under ``gzmorph.content_hash``
(what a training checkpoint records of its images).  Training reads the whole table into one array.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .io import InputError, atomic_path

SHAPE_KEY = b"gzmorph.image_shape"
HASH_KEY = b"gzmorph.content_hash"


def write_images(path: str | Path, ids, images: np.ndarray, extra_metadata: dict | None = None) -> None:
    """Write ``images`` (N×H×W×3 uint8) under ``ids`` atomically."""
    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be N×H×W×3 uint8, got {images.dtype} {images.shape}")
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) != len(images):
        raise ValueError(f"{len(ids)} ids for {len(images)} images")
    n, h, w, c = images.shape
    flat = images.reshape(n, h * w * c)
    col = pa.array([row.tobytes() for row in flat], type=pa.large_binary())
    digest = hashlib.sha256(ids.tobytes())
    digest.update(json.dumps([h, w, c]).encode())
    digest.update(memoryview(flat).cast("B"))
    meta = {SHAPE_KEY: json.dumps([h, w, c]).encode(), HASH_KEY: digest.hexdigest().encode()}
    for k, v in (extra_metadata or {}).items():
        meta[f"gzmorph.{k}".encode()] = json.dumps(v).encode()
    table = pa.table({"id": ids, "image": col}).replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=4096, compression="zstd")


def _unreadable(path, err: Exception) -> InputError:
    """A damaged, truncated or foreign image table: one error naming the file and the way out."""
    if isinstance(err, FileNotFoundError):
        return InputError(f"{path}: image table not found: the file does not exist")
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return InputError(f"{path}: not a readable image table ({reason}); it is damaged or truncated: "
                      f"delete it and rerun snakemake to rebuild it")


def _schema_metadata(path) -> dict:
    try:
        return pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as err:
        raise _unreadable(path, err) from None


def image_shape(path: str | Path) -> tuple[int, int, int]:
    meta = _schema_metadata(path)
    if SHAPE_KEY not in meta:
        raise InputError(f"{path}: not a gzmorph image table (no {SHAPE_KEY.decode()} metadata)")
    return tuple(json.loads(meta[SHAPE_KEY]))


def content_hash(path: str | Path) -> str:
    """The SHA-256 of an image table's ids and pixels, recorded when it was written."""
    meta = _schema_metadata(path)
    if HASH_KEY not in meta:
        raise InputError(f"{path}: image table without {HASH_KEY.decode()}: rerun the rule that wrote it")
    return meta[HASH_KEY].decode()


def read_images(path: str | Path, ids=None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(ids, images)``; with ``ids`` given, in that order (KeyError names missing ids)."""
    shape = image_shape(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise _unreadable(path, err) from None
    all_ids = table.column("id").to_numpy()
    # one contiguous buffer -> N×H×W×3 without a Python loop over rows
    col = table.column("image").combine_chunks()
    bufs = col.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[col.offset:col.offset + len(col) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8)
    size = int(np.prod(shape))
    if not np.all(np.diff(offsets) == size):
        raise ValueError(f"{path}: rows are not all {shape} images")
    start = offsets[0]
    images = data[start:start + size * len(all_ids)].reshape((len(all_ids), *shape))
    if ids is None:
        return all_ids, images
    ids = np.asarray(ids, dtype=np.int64)
    pos = {int(v): i for i, v in enumerate(all_ids)}
    missing = [int(i) for i in ids if int(i) not in pos]
    if missing:
        raise KeyError(f"{path}: no image for ids {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    take = np.fromiter((pos[int(i)] for i in ids), dtype=np.int64, count=len(ids))
    return ids, images[take]
