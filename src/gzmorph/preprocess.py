"""JPEG → uint8 tensor: centre crop, area resize, fast.

Speed comes from reduced-size JPEG decoding: libjpeg can decode at 1/2, 1/4
or 1/8 scale straight from the DCT coefficients (Pillow's ``Image.draft``),
which is several times faster than a full decode when a 424 px image becomes
64 px.  We ask for the smallest scale that still leaves the crop at least
``image_size`` pixels wide, so the final area resize downsamples whenever the crop has that many
pixels; a crop smaller than ``image_size`` (the 212 px centre of a 424 px Kaggle image at the
paper presets' 224 or 240 px) is upsampled, which adds no detail.
Workers are forked processes fed chunks of paths (no GIL contention; unlike
``spawn`` they do not re-import a Snakemake script's ``__main__``); where
``fork`` is unavailable, threads (Pillow releases the GIL while decoding).

FITS files (``.fits``, ``.fit``, ``.fts``, gzipped too) are read by :mod:`gzmorph.fits`: their
bands (1 or 3, from the HDUs the source's ``fits`` options name) become RGB by the Lupton asinh
stretch, then the same central crop and area resize; NaN pixels and blank cutouts are unreadable,
while a file whose HDUs or bands do not match the options stops the run
(:class:`gzmorph.fits.FitsLayoutError`).

Policy for bad images (missing, unreadable, not a JPEG/PNG/FITS, any decoding
failure, or larger than ``max_pixels``): they are collected, not raised one by
one; :func:`apply_bad_image_policy` drops them when they are at most
``max_fraction`` of the images (the report lists them) and raises one error
naming the first few otherwise.

Size limit: an image whose header declares more than ``max_pixels`` pixels
(config ``max_image_pixels``) is unreadable and never decoded, so one huge file
(a decompression bomb) cannot exhaust memory.  Pillow's own limit
(``PIL.Image.MAX_IMAGE_PIXELS``; twice it is an error before the header can be
read) still applies on top: an image above it is unreadable too.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .fits import FITS_SUFFIXES, FitsLayoutError, is_fits, load_fits
from .io import InputError

#: the image files a source may name: JPEG, PNG and FITS
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", *FITS_SUFFIXES)
DEFAULT_CROP_FRACTION = 0.5
#: the largest image (width × height, as its header declares) that is decoded; config max_image_pixels
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000


def load_image(path: str | Path, image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION,
               fast: bool = True, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, fits=None) -> np.ndarray:
    """Decode ``path``, keep the central ``crop_fraction`` of each side, resize to ``image_size``.

    Any failure to read or decode it, including an image of more than ``max_pixels`` pixels,
    is an :class:`InputError` naming the file.  A FITS file is read with the options ``fits``
    (a :class:`gzmorph.fits.FitsOptions` or its config block; ``None``: the defaults).
    """
    if not 0 < crop_fraction <= 1:
        raise InputError(f"crop_fraction {crop_fraction} must be in (0, 1]")
    if is_fits(path):
        return load_fits(path, image_size, crop_fraction, fits, max_pixels)
    try:
        with warnings.catch_warnings():  # max_pixels decides below, not Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise InputError(f"{path}: image of {w}×{h} pixels exceeds max_image_pixels={max_pixels}")
            if fast:
                need = math.ceil(image_size / crop_fraction)
                im.draft("RGB", (need, need))
            im = _as_rgb(im, path)
            w, h = im.size
            cw, ch = w * crop_fraction, h * crop_fraction
            box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
            out = im.resize((image_size, image_size), Image.Resampling.BOX, box=box)
            return np.asarray(out, dtype=np.uint8)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"{path}: image too large to decode ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: cannot decode image ({_one_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - whatever a damaged file makes a decoder raise
        raise InputError(f"{path}: cannot decode image ({type(err).__name__}: {_one_line(err)})") from None


def _as_rgb(im: Image.Image, path) -> Image.Image:
    """8-bit RGB.  Pillow's own conversion clips 16-bit grey (mode I;16) at 255 and truncates 32-bit
    integer or float pixels (I, F): 16-bit grey is scaled by 255/65535, I and F by their own range
    (a blank or non-finite one is an unreadable image)."""
    if im.mode.startswith("I;16"):
        grey = np.asarray(im, dtype=np.float32) * (255 / 65535)
    elif im.mode in ("I", "F"):
        grey = np.asarray(im, dtype=np.float64)
        if not np.isfinite(grey).all():
            raise InputError(f"{path}: image with {int((~np.isfinite(grey)).sum())} NaN or infinite pixel(s)")
        low, high = float(grey.min()), float(grey.max())
        if high == low:
            raise InputError(f"{path}: blank image (every pixel is {low:g})")
        grey = (grey - low) * (255 / (high - low))
    else:
        return im.convert("RGB")
    return Image.fromarray(np.rint(grey).clip(0, 255).astype(np.uint8), "L").convert("RGB")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def image_suffix(path) -> str:
    """The image suffix of ``path`` (lower case; ``.fits.gz`` whole), or ``""`` if it is not an image."""
    name = str(path).lower()
    return next((s for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


def image_stem(path) -> str:
    """The file name without its image suffix (``a.fits.gz`` -> ``a``)."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else Path(path).stem


