"""The curated image store: uint8 H×W×3 images keyed by galaxy id, in Parquet, read a row group at a time.

Layout 2 of ``curated/images.parquet`` (and ``represent/images.parquet``): one row per galaxy, columns
``id`` (int64, or string for catalogues with string ids) and ``image`` (fixed-size binary: the
C-ordered H×W×3 pixels), zstd-compressed row groups of about :data:`GROUP_BYTES` of pixels.  The
file's key-value metadata holds the layout (``gzmorph.image_layout``), the shape
(``gzmorph.image_shape``), the number of images and a SHA-256 of the shape, ids and pixels
(``gzmorph.content_hash``: what a training checkpoint records of its images), written when the
file is closed.

Why Parquet row groups: they are the shards of the streaming formats (WebDataset, LitData, MosaicML
streaming) without a second format beside the curated catalogue: a row group is read and
decompressed on its own, so memory holds a few groups whatever the catalogue's size, and a
10-million-galaxy store is the same file layout as a 1,000-galaxy one.  Writing is incremental
(:class:`ImageWriter`), reading is sequential (:meth:`ImageStore.batches`) or in a seeded
shuffled order through a bounded window of row groups (:func:`gzmorph.stream.shuffled_batches`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .io import InputError, atomic_path

LAYOUT = 2
LAYOUT_KEY = b"gzmorph.image_layout"
SHAPE_KEY = b"gzmorph.image_shape"
HASH_KEY = b"gzmorph.content_hash"
COUNT_KEY = b"gzmorph.n_images"
#: pixels per row group (before compression): a few MB, so one group is cheap to read on its own
GROUP_BYTES = 8 << 20
#: the rule that writes each store, for "rerun it" hints
WRITER_RULES = "preprocess_images (curated/) or represent_images (represent/)"


def rows_per_group(shape) -> int:
    return max(16, GROUP_BYTES // int(np.prod(shape)))


def _id_array(ids) -> pa.Array:
    """int64 ids stay int64; any other ids (strings) become a string column."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return pa.array(ids.astype(np.int64), pa.int64())
    return pa.array([str(i) for i in ids], pa.string())


class ImageWriter:
    """Write a store a batch at a time, atomically: ``with ImageWriter(path, shape) as w: w.add(ids, images)``.

    Memory holds at most one row group of pixels; the file appears at ``path`` only when the block
    ends without an error.  ``extra_metadata`` (str -> JSON value) is stored as ``gzmorph.<key>``."""

    def __init__(self, path: str | Path, shape, extra_metadata: dict | None = None):
        self.path, self.shape = Path(path), tuple(int(s) for s in shape)
        if len(self.shape) != 3 or self.shape[-1] != 3:
            raise ValueError(f"images must be H×W×3, got shape {self.shape}")
        self.meta = {SHAPE_KEY: json.dumps(list(self.shape)).encode(), LAYOUT_KEY: str(LAYOUT).encode()}
        for k, v in (extra_metadata or {}).items():
            self.meta[f"gzmorph.{k}".encode()] = json.dumps(v).encode()
        self.group = rows_per_group(self.shape)
        self.digest = hashlib.sha256(json.dumps(list(self.shape)).encode())
        self.n, self._ids, self._pix, self._writer, self._ctx = 0, [], [], None, None

    def __enter__(self):
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        return self

    def add(self, ids, images: np.ndarray) -> None:
        images = np.ascontiguousarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.shape:
            raise ValueError(f"images must be N×{'×'.join(map(str, self.shape))} uint8, got {images.dtype} "
                             f"{images.shape}")
        ids = np.asarray(ids)
        if len(ids) != len(images):
            raise ValueError(f"{len(ids)} ids for {len(images)} images")
        self._ids.append(ids)
        self._pix.append(images)
        if sum(len(i) for i in self._ids) >= self.group:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._ids:
            return
        ids, pix = np.concatenate(self._ids), np.concatenate(self._pix)
        cut = len(ids) if final else len(ids) - len(ids) % self.group
        self._write(ids[:cut], pix[:cut])
        self._ids, self._pix = ([ids[cut:]], [pix[cut:]]) if cut < len(ids) else ([], [])

    def _write(self, ids, pix) -> None:
        if not len(ids):
            return
        id_col = _id_array(ids)
        size = int(np.prod(self.shape))
        for i, p in zip(ids, pix):
            self.digest.update(str(i).encode() + b"\0")
            self.digest.update(memoryview(p).cast("B"))
        col = pa.FixedSizeBinaryArray.from_buffers(pa.binary(size), len(pix), [None, pa.py_buffer(pix)])
        table = pa.table({"id": id_col, "image": col})
        if self._writer is None:
            self._schema = table.schema.with_metadata(self.meta)
            self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd")
        elif table.schema.field("id").type != self._schema.field("id").type:
            raise InputError(f"{self.path}: ids of mixed types ({self._schema.field('id').type} and "
                             f"{table.schema.field('id').type}, e.g. {ids[0]!r})")
        self._writer.write_table(table.replace_schema_metadata(self.meta), row_group_size=self.group)
        self.n += len(ids)

    def __exit__(self, kind, err, tb):
        try:
            if kind is None:
                self._flush(final=True)
                if self._writer is None:  # no image at all: an empty store with the shape
                    self._write_empty()
                self._writer.add_key_value_metadata({HASH_KEY.decode(): self.digest.hexdigest(),
                                                     COUNT_KEY.decode(): str(self.n)})
        finally:
            if self._writer is not None:
                self._writer.close()
        return self._ctx.__exit__(kind, err, tb)

    def _write_empty(self) -> None:
        size = int(np.prod(self.shape))
        schema = pa.schema([("id", pa.int64()), ("image", pa.binary(size))]).with_metadata(self.meta)
        self._schema = schema
        self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")
        self._writer.write_table(schema.empty_table())


