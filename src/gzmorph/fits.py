"""FITS cutouts → RGB: 1 or 3 bands read with astropy, the Lupton et al. (2004) asinh stretch.

A FITS image is read from the HDUs that ``extensions`` names (index or ``EXTNAME``, in the order
R, G, B): none named means the first HDU holding image data; one named is a 2-D band or a
3-plane cube (planes R, G, B); three named are three 2-D bands.  The number of bands must be
``bands`` (1 or 3): a single band is shown as grey (the same band in R, G and B).  The bands are
turned into RGB by :func:`astropy.visualization.make_lupton_rgb` with ``minimum``, ``stretch``
and ``Q`` (astropy's own defaults: 0, 5, 8), and flipped so that the first FITS row (the bottom
of the sky image) is the bottom of the picture, as DS9 shows it.

Unreadable, under the bad-image policy of :mod:`gzmorph.preprocess` (each an
:class:`~gzmorph.io.InputError` naming the file): a damaged file, an HDU without data, more than
``max_pixels`` pixels, any NaN or infinite pixel, and a blank cutout (every pixel the same value).
A file whose layout does not match the options stops the run instead (:class:`FitsLayoutError`,
one line naming the file): no image HDU, an absent or table HDU, an image of other than 2 or 3
axes, a band count other than ``bands``, bands of different shapes.  Such a file says that the
options are wrong for the survey's files, not that one cutout is damaged, so
:mod:`gzmorph.sources.table` also reads the first FITS file of a source when the source is read.

astropy is imported when a FITS file is read, not when this module is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .io import InputError

#: suffixes read as FITS (compressed with gzip too)
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")


class FitsLayoutError(InputError):
    """A FITS file whose HDUs or bands do not match the source's ``fits`` options (never left to the
    bad-image policy)."""


def is_fits(path) -> bool:
    return str(path).lower().endswith(FITS_SUFFIXES)


@dataclass
class FitsOptions:
    """How FITS images become RGB (the ``fits:`` block of a table source)."""

    #: HDUs to read, by index or EXTNAME: [] = the first image HDU; one = a band or an R, G, B cube; three = R, G, B
    extensions: list = field(default_factory=list)
    bands: int = 1  # bands each image must have: 1 (grey) or 3
    stretch: float = 5.0  # make_lupton_rgb's linear stretch
    Q: float = 8.0  # make_lupton_rgb's asinh softening
    minimum: float | list = 0.0  # black level: one value, or one per band (R, G, B)

    @classmethod
    def from_config(cls, given: dict | None, where: str = "fits") -> FitsOptions:
        from .settings import options

        opts = options(cls, dict(given or {}), where)
        opts.check(where)
        return opts

    def check(self, where: str = "fits") -> None:
        if self.bands not in (1, 3):
            raise InputError(f"{where}.bands: {self.bands!r} must be 1 or 3")
        if len(self.extensions) not in (0, 1, 3):
            raise InputError(f"{where}.extensions: {self.extensions!r}: name none (the first image HDU), "
                             "one (a band, or an R, G, B cube) or three (R, G, B)")
        if len(self.extensions) == 3 and self.bands != 3:
            raise InputError(f"{where}: three extensions are three bands; set bands: 3")
        if not self.stretch > 0 or not self.Q >= 0:
            raise InputError(f"{where}: stretch ({self.stretch}) must be above 0 and Q ({self.Q}) at least 0")
        if isinstance(self.minimum, list) and len(self.minimum) != 3:
            raise InputError(f"{where}.minimum: one value, or three (R, G, B), not {self.minimum!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def _options(fits) -> FitsOptions:
    if isinstance(fits, FitsOptions):
        return fits
    return FitsOptions.from_config(fits)


def _image_hdus(hdul) -> list[int]:
    return [i for i, h in enumerate(hdul) if getattr(h, "is_image", False) and h.header.get("NAXIS", 0) >= 2]


def _hdu(hdul, ext, path):
    try:
        return hdul[ext]
    except (KeyError, IndexError):
        names = [h.name or str(i) for i, h in enumerate(hdul)]
        raise FitsLayoutError(f"{path}: no HDU {ext!r} (it has {', '.join(names)})") from None


def _declared_shape(hdu) -> tuple[int, ...]:
    """The image's axes as its header declares them (NAXIS1 first; ZNAXISn for a compressed HDU)."""
    h = hdu.header
    key = "ZNAXIS" if "ZNAXIS" in h else "NAXIS"
    return tuple(int(h.get(f"{key}{i}", 0)) for i in range(1, int(h.get(key, 0)) + 1))


