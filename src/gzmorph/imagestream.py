"""Users' image files as a stream of batches: the console commands' input pipeline.

:func:`image_batches` decodes files with the curation stage's preprocessing
(:func:`gzmorph.preprocess.load_image`: centre crop, area resize) in the worker
processes of a ``torch.utils.data.DataLoader``, so decoding overlaps the model and
only a few batches of pixels exist at any time: memory does not grow with the
number of images.  Batches come in the order of the paths.

A file that cannot be decoded stops the stream with one :class:`~gzmorph.io.InputError`
naming it (the worker hands the message back instead of raising, so the user sees the
file, not a worker traceback).

Ids come from the file names (:func:`image_ids`): ``123.jpg`` is the integer 123, any
other name is kept as a string (its stem: ``007.fits.gz`` is ``"007"``), and every image gets
the same id type.  Images are JPEG, PNG or FITS (read with the FITS options the model's images
were made with, which its file records; else the default :class:`gzmorph.fits.FitsOptions`: one
band, astropy's Lupton stretch).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import InputError
from .sources.validate import INT64_MAX, INTEGER
from .preprocess import (DEFAULT_CROP_FRACTION, DEFAULT_MAX_IMAGE_PIXELS, IMAGE_SUFFIXES, image_stem, image_suffix,
                         load_image)



def _holds_images(folder: Path) -> bool:
    """Whether ``folder`` holds an image file (one that cannot be listed, e.g. lost+found: no)."""
    try:
        return any(image_suffix(q) for q in folder.iterdir())
    except OSError:
        return False


def find_images(items) -> list[Path]:
    """Files as given, folders expanded to their JPEG, PNG and FITS images (sorted; hidden files such
    as macOS's ``._x.png`` left out).  A folder's sub-folders are not read; the log says how many of
    them hold images."""
    import logging

    paths = []
    for item in map(Path, items):
        if item.is_dir():
            entries = [p for p in item.iterdir() if not p.name.startswith(".")]
            found = sorted(p for p in entries if p.is_file() and image_suffix(p))
            nested = [p for p in entries if p.is_dir() and _holds_images(p)]
            if nested:
                logging.getLogger(__name__).warning(
                    "%s: %d sub-folder(s) with images not read (e.g. %s); name them too to include them",
                    item, len(nested), sorted(nested)[0].name)
            if not found:
                raise InputError(f"{item}: folder has no images ({', '.join(IMAGE_SUFFIXES)})"
                                 + (f"; its sub-folders are not read: name them ({sorted(nested)[0]} ...)"
                                    if nested else ""))
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise InputError(f"{item}: no such image file or folder")
    from .manifest import encoding_error

    for p in paths:  # its id is text in every output (a name in another encoding is not)
        if why := encoding_error(str(p)):
            raise InputError(why)
    return paths


def image_ids(paths) -> list:
    """One id per file from its name: all integers when every stem is digits (``123.jpg`` -> 123)
    and fits a 64-bit integer, else all strings (the stems), so that an id column has one type.  Two files with one id are an
    InputError naming them."""
    stems = [image_stem(p) for p in paths]
    # integers only when every name is one as written (007 stays the string "007")
    ids = [int(s) for s in stems] if stems and all(INTEGER.fullmatch(s) for s in stems) else stems
    if ids is not stems and not all(-INT64_MAX - 1 <= i <= INT64_MAX for i in ids):  # 20+ digits: beyond int64
        ids = stems
    seen: dict = {}
    for p, i in zip(paths, ids):
        if i in seen:
            raise InputError(f"{seen[i]} and {p} share the id {i!r}: give them distinct file names")
        seen[i] = p
    return ids


class ImageFiles:
    """A map-style dataset of image files: item ``i`` is ``(i, uint8 S×S×3 pixels or None, error)``."""

    def __init__(self, paths, image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, fits=None):
        self.paths, self.image_size = [str(p) for p in paths], int(image_size)
        self.crop_fraction, self.max_pixels, self.fits = float(crop_fraction), int(max_pixels), fits

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, load_image(self.paths[i], self.image_size, self.crop_fraction, max_pixels=self.max_pixels,
                                 fits=self.fits), None
        except InputError as err:
            return i, None, str(err)


def _collate(items):
    """``(positions, images, [(position, error)])`` of a batch: the decoded ones and the failures."""
    good = [(i, x) for i, x, err in items if err is None]
    bad = [(i, err) for i, _, err in items if err is not None]
    return (np.array([i for i, _ in good], dtype=np.int64),
            np.stack([x for _, x in good]) if good else None, bad)


def worker_context():
    """``fork`` where the platform has it (workers then never re-import a Snakemake script's
    ``__main__``, as :func:`gzmorph.preprocess._pool`); else the platform's default."""
    import multiprocessing

    return multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


def default_workers() -> int:
    """Decoding processes: the CPUs this process may use, less one for the model (at least 0). In a
    rule, the CPUs are its ``threads`` (``OMP_NUM_THREADS``, which :func:`gzmorph.smk.set_threads`
    sets), not the machine's: Snakemake counted the job as that many cores."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    budget = os.environ.get("OMP_NUM_THREADS", "")
    if budget.isdigit() and int(budget) > 0:
        n = min(n, int(budget))
    return max(0, min(8, n - 1))


def image_batches(paths, image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION, batch_size: int = 256,
                  workers: int | None = None, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                  max_bad_fraction: float = 0.0, fits=None):
    """Yield ``(positions, uint8 N×S×S×3 images)`` over ``paths`` in order, decoded by ``workers``
    processes (default :func:`default_workers`; 0: in this process).

    Unreadable images are left out up to ``max_bad_fraction`` of ``paths`` (0: the first one is an
    InputError naming it), as the workflow's ``max_bad_image_fraction``: an error as soon as more are
    seen, and a log line listing them at the end."""
    import logging

    import torch

    from .preprocess import apply_bad_image_policy

    data = ImageFiles(paths, image_size, crop_fraction, max_pixels, fits)
    workers = default_workers() if workers is None else int(workers)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=_collate, prefetch_factor=2 if workers else None,
                                         persistent_workers=False,
                                         multiprocessing_context=worker_context() if workers else None)
    skipped = []
    for pos, images, bad in loader:
        if bad and not max_bad_fraction:
            raise InputError(bad[0][1])
        skipped += bad
        apply_bad_image_policy(skipped, len(data), max_bad_fraction, key="--max-bad-fraction")
        if len(pos):
            yield pos, images
    if skipped:
        logging.getLogger(__name__).warning(
            "%d unreadable image(s) left out (--max-bad-fraction %s): %s%s", len(skipped), max_bad_fraction,
            "; ".join(m for _, m in skipped[:5]), " ..." if len(skipped) > 5 else "")