def write_images(path: str | Path, ids, images: np.ndarray, extra_metadata: dict | None = None) -> None:
    """Write ``images`` (N×H×W×3 uint8) under ``ids`` atomically (see :class:`ImageWriter`)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be N×H×W×3 uint8, got {images.dtype} {images.shape}")
    with ImageWriter(path, images.shape[1:], extra_metadata) as w:
        w.add(ids, images)


def _unreadable(path, err: Exception) -> InputError:
    """A damaged, truncated or foreign image table: one error naming the file and the way out."""
    if isinstance(err, FileNotFoundError):
        return InputError(f"{path}: image table not found: the file does not exist")
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return InputError(f"{path}: not a readable image table ({reason}); it is damaged or truncated: "
                      f"delete it and rerun snakemake to rebuild it")


def _file_metadata(path) -> dict:
    try:
        return pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowException) as err:
        raise _unreadable(path, err) from None


def _check_layout(path, meta: dict) -> None:
    if SHAPE_KEY not in meta:
        raise InputError(f"{path}: not a gzmorph image table (no {SHAPE_KEY.decode()} metadata)")
    if meta.get(LAYOUT_KEY) != str(LAYOUT).encode():
        found = meta.get(LAYOUT_KEY, b"1").decode()
        raise InputError(f"{path}: image table of layout {found}, written by an older gzmorph; this version "
                         f"reads layout {LAYOUT}: rerun the rule that writes it ({WRITER_RULES}), e.g. "
                         f"snakemake --forcerun preprocess_images")


def image_shape(path: str | Path) -> tuple[int, int, int]:
    meta = _file_metadata(path)
    _check_layout(path, meta)
    return tuple(json.loads(meta[SHAPE_KEY]))


def content_hash(path: str | Path) -> str:
    """The SHA-256 of an image table's shape, ids and pixels, recorded when it was written."""
    meta = _file_metadata(path)
    _check_layout(path, meta)
    if HASH_KEY not in meta:
        raise InputError(f"{path}: image table without {HASH_KEY.decode()}: rerun the rule that wrote it")
    return meta[HASH_KEY].decode()