def read_bands(path, fits=None, max_pixels: int | None = None) -> np.ndarray:
    """The bands of a FITS file as float32, B×H×W (B = ``fits.bands``); InputError naming the file
    for every problem listed in the module's docstring."""
    from astropy.io import fits as afits

    opts = _options(fits)
    try:
        with afits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
            if opts.extensions:
                hdus = [_hdu(hdul, e, path) for e in opts.extensions]
            else:
                found = _image_hdus(hdul)
                if not found:
                    raise FitsLayoutError(f"{path}: FITS file with no image HDU ({len(hdul)} HDU(s), none with "
                                     "2-D or 3-D image data)")
                hdus = [hdul[found[0]]]
            # the headers are checked before any pixel is decoded: a few kB of gzip can declare GBs
            declared_bands = 0
            for h in hdus:
                if not getattr(h, "is_image", False):
                    raise FitsLayoutError(f"{path}: HDU {h.name or '?'} is a table, not an image")
                shape = _declared_shape(h)
                if len(shape) > 3:
                    raise FitsLayoutError(f"{path}: HDU {h.name or '?'} has {len(shape)} axes; an image band has 2 "
                                          "(or 3 for a cube of bands)")
                declared_bands += shape[2] if len(shape) == 3 else 1
                if max_pixels and len(shape) >= 2 and shape[0] * shape[1] > max_pixels:
                    raise InputError(f"{path}: FITS image of {shape[0] * shape[1]} pixels exceeds "
                                     f"max_image_pixels={max_pixels}")
            if declared_bands != opts.bands:
                raise FitsLayoutError(f"{path}: FITS image with {declared_bands} band(s); the source's fits.bands "
                                      f"is {opts.bands}")
            planes = []
            for h in hdus:
                data = h.data
                if data is None:
                    raise InputError(f"{path}: HDU {h.name or '?'} holds no data")
                data = np.asarray(data, dtype=np.float32)
                if data.ndim == 2:
                    planes.append(data)
                elif data.ndim == 3:
                    planes.extend(data)
                else:
                    raise FitsLayoutError(f"{path}: HDU {h.name or '?'} has {data.ndim} axes; an image band has 2 "
                                     "(or 3 for a cube of bands)")
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except Exception as err:  # noqa: BLE001 - astropy raises many kinds for damaged files
        text = " ".join(str(err).split()) or type(err).__name__
        raise InputError(f"{path}: cannot read FITS file ({text})") from None
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        raise FitsLayoutError(f"{path}: FITS bands of different shapes {sorted(shapes)}")
    cube = np.stack(planes)
    finite = np.isfinite(cube)
    if not finite.all():
        raise InputError(f"{path}: FITS image with {int((~finite).sum())} NaN or infinite pixel(s)")
    if cube.size == 0 or float(cube.max()) == float(cube.min()):
        raise InputError(f"{path}: blank FITS cutout (every pixel is {float(cube.flat[0]) if cube.size else 'absent'})")
    return cube


def lupton_rgb(bands: np.ndarray, fits=None) -> np.ndarray:
    """B×H×W bands (B = 1 or 3, R G B) → H×W×3 uint8 by the Lupton asinh stretch, bottom row last."""
    from astropy.visualization import make_lupton_rgb

    opts = _options(fits)
    r, g, b = (bands[0], bands[0], bands[0]) if len(bands) == 1 else bands
    minimum = np.asarray(opts.minimum, dtype=float) if isinstance(opts.minimum, list) else float(opts.minimum)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 where a pixel is black: astropy makes it 0
        rgb = make_lupton_rgb(r, g, b, minimum=minimum, stretch=opts.stretch, Q=opts.Q)
    return np.ascontiguousarray(np.flipud(rgb))


def load_fits(path, image_size: int, crop_fraction: float, fits=None, max_pixels: int | None = None) -> np.ndarray:
    """A FITS file as an ``image_size``² uint8 RGB image: bands, central crop, Lupton RGB, area resize
    (as :func:`gzmorph.preprocess.load_image` treats a JPEG)."""
    from PIL import Image

    cube = read_bands(path, fits, max_pixels)
    _, h, w = cube.shape
    ch, cw = max(1, round(h * crop_fraction)), max(1, round(w * crop_fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    rgb = lupton_rgb(cube[:, top:top + ch, left:left + cw], fits)
    out = Image.fromarray(rgb).resize((image_size, image_size), Image.Resampling.BOX)
    return np.asarray(out, dtype=np.uint8)
