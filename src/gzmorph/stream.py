"""Training and evaluation data streamed from an image store, in bounded memory.

:class:`StoreRows` is a set of rows of an :class:`~gzmorph.imageset.ImageStore` that
:func:`gzmorph.train.fit` and :func:`gzmorph.train.predict_tensor` take in place of an in-memory
tensor.  An epoch's order is drawn from the epoch's seeded generator:

- when the rows' pixels fit the window (``window_mb``), they are read once and kept, and the
  order is :func:`gzmorph.train.batch_order`'s -- a permutation, or weighted draws with
  replacement -- exactly as for an in-memory tensor;
- otherwise the row groups holding the rows are permuted, consecutive groups fill windows of
  about ``window_mb`` of pixels, and each window is permuted on its own: the shard shuffle +
  shuffle buffer of WebDataset and LitData.  Weighted draws with replacement take two stages: how
  many draws each window gets (by its share of the weight), then which of its rows.  Batches run on across
  windows, so an epoch has the same number of batches either way.

Windows are read by the worker processes of a ``torch.utils.data.DataLoader`` (``workers``, each
with its own handle on the store): worker ``i`` reads windows ``i, i + workers, ...`` and the loader
hands them back in that round-robin order, so the stream is the same for any number of workers
(0 reads in the training process).  Reading and decoding the next windows overlaps training on
this one; memory holds at most ``workers + 1`` windows.  Augmentation is not done in the workers: it
runs batched on the training device (:mod:`gzmorph.augment`), where a GPU does it faster than CPU
workers could, and where it draws from the one seeded generator of the epoch.

The same seed gives the same order, so a run resumed at an epoch boundary sees what an
uninterrupted run would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .imageset import ImageStore
from .io import InputError

#: the default shuffle window: pixels of one window of rows, in MB
DEFAULT_WINDOW_MB = 128
#: at most this many DataLoader worker processes read windows (a window is ~``window_mb`` of
#: reading; two keep a GPU fed), fewer where the CPUs are fewer (:func:`window_workers`)
MAX_WORKERS = 2


def window_workers() -> int:
    """Worker processes reading windows: :func:`gzmorph.imagestream.default_workers` (the CPUs less
    one for the model), at most :data:`MAX_WORKERS`."""
    from .imagestream import default_workers

    return min(MAX_WORKERS, default_workers())


def n_batches(n: int, batch_size: int) -> int:
    """Batches of an epoch of ``n`` examples: full batches, then the rest unless it is a single
    example after other batches (BatchNorm cannot train on one), as :func:`gzmorph.train.batch_order`."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 or (rest == 1 and full == 0) else 0)