class ImageStore:
    """An open image table: ``ids``, ``shape``, and the pixels of any rows, read by row group."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta = _file_metadata(self.path)
        _check_layout(self.path, meta)
        self.shape = tuple(json.loads(meta[SHAPE_KEY]))
        try:
            self.file = pq.ParquetFile(self.path)
            self.ids = self.file.read(columns=["id"]).column("id").to_numpy(zero_copy_only=False)
        except (OSError, pa.ArrowException) as err:
            raise _unreadable(self.path, err) from None
        md = self.file.metadata
        sizes = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._positions = None  # id -> row, built by the first rows_of

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes_per_image(self) -> int:
        return int(np.prod(self.shape))

    def group_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.group_starts, rows, side="right") - 1

    def read_group(self, g: int) -> np.ndarray:
        """The pixels of row group ``g`` (rows ``group_starts[g]`` to ``group_starts[g + 1]``)."""
        try:
            col = self.file.read_row_group(int(g), columns=["image"]).column("image").combine_chunks()
        except (OSError, pa.ArrowException) as err:
            raise _unreadable(self.path, err) from None
        if col.type.byte_width != self.nbytes_per_image:
            raise InputError(f"{self.path}: rows are not all {self.shape} images")
        data = np.frombuffer(col.buffers()[1], np.uint8)
        start = col.offset * self.nbytes_per_image
        return data[start:start + len(col) * self.nbytes_per_image].reshape((len(col), *self.shape))

    def read_rows(self, rows) -> np.ndarray:
        """The images of store rows ``rows`` (any order, repeats allowed), reading each group once."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape), np.uint8)
        groups = self.group_of(rows)
        for g in np.unique(groups):
            sel = np.flatnonzero(groups == g)
            out[sel] = self.read_group(g)[rows[sel] - self.group_starts[g]]
        return out

    def rows_of(self, ids) -> np.ndarray:
        """Store rows of ``ids`` (KeyError naming the missing ones)."""
        ids = np.asarray(ids)
        if ids.dtype.kind in "iu" and self.ids.dtype.kind not in "iu":
            ids = ids.astype(str)
        if self._positions is None:  # built once per store: callers ask many times
            self._positions = {(int(v) if self.ids.dtype.kind in "iu" else v): i for i, v in enumerate(self.ids)}
        pos = self._positions
        key = (lambda v: int(v)) if self.ids.dtype.kind in "iu" else (lambda v: v)
        missing = [key(v) for v in ids if key(v) not in pos]
        if missing:
            raise KeyError(f"{self.path}: no image for ids {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        return np.fromiter((pos[key(v)] for v in ids), dtype=np.int64, count=len(ids))

    def batches(self, batch_size: int, rows=None):
        """Yield ``(positions, uint8 images)`` over ``rows`` (default: all) in the given order, a row
        group at a time: positions index ``rows``."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        for i in range(0, len(rows), batch_size):
            yield np.arange(i, min(i + batch_size, len(rows))), self.read_rows(rows[i:i + batch_size])


def read_images(path: str | Path, ids=None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(ids, images)`` in memory; with ``ids`` given, in that order (KeyError names missing
    ids).  For a few galaxies (reports, galleries) or small stores: streaming readers use
    :class:`ImageStore`."""
    store = ImageStore(path)
    if ids is None:
        return store.ids, store.read_rows(np.arange(len(store)))
    ids = np.asarray(ids)
    return ids, store.read_rows(store.rows_of(ids))


def recorded_fits(bundle: dict):
    """The FITS options a model file's images were made with (:func:`preprocess_meta`, kept in its
    ``preprocess``); ``None``: not recorded, the defaults."""
    return (bundle.get("preprocess") or {}).get("fits")


def preprocess_meta(path: str | Path) -> dict:
    """How an image store's images were made, as its writer recorded them: ``crop_fraction`` and, for
    FITS sources, the ``fits`` options (:class:`gzmorph.fits.FitsOptions` as a dict); model files
    keep it, so that the console commands prepare new images the same way."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    out = {}
    for key in (b"gzmorph.crop_fraction", b"gzmorph.fits", b"gzmorph.preprocess"):
        if key in meta:
            val = json.loads(meta[key])
            out.update(val if key == b"gzmorph.preprocess" and isinstance(val, dict)
                       else {key.decode().split(".", 1)[1]: val})
    return out