def _per_path(fits, n: int) -> list:
    """FITS options for each of ``n`` paths: one set for all, or a list of one per path."""
    if isinstance(fits, (list, tuple)):
        if len(fits) != n:
            raise ValueError(f"{len(fits)} FITS options for {n} images")
        return list(fits)
    return [fits] * n


def _load_chunk(paths, image_size, crop_fraction, fast, max_pixels=DEFAULT_MAX_IMAGE_PIXELS, fits=None):
    out = np.zeros((len(paths), image_size, image_size, 3), dtype=np.uint8)
    bad = []
    for i, (p, f) in enumerate(zip(paths, _per_path(fits, len(paths)))):
        try:
            out[i] = load_image(p, image_size, crop_fraction, fast, max_pixels, f)
        except FitsLayoutError:  # the source's fits options are wrong: no image of it would be right
            raise
        except InputError as err:
            bad.append((i, str(err)))
    return out, bad


def _pool(workers: int):
    if "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


def preprocess_stream(paths, image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION,
                      workers: int | None = None, fast: bool = True, progress: bool = True,
                      chunk: int = 32, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, fits=None):
    """Decode many images in parallel, yielding ``(start, block, bad)`` per chunk of ``chunk`` paths
    in order: ``block`` is the chunk's uint8 images (zeros where bad), ``bad`` a list of
    ``(index, message)`` with indices into ``paths``.  At most ``4 × workers`` chunks are in flight,
    so memory does not grow with the number of images.  ``fits``: the FITS options of every path, or
    a list of one per path (sources merged with their own options)."""
    from collections import deque

    from tqdm.auto import tqdm

    paths = [str(p) for p in paths]
    fits = _per_path(fits, len(paths))
    workers = max(1, workers or os.cpu_count() or 1)
    starts = iter(range(0, len(paths), chunk))
    with tqdm(total=len(paths), desc="preprocess", unit="img", disable=not progress,
              mininterval=2.0) as bar, _pool(workers) as pool:
        flight: deque = deque()

        def submit() -> None:
            s = next(starts, None)
            if s is not None:
                flight.append((s, pool.submit(_load_chunk, paths[s:s + chunk], image_size, crop_fraction, fast,
                                              max_pixels, fits[s:s + chunk])))

        for _ in range(4 * workers):
            submit()
        while flight:
            s, fut = flight.popleft()
            block, block_bad = fut.result()
            submit()
            bar.update(len(block))
            yield s, block, [(s + i, msg) for i, msg in block_bad]


def preprocess_images(paths, image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION,
                      workers: int | None = None, fast: bool = True, progress: bool = True,
                      chunk: int = 32, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, fits=None):
    """Decode many images in parallel into memory (:func:`preprocess_stream` collected).

    Returns ``(images, bad)``: ``images`` is N×S×S×3 uint8 (zeros where bad) and
    ``bad`` a list of ``(index, message)`` in index order; an image that cannot be read
    or decoded, or has more than ``max_pixels`` pixels, is bad.
    """
    paths = [str(p) for p in paths]
    images = np.zeros((len(paths), image_size, image_size, 3), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    for s, block, block_bad in preprocess_stream(paths, image_size, crop_fraction, workers, fast, progress, chunk,
                                                 max_pixels, fits):
        images[s:s + len(block)] = block
        bad.extend(block_bad)
    return images, bad


def apply_bad_image_policy(bad, n_total: int, max_fraction: float, where: str = "",
                           key: str = "max_bad_image_fraction") -> None:
    """Raise when bad images are more than ``max_fraction`` (the setting ``key``) of ``n_total``."""
    if not bad:
        return
    frac = len(bad) / max(n_total, 1)
    if frac > max_fraction:
        listed = "; ".join(msg for _, msg in bad[:5])
        raise InputError(f"{where}{len(bad)} of {n_total} images ({frac:.1%}) are missing or "
                         f"undecodable, more than {key}={max_fraction:.1%}: "
                         f"{listed}{' ...' if len(bad) > 5 else ''}")