class TensorRows:
    """An in-memory uint8 tensor as a row source (what ``fit`` was given before streaming)."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def epoch_batches(self, batch_size: int, gen: torch.Generator, weights=None):
        from .train import batch_order

        for idx in batch_order(len(self.x), batch_size, gen, weights):
            yield idx, self.x[idx.to(self.x.device)]

    def ordered_batches(self, batch_size: int):
        for i in range(0, len(self.x), batch_size):
            yield self.x[i:i + batch_size]


class StoreRows:
    """Rows ``rows`` (default: all) of an image store, streamed (see the module docstring)."""

    def __init__(self, store: ImageStore | str, rows=None, window_mb: float = DEFAULT_WINDOW_MB,
                 workers: int | None = None):
        self.store = store if isinstance(store, ImageStore) else ImageStore(store)
        self.rows = np.arange(len(self.store)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.window_mb = window_mb
        self.workers = window_workers() if workers is None else int(workers)
        self.window_rows = max(1, int(window_mb * 2**20) // self.store.nbytes_per_image)
        self._cache: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, positions) -> StoreRows:
        """The rows at ``positions`` of these rows, from the same store."""
        return StoreRows(self.store, self.rows[np.asarray(positions, dtype=np.int64)], self.window_mb, self.workers)

    @property
    def shape(self) -> tuple:
        return (len(self.rows), *self.store.shape)

    @property
    def fits(self) -> bool:
        """Whether all the rows fit one window (then they are read once and kept)."""
        return len(self.rows) <= self.window_rows

    def _all(self) -> torch.Tensor:
        if self._cache is None:
            self._cache = torch.from_numpy(self.store.read_rows(self.rows))
        return self._cache

    def windows(self, gen: torch.Generator) -> list[np.ndarray]:
        """Positions (into ``rows``) of each window of an epoch: row groups in a seeded order,
        consecutive groups up to ``window_rows`` rows per window."""
        _, inverse, counts = np.unique(self.store.group_of(self.rows), return_inverse=True, return_counts=True)
        # each group's positions, ascending (a stable sort by group), without a Python loop over rows
        members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
        out, current, size = [], [], 0
        for k in torch.randperm(len(members), generator=gen).tolist():
            if current and size + len(members[k]) > self.window_rows:
                out.append(np.concatenate(current))
                current, size = [], 0
            current.append(members[k])
            size += len(members[k])
        if current:
            out.append(np.concatenate(current))
        return out

    def epoch_batches(self, batch_size: int, gen: torch.Generator, weights=None):
        """Yield ``(positions, uint8 images)`` of one epoch in its seeded order."""
        if self.fits:
            yield from TensorRows(self._all()).epoch_batches(batch_size, gen, weights)
            return
        wins = self.windows(gen)
        if weights is None:
            plan = [win[torch.randperm(len(win), generator=gen).numpy()] for win in wins]
        else:  # weighted draws with replacement in two stages: how many per window, then which rows
            w = torch.as_tensor(weights, dtype=torch.double)
            mass = torch.stack([w[win].sum() for win in wins])
            counts = torch.bincount(torch.multinomial(mass, len(self.rows), replacement=True, generator=gen),
                                    minlength=len(wins)).tolist()
            plan = [win[torch.multinomial(w[win], k, replacement=True, generator=gen).numpy()]
                    for win, k in zip(wins, counts) if k]
        yield from self._stream(plan, batch_size)

    def read_windows(self, plan: list[np.ndarray]):
        """The images of each window of ``plan`` (positions into ``rows``), in order, read by the
        DataLoader's workers (module docstring)."""
        if not plan:
            return
        from .imagestream import worker_context

        workers = min(self.workers, len(plan))
        windows = _Windows(self.store.path if workers else self.store, [self.rows[p] for p in plan])
        loader = DataLoader(windows, batch_size=None, num_workers=workers, prefetch_factor=1 if workers else None,
                            multiprocessing_context=worker_context() if workers else None)
        batches = iter(loader)
        try:
            for images, error in batches:
                if error is not None:
                    raise InputError(error)
                yield images.numpy()
        finally:  # an error, an early stop or an abandoned epoch: the workers end now, not at collection
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def _stream(self, plan: list[np.ndarray], batch_size: int):
        total, done = sum(len(p) for p in plan), 0
        n_out = n_batches(total, batch_size)
        carry_pos = np.zeros(0, np.int64)
        carry_img = np.zeros((0, *self.store.shape), np.uint8)
        for i, (order, images) in enumerate(zip(plan, self.read_windows(plan))):
            pos, img = np.concatenate([carry_pos, order]), np.concatenate([carry_img, images])
            last = i + 1 == len(plan)
            start = 0
            while done < n_out and (len(pos) - start >= batch_size or (last and len(pos) - start > 0)):
                stop = min(start + batch_size, len(pos))
                yield torch.from_numpy(pos[start:stop]), torch.from_numpy(img[start:stop])
                start, done = stop, done + 1
            carry_pos, carry_img = pos[start:], img[start:]

    def ordered_batches(self, batch_size: int):
        """The rows' images in order, a batch at a time (evaluation, embedding)."""
        if self.fits:
            yield from TensorRows(self._all()).ordered_batches(batch_size)
            return
        n, w = len(self.rows), self.window_rows
        plan = [np.arange(i, min(i + w, n)) for i in range(0, n, w)]
        carry = np.zeros((0, *self.store.shape), np.uint8)
        for window in self.read_windows(plan):  # batches run on across windows, as in memory
            images = np.concatenate([carry, window]) if len(carry) else window
            full = len(images) - len(images) % batch_size
            for i in range(0, full, batch_size):
                yield torch.from_numpy(images[i:i + batch_size])
            carry = images[full:]
        if len(carry):
            yield torch.from_numpy(carry)


class _Windows(IterableDataset):
    """Store rows of each window; a DataLoader worker ``i`` of ``n`` reads windows ``i, i + n, ...``
    through its own :class:`ImageStore` (an open Parquet file is not shared across processes):
    ``store`` is its path, or the open store when there are no workers."""

    def __init__(self, store, windows: list[np.ndarray]):
        self.store, self.windows = store, windows

    def __iter__(self):
        info = get_worker_info()
        first, step = (info.id, info.num_workers) if info else (0, 1)
        try:
            store = self.store if isinstance(self.store, ImageStore) else ImageStore(self.store)
            for k in range(first, len(self.windows), step):
                yield torch.from_numpy(store.read_rows(self.windows[k])), None
        except InputError as err:  # handed back as text: the user sees the file, not a worker traceback
            yield None, str(err)


def as_rows(x):
    """``fit``'s ``x``: a :class:`StoreRows` as it is, an array or tensor as :class:`TensorRows`."""
    if isinstance(x, (StoreRows, TensorRows)):
        return x
    return TensorRows(x if torch.is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x)))


def channel_stats_rows(rows: StoreRows, batch: int = 4096, greyscale: bool = False) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units (:func:`gzmorph.augment.channel_stats`), streamed."""
    from .augment import channel_stats, pixel_values

    if rows.fits:
        return channel_stats(rows._all(), batch, greyscale)
    c = 1 if greyscale else rows.store.shape[-1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for x in rows.ordered_batches(batch):
        b = pixel_values(x, greyscale)
        s += b.sum(0)
        s2 += (b * b).sum(0)
    n = len(rows) * int(np.prod(rows.store.shape[:-1]))
    mean = s / n
    std = (s2 / n - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()
