"""The light of a simulated galaxy as a list of components, each with its colour and flux share.

Axisymmetric light (Sersic bulges and ellipticals, exponential and edge-on
``InclinedExponential`` disks, bars, lenses, merger companions) is a GalSim profile;
non-axisymmetric light (logarithmic spiral arms, rings, tidal tails, star-forming clumps) is an
array on a supersampled grid in the plane of the disk, projected on the sky.  Colours are
(i, r, g) band weights relative to r: bulges red, disks neutral, arms and clumps blue.
:mod:`.render` draws the components through the PSF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .morphology import _quant_n

REF_STAMP = 160.0  # every length of a galaxy's parameters is in pixels of a 160 px stamp

# colours: (i, r, g) band weights relative to r
_RED = np.array([1.45, 1.0, 0.50])
_DISK = np.array([1.15, 1.0, 0.78])
_BLUE = np.array([0.85, 1.0, 1.20])

_GSPARAMS = None


def _gsparams():
    global _GSPARAMS
    if _GSPARAMS is None:
        import galsim

        _GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3)
    return _GSPARAMS


def _sersic(n, hlr):
    import galsim

    return galsim.Sersic(n, half_light_radius=hlr, trunc=8.0 * hlr, gsparams=_gsparams())


def _project(prof, cos_i, pa):
    """A profile defined in the disk plane, seen at inclination ``acos(cos_i)`` and position angle ``pa``."""
    import galsim

    if cos_i < 0.999:
        prof = prof.shear(q=cos_i, beta=0 * galsim.radians).dilate(math.sqrt(cos_i))
    return prof.rotate(pa * galsim.radians)


class _Grid:
    """Supersampled pixel grid for non-axisymmetric light (arms, rings, tails, clumps)."""

    def __init__(self, size, oversample=2):
        self.size, self.os = size, oversample
        x = (np.arange(size * oversample) + 0.5) / oversample - 0.5 - (size - 1) / 2.0
        self.X, self.Y = np.meshgrid(x, x)

    def disk_coords(self, pa, cos_i, x0=0.0, y0=0.0):
        dx, dy = self.X - x0, self.Y - y0
        c, s = math.cos(pa), math.sin(pa)
        u = dx * c + dy * s
        v = (-dx * s + dy * c) / max(cos_i, 0.05)
        return np.hypot(u, v), np.arctan2(v, u)

    def bin(self, a):
        o = self.os
        return a.reshape(self.size, o, self.size, o).mean(axis=(1, 3))


def _spiral_pattern(r, th, h, m, pitch_deg, sharp, chir, phase, r_in):
    rr = np.maximum(r, 1e-3)
    phi = chir * np.log(rr / h) / math.tan(math.radians(pitch_deg))
    arm = ((1.0 + np.cos(m * (th - phi) + phase)) / 2.0) ** sharp
    return arm * np.exp(-r / (1.15 * h)) * (1.0 - np.exp(-(r / r_in) ** 2))


@dataclass
class Components:
    """A galaxy's light: ``profiles`` (GalSim profile, colour, r-band flux share) and ``patterns``
    (array on ``grid``, colour, r-band flux share); ``grid`` is ``None`` without patterns."""

    profiles: list[tuple] = field(default_factory=list)
    patterns: list[tuple] = field(default_factory=list)
    grid: _Grid | None = None


def galaxy_components(p: dict, stamp: int, rng: np.random.Generator) -> Components:
    """The light components of galaxy ``p`` on a ``stamp`` px frame (``rng``: merger companion, offsets)."""
    import galsim

    s = stamp / REF_STAMP
    hlr = p["hlr"] * s
    jit = np.exp(p["colour_jitter"])
    kind = p["kind"]
    comps = Components()
    if kind == "star":
        comps.profiles.append((galsim.DeltaFunction(), _DISK * jit, 1.0))
    elif kind.startswith("smooth"):
        prof = _sersic(p["sersic_n"], hlr * math.sqrt(p["q"])).shear(q=p["q"], beta=p["pa"] * galsim.radians)
        comps.profiles.append((prof, _RED * jit, 1.0))
    elif kind.startswith("edgeon"):
        _edge_on(comps, p, hlr, jit)
    else:
        comps.grid = _Grid(stamp)
        if kind == "merger":
            _merger(comps, p, hlr, jit, rng)
        else:
            _disk(comps, p, hlr, jit, s, rng)
    return comps


def _edge_on(comps: Components, p: dict, hlr: float, jit: np.ndarray) -> None:
    """A GalSim inclined exponential disk, plus a bulge when there is one."""
    import galsim

    pa = p["pa"]
    h = hlr / 1.678
    disk = galsim.InclinedExponential(math.acos(p["cos_i"]) * galsim.radians, scale_radius=h,
                                      scale_h_over_r=p["h_over_r"], gsparams=_gsparams())
    comps.profiles.append((disk.rotate(pa * galsim.radians), _DISK * jit, 1.0 - p["bt"]))
    if p["bt"] > 0:
        bulge = _sersic(p["bulge_n"], 0.35 * hlr).shear(q=p["bulge_q"], beta=pa * galsim.radians)
        comps.profiles.append((bulge, _RED * jit, p["bt"]))


def _merger(comps: Components, p: dict, hlr: float, jit: np.ndarray, rng: np.random.Generator) -> None:
    """Primary (disk + bulge) and a random secondary about their centre of light, each with a tidal tail."""
    import galsim

    gsp = _gsparams()
    h = hlr / 1.678
    cos_i, pa = p["cos_i"], p["pa"]
    rest = 1.0 - p["tail_frac"]
    f1 = rest / (1.0 + p["flux_ratio"])
    f2 = rest - f1
    d = p["sep"] * hlr
    ca, sa = math.cos(p["sep_angle"]), math.sin(p["sep_angle"])
    w2 = p["flux_ratio"] / (1 + p["flux_ratio"])
    c1 = (-w2 * d * ca, -w2 * d * sa)
    c2 = ((1 - w2) * d * ca, (1 - w2) * d * sa)
    # primary: bulge + disk; secondary: smaller, redder or bluer
    b1 = max(p["bt"], 0.2)
    gal1_d = _project(galsim.Exponential(half_light_radius=hlr, gsparams=gsp), cos_i, pa)
    gal1_b = _sersic(p["bulge_n"], p["bulge_size"] * hlr)
    comps.profiles.append((gal1_d.shift(*c1), _DISK * jit, f1 * (1 - b1)))
    comps.profiles.append((gal1_b.shift(*c1), _RED * jit, f1 * b1))
    n2 = _quant_n(rng.uniform(1.0, 4.0))
    q2 = float(rng.uniform(0.4, 1.0))
    hlr2 = hlr * math.sqrt(p["flux_ratio"]) * rng.uniform(0.6, 1.0)
    col2 = (_RED if n2 >= 2.5 else _BLUE) * np.exp(rng.normal(0, 0.06, 3))
    gal2 = _sersic(n2, hlr2).shear(q=q2, beta=rng.uniform(0, math.pi) * galsim.radians)
    comps.profiles.append((gal2.shift(*c2), col2, f2))
    # tidal tails: one-armed loose spirals around each nucleus
    for (cx, cy), sign in ((c1, 1.0), (c2, -1.0)):
        rt, tt = comps.grid.disk_coords(p["sep_angle"], 1.0, cx, cy)
        tail = _spiral_pattern(rt, tt, 1.3 * h, 1, 40.0, 6.0, sign, p["phase"], 1.5 * h)
        comps.patterns.append((tail, _BLUE * jit, p["tail_frac"] / 2))


@dataclass
class _DiskPlane:
    """A disk's geometry: scale length ``h``, polar coordinates ``r``, ``th`` in its plane on the
    grid, and ``rest``, the flux share outside the bulge that its features take from the disk."""

    h: float
    r: np.ndarray
    th: np.ndarray
    rest: float
    s: float
    jit: np.ndarray


def _disk(comps: Components, p: dict, hlr: float, jit: np.ndarray, s: float, rng: np.random.Generator) -> None:
    """Bulge, then each feature of the disk (each takes its share off the smooth disk), then the disk."""
    import galsim

    cos_i, pa = p["cos_i"], p["pa"]
    h = hlr / 1.678
    x0 = y0 = 0.0
    if p["kind"] == "disturbed":
        ang = rng.uniform(0, 2 * math.pi)
        x0, y0 = p["offset"] * h * math.cos(ang), p["offset"] * h * math.sin(ang)
    r, th = comps.grid.disk_coords(pa, cos_i, x0, y0)
    plane = _DiskPlane(h, r, th, 1.0 - p["bt"], s, jit)
    if p["bt"] > 0:
        bulge = _sersic(p["bulge_n"], p["bulge_size"] * hlr).shear(q=p["bulge_q"], beta=pa * galsim.radians)
        comps.profiles.append((bulge, _RED * jit, p["bt"]))
    smooth_disk = plane.rest
    for feature in (_arms, _bar, _ring, _tail, _clumps, _lens):
        smooth_disk -= feature(comps, p, plane)
    q_disk = p["q"]
    disk = galsim.Exponential(half_light_radius=hlr * math.sqrt(q_disk), gsparams=_gsparams())
    disk = disk.shear(q=q_disk, beta=pa * galsim.radians)
    if p["kind"] == "disturbed":
        disk = disk.shift(x0, y0)
    colour = _BLUE if p["kind"] == "irregular" else _DISK
    comps.profiles.append((disk, colour * jit, max(smooth_disk, 0.05)))


# Each feature adds its components and returns the flux share it takes from the smooth disk
# (0.0 when the galaxy does not have it).
def _arms(comps: Components, p: dict, plane: _DiskPlane) -> float:
    if not p["arm_frac"] > 0:
        return 0.0
    h = plane.h
    arm = _spiral_pattern(plane.r, plane.th, h, p["n_arms"], p["pitch"], p["arm_sharp"], p["chirality"],
                          p["phase"], 1.2 * h if p["bar"] <= 0 else p["bar_len"] * h)
    f = plane.rest * p["arm_frac"]
    comps.patterns.append((arm, _BLUE * plane.jit, f))
    return f


def _bar(comps: Components, p: dict, plane: _DiskPlane) -> float:
    if not p["bar"] > 0:
        return 0.0
    import galsim

    bar_prof = galsim.Sersic(0.5, half_light_radius=0.55 * p["bar_len"] * plane.h, gsparams=_gsparams())
    bar_prof = bar_prof.shear(q=p["bar_q"], beta=p["bar_angle"] * galsim.radians)
    f = p["bar_frac"]
    comps.profiles.append((_project(bar_prof, p["cos_i"], p["pa"]), (_RED + _DISK) / 2 * plane.jit, f))
    return f


def _ring(comps: Components, p: dict, plane: _DiskPlane) -> float:
    if not p.get("ring_frac", 0) > 0:
        return 0.0
    R = p["ring_r"] * plane.h
    ring = np.exp(-0.5 * ((plane.r - R) / (0.18 * R)) ** 2)
    f = plane.rest * p["ring_frac"]
    comps.patterns.append((ring, _BLUE * plane.jit, f))
    return f


def _tail(comps: Components, p: dict, plane: _DiskPlane) -> float:
    if p["kind"] != "disturbed":
        return 0.0
    h = plane.h
    tail = _spiral_pattern(plane.r, plane.th, 1.6 * h, 1, 35.0, 5.0, p["chirality"], p["phase"], 1.8 * h)
    f = plane.rest * p["tail_frac"]
    comps.patterns.append((tail, _BLUE * plane.jit, f))
    return f


def _clumps(comps: Components, p: dict, plane: _DiskPlane) -> float:
    """Gaussian star-forming clumps at random places of the disk (their own seeded generator)."""
    if p["kind"] != "irregular":
        return 0.0
    r, th, h = plane.r, plane.th, plane.h
    cos_i = p["cos_i"]
    crng = np.random.default_rng(p["clump_seed"])
    cl = np.zeros_like(r)
    for _ in range(p["n_clumps"]):
        rc = h * 1.3 * math.sqrt(crng.uniform())
        tc = crng.uniform(0, 2 * math.pi)
        sc = plane.s * crng.uniform(0.7, 1.6)
        # clump position in the disk plane -> distance on the sky
        du = r * np.cos(th) - rc * math.cos(tc)
        dv = (r * np.sin(th) - rc * math.sin(tc)) * cos_i
        cl += crng.uniform(0.4, 1.0) * np.exp(-0.5 * (du ** 2 + dv ** 2) / sc ** 2)
    f = plane.rest * p["clump_frac"]
    comps.patterns.append((cl, _BLUE * plane.jit, f))
    return f


def _lens(comps: Components, p: dict, plane: _DiskPlane) -> float:
    """A flat inner plateau that makes a disk without arms stand out from a smooth galaxy."""
    if p["kind"] not in ("disk", "barred_disk"):
        return 0.0
    import galsim

    lens = galsim.Sersic(0.5, half_light_radius=1.4 * plane.h, gsparams=_gsparams())
    f = plane.rest * p["lens"]
    comps.profiles.append((_project(lens, p["cos_i"], p["pa"]), _DISK * plane.jit, f))
    return f
