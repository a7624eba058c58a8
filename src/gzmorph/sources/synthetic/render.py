"""Rendering one simulated galaxy into an SDSS-like RGB stamp, and measuring what a viewer sees.

The components (:mod:`.components`) are drawn in three bands (i, r, g -> R, G, B) convolved
with one Moffat PSF, the galaxy is scaled to its target optimal S/N against unit sky noise and
measured on the noiseless r band, a few field stars and Gaussian sky noise are added, and the
bands are mapped to RGB with an asinh stretch that mimics the SDSS JPEGs.
"""

from __future__ import annotations

import math

import numpy as np

from .components import REF_STAMP, Components, _gsparams, galaxy_components
from .morphology import _loguniform


def render_galaxy(p: dict, stamp: int, rng: np.random.Generator, noise_rng: np.random.Generator):
    """Render galaxy ``p``; return (uint8 RGB image, measurements dict).

    Components -> PSF-convolved bands -> scaled to the target S/N and measured -> field
    stars -> sky noise -> asinh stretch.  ``rng`` draws the random parts of the galaxy's
    light, ``noise_rng`` the sky noise.
    """
    import galsim

    s = stamp / REF_STAMP
    fwhm = p["psf_fwhm"] * s
    psf = galsim.Moffat(beta=3.0, fwhm=fwhm, gsparams=_gsparams())
    bands = _draw(galaxy_components(p, stamp, rng), psf, fwhm, stamp)
    meas = _scale_to_snr(bands, p, s)
    _add_field_stars(bands, p, psf, fwhm, stamp)
    # Gaussian sky noise, sigma = 1 per band (numpy: an order of magnitude faster than
    # galsim.GaussianNoise here, and just as reproducible)
    noisy = bands + noise_rng.standard_normal(bands.shape)
    return _to_rgb(noisy), meas


def _draw(comps: Components, psf, fwhm: float, stamp: int) -> np.ndarray:
    """(3, stamp, stamp) bands: every component with unit flux, PSF-convolved, times its share and colour."""
    import galsim
    from scipy.signal import fftconvolve

    bands = np.zeros((3, stamp, stamp))
    for prof, col, frac in comps.profiles:
        if frac <= 0:
            continue
        img = galsim.Convolve(prof.withFlux(1.0), psf).drawImage(nx=stamp, ny=stamp, scale=1.0).array
        bands += frac * col[:, None, None] * img[None]
    if comps.patterns:
        k = int(math.ceil(4 * fwhm)) * 2 + 1
        psf_img = psf.drawImage(nx=k, ny=k, scale=1.0).array
        psf_img /= psf_img.sum()
        for arr, col, frac in comps.patterns:
            a = comps.grid.bin(arr)
            tot = a.sum()
            if frac <= 0 or tot <= 0:
                continue
            a = fftconvolve(a / tot, psf_img, mode="same")
            bands += frac * col[:, None, None] * a[None]
    return np.clip(bands, 0, None)


def _scale_to_snr(bands: np.ndarray, p: dict, s: float) -> dict:
    """Scale ``bands`` in place to the target S/N of the noiseless r band; return its measurements."""
    r_img = bands[1]
    snr_unit = float(np.sqrt((r_img ** 2).sum()))
    scale = p["snr"] / snr_unit
    bands *= scale
    r_img = bands[1]
    meas = _measure(r_img, p, s)
    meas["flux"] = float(r_img.sum())
    meas["snr"] = float(np.sqrt((r_img ** 2).sum()))
    return meas


def _add_field_stars(bands: np.ndarray, p: dict, psf, fwhm: float, stamp: int) -> None:
    """Add ``p['n_field_stars']`` stars (not part of the galaxy) in the outer frame, in place."""
    if not p["n_field_stars"]:
        return
    frng = np.random.default_rng(p["field_seed"])
    for _ in range(p["n_field_stars"]):
        while True:
            x, y = frng.uniform(-0.47, 0.47, 2) * stamp
            if max(abs(x), abs(y)) > 0.3 * stamp:
                break
        peak = _loguniform(frng, 4.0, 150.0)
        star = psf.withFlux(peak * 1.13 * fwhm ** 2).shift(x, y).drawImage(nx=stamp, ny=stamp, scale=1.0).array
        col = np.exp(frng.normal(0, 0.15, 3)) * np.array([1.1, 1.0, 0.9])
        bands += col[:, None, None] * star[None]


def _measure(r_img, p, s):
    """Observed half-light radius and axis ratio of the (PSF-convolved, noiseless) galaxy."""
    n = r_img.shape[0]
    y, x = np.mgrid[0:n, 0:n]
    tot = r_img.sum()
    xc, yc = (r_img * x).sum() / tot, (r_img * y).sum() / tot
    rad = np.hypot(x - xc, y - yc).ravel()
    order = np.argsort(rad, kind="stable")
    cum = np.cumsum(r_img.ravel()[order])
    hlr = float(rad[order][np.searchsorted(cum, 0.5 * cum[-1])])
    # axis ratio of the outer isophote a viewer sees: above 3 sigma of the sky noise
    # (sigma = 1) and 5 % of the peak; faint, poorly resolved galaxies look rounder
    w = (r_img > max(3.0, 0.05 * r_img.max())).astype(float)
    if w.sum() < 4:
        w = r_img
    wt = w.sum()
    mxx = (w * (x - xc) ** 2).sum() / wt
    myy = (w * (y - yc) ** 2).sum() / wt
    mxy = (w * (x - xc) * (y - yc)).sum() / wt
    tr, det = mxx + myy, mxx * myy - mxy ** 2
    disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 1e-12)
    return {"hlr_obs": hlr, "q_obs": float(math.sqrt(l2 / l1)), "s": s}


def _to_rgb(bands):
    """i, r, g -> R, G, B with an SDSS-like asinh stretch (sky noise ~3 DN, cores ~200 DN)."""
    beta = 12.0
    intensity = np.maximum(bands.mean(axis=0), 1e-6)
    f = 45.0 * np.arcsinh(intensity / beta) / intensity
    rgb = bands * f[None] + np.array([5.0, 5.0, 3.5])[:, None, None]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()
