"""The built-in synthetic galaxy source: simulated galaxies with known truth.

:func:`generate` writes, into ``out_dir``, exactly the layout of the Kaggle
Galaxy Zoo challenge::

    training_solutions_rev1.csv            GalaxyID, Class1.1 ... Class11.6, true_*
    images_training_rev1/<GalaxyID>.jpg    RGB JPEG, stamp_size x stamp_size

Images
------
Every galaxy is a sum of components drawn with GalSim in three bands (i, r, g
-> R, G, B): Sersic bulges/ellipticals, exponential (or edge-on
``InclinedExponential``) disks, bars; non-axisymmetric light (logarithmic
spiral arms, rings, tidal tails, star-forming clumps) is rendered on a
supersampled grid in the plane of the disk, projected, and convolved with the
same PSF (a Moffat).  Each component has its own colour (bulges red, arms and
clumps blue), the galaxy is scaled to a target optimal S/N against unit sky
noise, Gaussian sky noise is added per band and the bands are mapped to RGB
with an asinh stretch that mimics the SDSS JPEGs (dark, slightly noisy sky, a
few faint field stars).  All lengths are defined for a 160 px reference stamp
and scale with ``stamp_size``, so a stamp looks the same at every size; the
galaxy sits in the central half of the frame like the real images.

Truth and votes
---------------
Every galaxy is described by *latent* features (is a disk/structure visible,
edge-on-ness, bar, arm strength, pitch angle, number of arms, bulge fraction,
bulge shape, odd feature).  :func:`answer_path` turns latents into the answers
of the decision tree; applied to the true latents it gives ``true_answers``
(accepted by :meth:`gzmorph.tree.DecisionTree.ideal_votes`).  The volunteer
model (:func:`simulate_votes`) lets each simulated volunteer *perceive* the
latents -- attenuated and blurred by noise that grows as the galaxy gets
fainter and less resolved (its visibility), measured axis ratio instead of the
intrinsic one, occasional random answers -- and walk the tree with the same
:func:`answer_path`.  Faint or small galaxies thus get split, biased votes
(spiral -> smooth, bar missed, edge-on <-> cigar, odd features missed or
mislabelled); bright, large galaxies get confident, mostly correct votes.
The conditional fractions are converted to the Kaggle cumulative convention
with :meth:`~gzmorph.tree.DecisionTree.to_cumulative`.

Determinism: galaxy ``i`` is drawn from ``numpy.random.SeedSequence([seed,
i])`` alone, so the output does not depend on ``workers``.
"""

from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import InputError, atomic_path
from ..tree import GZ2_TREE, KAGGLE_COLUMNS

CATALOGUE = "training_solutions_rev1.csv"
IMAGES = "images_training_rev1"

DEFAULT_STAMP = 160
MIN_STAMP = 64
MAX_STAMP = 1024
REF_STAMP = 160.0  # every length below is in pixels of a 160 px stamp
ID_OFFSET = 100000
JPEG_QUALITY = 90

#: Morphology kinds and their share of a sample.
KIND_WEIGHTS: dict[str, float] = {
    "smooth_round": 0.13,
    "smooth_inbetween": 0.13,
    "smooth_cigar": 0.09,
    "edgeon_nobulge": 0.07,
    "edgeon_bulge": 0.07,
    "edgeon_boxy": 0.02,
    "spiral": 0.16,
    "barred_spiral": 0.13,
    "disk": 0.04,
    "barred_disk": 0.05,
    "ring": 0.03,
    "merger": 0.03,
    "disturbed": 0.02,
    "irregular": 0.02,
    "star": 0.01,
}
_KINDS = tuple(KIND_WEIGHTS)
_KIND_P = np.array([KIND_WEIGHTS[k] for k in _KINDS]) / sum(KIND_WEIGHTS.values())

TRUTH_COLUMNS = [
    "true_answers", "true_morphology", "true_kind",
    "true_sersic_n", "true_axis_ratio", "true_hlr_px", "true_flux", "true_snr",
    "true_n_arms", "true_pitch_deg", "true_bar", "true_bulge_fraction",
    "true_ring", "true_odd", "true_odd_feature", "true_inclination_deg",
    "true_position_angle_deg", "true_psf_fwhm_px", "true_visibility",
]

# thresholds shared by the truth and by the volunteers' perception
Q_ROUND, Q_CIGAR = 0.80, 0.42  # axis ratio: round above, cigar below
PITCH_TIGHT, PITCH_LOOSE = 17.0, 27.0  # degrees
BT_EDGES = (0.03, 0.15, 0.35)  # bulge fraction: none / just noticeable / obvious / dominant
BT_EDGEON_NONE = 0.05

_ODD_TYPES = ("ring", "lens", "disturbed", "irregular", "other", "merger", "dust_lane")
_ODD_COLUMN = {t: f"Class8.{i + 1}" for i, t in enumerate(_ODD_TYPES)}

# colours: (i, r, g) band weights relative to r
_RED = np.array([1.45, 1.0, 0.50])
_DISK = np.array([1.15, 1.0, 0.78])
_BLUE = np.array([0.85, 1.0, 1.20])


# --------------------------------------------------------------------- truth
def answer_path(lat: dict, lapse=None) -> list[str]:
    """Answers (Kaggle columns, in walking order) of an observer seeing latents ``lat``.

    ``lat`` keys: ``star`` (bool), ``F`` (structure visible, >0.5 = features
    or disk), ``q`` (axis ratio), ``E`` (edge-on-ness), ``bar``, ``arms``,
    ``pitch`` (deg), ``n_arms`` (0 = can't tell, 5 = more than four), ``bt``
    (bulge fraction), ``boxy`` (bool), ``odd`` and ``odd_type``.  ``lapse`` is
    an optional ``f(question, answer) -> answer`` (volunteer mistakes).
    """
    ans = (lambda q, a: a) if lapse is None else lapse
    path = []
    q1 = "Class1.3" if lat["star"] else ("Class1.2" if lat["F"] > 0.5 else "Class1.1")
    q1 = ans(1, q1)
    path.append(q1)
    if q1 == "Class1.1":
        q = lat["q"]
        path.append(ans(7, "Class7.1" if q >= Q_ROUND else ("Class7.3" if q < Q_CIGAR else "Class7.2")))
    elif q1 == "Class1.2":
        q2 = ans(2, "Class2.1" if lat["E"] > 0.5 else "Class2.2")
        path.append(q2)
        if q2 == "Class2.1":
            if lat["bt"] < BT_EDGEON_NONE:
                a9 = "Class9.3"
            else:
                a9 = "Class9.2" if lat["boxy"] else "Class9.1"
            path.append(ans(9, a9))
        else:
            path.append(ans(3, "Class3.1" if lat["bar"] > 0.5 else "Class3.2"))
            q4 = ans(4, "Class4.1" if lat["arms"] > 0.5 else "Class4.2")
            path.append(q4)
            if q4 == "Class4.1":
                p = lat["pitch"]
                path.append(ans(10, "Class10.1" if p < PITCH_TIGHT else ("Class10.3" if p >= PITCH_LOOSE
                                                                         else "Class10.2")))
                m = int(lat["n_arms"])
                path.append(ans(11, "Class11.6" if m <= 0 else f"Class11.{min(m, 5)}"))
            bt = lat["bt"]
            k = int(np.searchsorted(BT_EDGES, bt, side="right"))
            path.append(ans(5, f"Class5.{k + 1}"))
    if lat["odd"] > 0.5:
        path.append(ans(6, "Class6.1"))
    else:
        path.append(ans(6, "Class6.2"))
    if path[-1] == "Class6.1":
        path.append(ans(8, _ODD_COLUMN.get(lat["odd_type"], "Class8.5")))
    return path


_ANSWER_LABELS = {a.kaggle: a for a in GZ2_TREE.answers}
_QUESTION_ANSWERS = {q.number: [a.kaggle for a in q.answers] for q in GZ2_TREE.questions}


def morphology_text(kind: str, lat: dict) -> str:
    """Human-readable description of the true morphology."""
    if kind == "star":
        return "star (point source)"
    if kind.startswith("smooth"):
        shape = {"smooth_round": "completely round", "smooth_inbetween": "in-between",
                 "smooth_cigar": "cigar-shaped"}[kind]
        return f"smooth {shape} (Sersic n={lat['sersic_n']:.2f}, b/a={lat['q']:.2f})"
    if kind.startswith("edgeon"):
        bulge = {"edgeon_nobulge": "no bulge", "edgeon_bulge": "rounded bulge",
                 "edgeon_boxy": "boxy bulge"}[kind]
        return f"edge-on disk, {bulge}"
    bar = "barred " if lat["bar"] > 0.5 else ""
    if lat["arms"] > 0.5:
        wind = "tight" if lat["pitch"] < PITCH_TIGHT else ("loose" if lat["pitch"] >= PITCH_LOOSE else "medium")
        n = int(lat["n_arms"])
        text = f"{bar}spiral, {n} arm{'s' if n > 1 else ''}, {wind} winding"
    else:
        text = f"{bar}disk without spiral arms"
    if kind == "ring":
        text = f"ring galaxy ({text})"
    elif kind == "merger":
        text = "merger (two overlapping galaxies)"
    elif kind == "disturbed":
        text = f"disturbed {text} with tidal tail"
    elif kind == "irregular":
        text = "irregular (clumpy, no bulge)"
    return text


# ------------------------------------------------------------ random params
def _loguniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _quant_n(n):
    return float(min(6.0, max(0.5, round(n * 2) / 2)))


def sample_galaxy(rng: np.random.Generator) -> dict:
    """Draw the kind, physical parameters and true latents of one galaxy (reference units)."""
    kind = _KINDS[int(rng.choice(len(_KINDS), p=_KIND_P))]
    # GZ2 cutouts are scaled to the galaxy's Petrosian radius, so every galaxy fills a
    # similar share of the frame; what varies is the resolution (half-light radius over
    # PSF FWHM) and the brightness, which are correlated (near galaxies are both).
    hlr = _loguniform(rng, 9.0, 20.0)  # along the major axis
    u_bright = rng.uniform()
    u_snr = min(1.0, max(0.0, 0.6 * u_bright + 0.4 * rng.uniform()))
    snr = float(math.exp(math.log(40.0) + u_snr * (math.log(2500.0) - math.log(40.0))))
    u_res = min(1.0, max(0.0, 0.6 * u_bright + 0.4 * rng.uniform()))
    res = float(math.exp(math.log(1.4) + u_res * (math.log(7.0) - math.log(1.4))))
    p = {
        "kind": kind, "hlr": hlr, "snr": snr,
        "psf_fwhm": min(6.0, max(1.0, hlr / res)),
        "pa": float(rng.uniform(0, math.pi)),
        "colour_jitter": rng.normal(0, 0.06, size=3),
        "sersic_n": float("nan"), "q": 1.0, "cos_i": 1.0, "bt": 0.0, "bulge_n": float("nan"),
        "bar": 0.0, "arms": 0.0, "n_arms": 0, "pitch": float("nan"), "arm_frac": 0.0,
        "ring": 0, "odd": 0.0, "odd_type": "none", "F": 0.0, "E": 0.0, "boxy": False, "star": False,
        "n_field_stars": int(rng.integers(0, 4)), "field_seed": int(rng.integers(2**31)),
    }
    disk_like = False
    if kind.startswith("smooth"):
        lo, hi = {"smooth_round": (0.81, 1.0), "smooth_inbetween": (0.44, 0.69),
                  "smooth_cigar": (0.12, 0.28)}[kind]
        p["q"] = float(rng.uniform(lo, hi))
        if kind == "smooth_cigar":
            p["sersic_n"] = _quant_n(rng.uniform(1.0, 3.0))
        else:
            p["sersic_n"] = _quant_n(rng.uniform(2.0, 5.5))
        p["bt"] = 1.0
    elif kind.startswith("edgeon"):
        p["cos_i"] = math.cos(math.radians(rng.uniform(84.0, 90.0)))
        p["h_over_r"] = float(rng.uniform(0.07, 0.13))
        p["E"], p["F"] = 1.0, float(rng.uniform(0.85, 1.0))
        if kind == "edgeon_bulge":
            p["bt"], p["bulge_n"], p["bulge_q"] = float(rng.uniform(0.15, 0.45)), _quant_n(rng.uniform(1.5, 3.5)), \
                float(rng.uniform(0.7, 0.95))
        elif kind == "edgeon_boxy":
            p["bt"], p["bulge_n"], p["bulge_q"] = float(rng.uniform(0.15, 0.35)), 0.75, float(rng.uniform(0.55, 0.7))
            p["boxy"] = True
        sin_i = math.sqrt(1 - p["cos_i"] ** 2)
        p["q"] = math.sqrt(p["cos_i"] ** 2 + (1.6 * p["h_over_r"] * sin_i) ** 2)
        p["sersic_n"] = p["bulge_n"]
    elif kind == "star":
        p["star"] = True
        p["hlr"] = 0.0
        p["n_field_stars"] = 0
    else:
        disk_like = True
    if disk_like:
        p["cos_i"] = float(rng.uniform(0.55, 1.0)) if kind not in ("ring", "disturbed") \
            else float(rng.uniform(0.7, 1.0))
        p["q"] = math.sqrt(p["cos_i"] ** 2 + (0.12 ** 2) * (1 - p["cos_i"] ** 2))
        p["bulge_n"] = _quant_n(rng.uniform(1.0, 4.0))
        p["bulge_q"] = float(rng.uniform(0.75, 1.0))
        p["bulge_size"] = float(rng.uniform(0.15, 0.35))
        p["bt"] = float(rng.uniform(0.0, 0.5))
        p["chirality"] = float(rng.choice([-1.0, 1.0]))
        p["phase"] = float(rng.uniform(0, 2 * math.pi))
        if kind in ("spiral", "barred_spiral"):
            p["n_arms"] = int(rng.choice([1, 2, 3, 4], p=[0.08, 0.55, 0.2, 0.17]))
            p["pitch"] = float(rng.uniform(7.0, 42.0))
            p["arm_frac"] = float(rng.uniform(0.35, 0.65))
            p["arm_sharp"] = float(rng.uniform(1.5, 4.0))
            p["arms"] = 0.45 + p["arm_frac"]
            p["F"] = min(1.0, 0.1 + p["arms"])
        if kind in ("barred_spiral", "barred_disk") or (kind == "ring" and rng.uniform() < 0.5):
            p["bar"] = float(rng.uniform(0.62, 1.0))
            p["bar_frac"] = 0.06 + 0.14 * (p["bar"] - 0.6) / 0.4
            p["bar_len"] = float(rng.uniform(0.9, 1.6))  # in disk scale lengths (half length)
            p["bar_q"] = float(rng.uniform(0.2, 0.33))
            p["bar_angle"] = float(rng.uniform(0, math.pi))
            p["bt"] = min(p["bt"], 0.35)
        if kind in ("disk", "barred_disk"):
            p["bt"] = float(rng.uniform(0.15, 0.5))
            p["F"] = float(rng.uniform(0.75, 0.9)) if kind == "disk" else max(0.8, p["bar"])
            p["lens"] = float(rng.uniform(0.15, 0.3))
        if kind == "ring":
            p["ring"] = 1
            p["ring_frac"] = float(rng.uniform(0.18, 0.32))
            p["ring_r"] = float(rng.uniform(1.6, 2.6))  # disk scale lengths
            p["odd"], p["odd_type"] = float(rng.uniform(0.7, 1.0)), "ring"
            p["F"] = 0.9
        if kind == "merger":
            p["odd"], p["odd_type"], p["F"] = float(rng.uniform(0.75, 1.0)), "merger", 0.95
            p["sep"] = float(rng.uniform(0.9, 1.8))  # in units of hlr
            p["flux_ratio"] = float(rng.uniform(0.35, 1.0))
            p["sep_angle"] = float(rng.uniform(0, 2 * math.pi))
            p["tail_frac"] = float(rng.uniform(0.08, 0.2))
            p["hlr"] = 0.7 * hlr
        if kind == "disturbed":
            p["odd"], p["odd_type"], p["F"] = float(rng.uniform(0.7, 1.0)), "disturbed", 0.9
            p["tail_frac"] = float(rng.uniform(0.15, 0.3))
            p["offset"] = float(rng.uniform(0.2, 0.5))
        if kind == "irregular":
            p["odd"], p["odd_type"], p["F"] = float(rng.uniform(0.7, 1.0)), "irregular", 0.9
            p["bt"] = 0.0
            p["n_clumps"] = int(rng.integers(3, 9))
            p["clump_frac"] = float(rng.uniform(0.3, 0.55))
            p["clump_seed"] = int(rng.integers(2**31))
        if p["bt"] > 0:
            p["sersic_n"] = p["bulge_n"]
    return p


# ---------------------------------------------------------------- rendering
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


def render_galaxy(p: dict, stamp: int, rng: np.random.Generator, noise_rng: np.random.Generator):
    """Render galaxy ``p``; return (uint8 RGB image, measurements dict)."""
    import galsim
    from scipy.signal import fftconvolve

    s = stamp / REF_STAMP
    gsp = _gsparams()
    fwhm = p["psf_fwhm"] * s
    psf = galsim.Moffat(beta=3.0, fwhm=fwhm, gsparams=gsp)
    kind = p["kind"]
    pa = p["pa"]
    hlr = p["hlr"] * s
    jit = np.exp(p["colour_jitter"])

    gs_comps: list[tuple] = []  # (profile with unit flux, colour, r-band flux fraction)
    grid_comps: list[tuple] = []  # (grid array, colour, fraction)
    grid = None

    def need_grid():
        nonlocal grid
        if grid is None:
            grid = _Grid(stamp)
        return grid

    if kind == "star":
        gs_comps.append((galsim.DeltaFunction(), _DISK * jit, 1.0))
    elif kind.startswith("smooth"):
        prof = _sersic(p["sersic_n"], hlr * math.sqrt(p["q"])).shear(q=p["q"], beta=pa * galsim.radians)
        gs_comps.append((prof, _RED * jit, 1.0))
    elif kind.startswith("edgeon"):
        h = hlr / 1.678
        disk = galsim.InclinedExponential(math.acos(p["cos_i"]) * galsim.radians, scale_radius=h,
                                          scale_h_over_r=p["h_over_r"], gsparams=gsp)
        gs_comps.append((disk.rotate(pa * galsim.radians), _DISK * jit, 1.0 - p["bt"]))
        if p["bt"] > 0:
            bulge = _sersic(p["bulge_n"], 0.35 * hlr).shear(q=p["bulge_q"], beta=pa * galsim.radians)
            gs_comps.append((bulge, _RED * jit, p["bt"]))
    else:
        h = hlr / 1.678
        cos_i = p["cos_i"]
        q_disk = p["q"]
        g = need_grid()
        x0 = y0 = 0.0
        if kind == "disturbed":
            ang = rng.uniform(0, 2 * math.pi)
            x0, y0 = p["offset"] * h * math.cos(ang), p["offset"] * h * math.sin(ang)
        r, th = g.disk_coords(pa, cos_i, x0, y0)
        bt = p["bt"]
        rest = 1.0 - bt
        if kind == "merger":
            rest = 1.0 - p["tail_frac"]
            f1 = rest / (1.0 + p["flux_ratio"])
            f2 = rest - f1
            d = p["sep"] * hlr
            ca, sa = math.cos(p["sep_angle"]), math.sin(p["sep_angle"])
            w2 = p["flux_ratio"] / (1 + p["flux_ratio"])
            c1 = (-w2 * d * ca, -w2 * d * sa)
            c2 = ((1 - w2) * d * ca, (1 - w2) * d * sa)
            # primary: bulge + disk; secondary: smaller, redder or bluer
            b1 = max(bt, 0.2)
            gal1_d = _project(galsim.Exponential(half_light_radius=hlr, gsparams=gsp), cos_i, pa)
            gal1_b = _sersic(p["bulge_n"], p["bulge_size"] * hlr)
            gs_comps.append((gal1_d.shift(*c1), _DISK * jit, f1 * (1 - b1)))
            gs_comps.append((gal1_b.shift(*c1), _RED * jit, f1 * b1))
            n2 = _quant_n(rng.uniform(1.0, 4.0))
            q2 = float(rng.uniform(0.4, 1.0))
            hlr2 = hlr * math.sqrt(p["flux_ratio"]) * rng.uniform(0.6, 1.0)
            col2 = (_RED if n2 >= 2.5 else _BLUE) * np.exp(rng.normal(0, 0.06, 3))
            gal2 = _sersic(n2, hlr2).shear(q=q2, beta=rng.uniform(0, math.pi) * galsim.radians)
            gs_comps.append((gal2.shift(*c2), col2, f2))
            # tidal tails: one-armed loose spirals around each nucleus
            for (cx, cy), sign in ((c1, 1.0), (c2, -1.0)):
                rt, tt = g.disk_coords(p["sep_angle"], 1.0, cx, cy)
                tail = _spiral_pattern(rt, tt, 1.3 * h, 1, 40.0, 6.0, sign, p["phase"], 1.5 * h)
                grid_comps.append((tail, _BLUE * jit, p["tail_frac"] / 2))
        else:
            if bt > 0:
                bulge = _sersic(p["bulge_n"], p["bulge_size"] * hlr).shear(q=p["bulge_q"], beta=pa * galsim.radians)
                gs_comps.append((bulge, _RED * jit, bt))
            smooth_disk = rest
            if p["arm_frac"] > 0:
                arm = _spiral_pattern(r, th, h, p["n_arms"], p["pitch"], p["arm_sharp"], p["chirality"],
                                      p["phase"], 1.2 * h if p["bar"] <= 0 else p["bar_len"] * h)
                f = rest * p["arm_frac"]
                grid_comps.append((arm, _BLUE * jit, f))
                smooth_disk -= f
            if p["bar"] > 0:
                bar_prof = galsim.Sersic(0.5, half_light_radius=0.55 * p["bar_len"] * h, gsparams=gsp)
                bar_prof = bar_prof.shear(q=p["bar_q"], beta=p["bar_angle"] * galsim.radians)
                f = p["bar_frac"]
                gs_comps.append((_project(bar_prof, cos_i, pa), (_RED + _DISK) / 2 * jit, f))
                smooth_disk -= f
            if p.get("ring_frac", 0) > 0:
                R = p["ring_r"] * h
                ring = np.exp(-0.5 * ((r - R) / (0.18 * R)) ** 2)
                f = rest * p["ring_frac"]
                grid_comps.append((ring, _BLUE * jit, f))
                smooth_disk -= f
            if kind == "disturbed":
                tail = _spiral_pattern(r, th, 1.6 * h, 1, 35.0, 5.0, p["chirality"], p["phase"], 1.8 * h)
                f = rest * p["tail_frac"]
                grid_comps.append((tail, _BLUE * jit, f))
                smooth_disk -= f
            if kind == "irregular":
                crng = np.random.default_rng(p["clump_seed"])
                cl = np.zeros_like(r)
                for _ in range(p["n_clumps"]):
                    rc = h * 1.3 * math.sqrt(crng.uniform())
                    tc = crng.uniform(0, 2 * math.pi)
                    sc = s * crng.uniform(0.7, 1.6)
                    # clump position in the disk plane -> distance on the sky
                    du = r * np.cos(th) - rc * math.cos(tc)
                    dv = (r * np.sin(th) - rc * math.sin(tc)) * cos_i
                    cl += crng.uniform(0.4, 1.0) * np.exp(-0.5 * (du ** 2 + dv ** 2) / sc ** 2)
                f = rest * p["clump_frac"]
                grid_comps.append((cl, _BLUE * jit, f))
                smooth_disk -= f
            if kind in ("disk", "barred_disk"):
                # a lens: flat inner plateau that makes the disk stand out from a smooth galaxy
                lens = galsim.Sersic(0.5, half_light_radius=1.4 * h, gsparams=gsp)
                f = rest * p["lens"]
                gs_comps.append((_project(lens, cos_i, pa), _DISK * jit, f))
                smooth_disk -= f
            disk = galsim.Exponential(half_light_radius=hlr * math.sqrt(q_disk), gsparams=gsp)
            disk = disk.shear(q=q_disk, beta=pa * galsim.radians)
            if kind == "disturbed":
                disk = disk.shift(x0, y0)
            gs_comps.append((disk, (_BLUE if kind == "irregular" else _DISK) * jit, max(smooth_disk, 0.05)))

    # ---- draw every component with unit flux, PSF-convolved
    bands = np.zeros((3, stamp, stamp))
    for prof, col, frac in gs_comps:
        if frac <= 0:
            continue
        img = galsim.Convolve(prof.withFlux(1.0), psf).drawImage(nx=stamp, ny=stamp, scale=1.0).array
        bands += frac * col[:, None, None] * img[None]
    if grid_comps:
        k = int(math.ceil(4 * fwhm)) * 2 + 1
        psf_img = psf.drawImage(nx=k, ny=k, scale=1.0).array
        psf_img /= psf_img.sum()
        for arr, col, frac in grid_comps:
            a = grid.bin(arr)
            tot = a.sum()
            if frac <= 0 or tot <= 0:
                continue
            a = fftconvolve(a / tot, psf_img, mode="same")
            bands += frac * col[:, None, None] * a[None]
    bands = np.clip(bands, 0, None)

    # ---- measure (noiseless r band), scale to the target S/N
    r_img = bands[1]
    snr_unit = float(np.sqrt((r_img ** 2).sum()))
    scale = p["snr"] / snr_unit
    bands *= scale
    r_img = bands[1]
    meas = _measure(r_img, p, s)
    meas["flux"] = float(r_img.sum())
    meas["snr"] = float(np.sqrt((r_img ** 2).sum()))

    # ---- field stars (not part of the galaxy), sky noise, stretch
    if p["n_field_stars"]:
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
    # Gaussian sky noise, sigma = 1 per band (numpy: an order of magnitude faster than
    # galsim.GaussianNoise here, and just as reproducible)
    noisy = bands + noise_rng.standard_normal(bands.shape)
    return _to_rgb(noisy), meas


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


# ------------------------------------------------------------ the volunteers
def visibility(snr: float, hlr_px: float, psf_fwhm_px: float) -> float:
    """How easily features are seen: falls with lower S/N and with smaller size relative to the PSF."""
    if hlr_px <= 0:
        return 0.0
    a = snr ** 2 / (snr ** 2 + 120.0 ** 2)
    res = hlr_px / psf_fwhm_px
    b = res ** 2 / (res ** 2 + 1.3 ** 2)
    return float(a * b)


def true_latents(p: dict) -> dict:
    return {"star": bool(p["star"]), "F": p["F"], "q": p["q"], "E": p["E"], "bar": p["bar"], "arms": p["arms"],
            "pitch": p["pitch"] if p["arms"] > 0 else 25.0, "n_arms": p["n_arms"], "bt": p["bt"],
            "boxy": bool(p["boxy"]), "odd": p["odd"], "odd_type": p["odd_type"], "sersic_n": p["sersic_n"]}


LAPSE_RATE = 0.06  # chance that a volunteer picks a random answer to a question
ODD_HAPPY = 0.10  # chance that a volunteer calls an ordinary galaxy odd

_ODD_CONFUSION = {
    "ring": ("lens", "other", "irregular"),
    "merger": ("disturbed", "irregular", "other"),
    "disturbed": ("merger", "irregular", "other"),
    "irregular": ("disturbed", "other", "merger"),
    "none": ("other", "disturbed", "lens", "irregular"),
}


def simulate_votes(p: dict, meas: dict, rng: np.random.Generator, n_volunteers: int) -> dict:
    """Conditional vote fractions (Kaggle columns) of simulated volunteers for galaxy ``p``."""
    lat = true_latents(p)
    vis = meas["visibility"]
    nv = max(3, int(round(n_volunteers * rng.uniform(0.8, 1.2))))
    skill = np.clip(rng.normal(1.0, 0.12, nv), 0.6, 1.2)
    # some volunteers see structure everywhere, some nowhere
    habit = rng.uniform(size=nv)
    f_bias = rng.normal(0.0, 0.12, nv) + np.where(habit < 0.15, 0.4, np.where(habit > 0.92, -0.3, 0.0))
    vk = np.clip(vis * skill, 0.0, 1.0)
    z = rng.normal(size=(nv, 10))
    u = rng.uniform(size=(nv, 10))
    lapse_u = rng.uniform(size=(nv, 12))
    lapse_pick = rng.uniform(size=(nv, 12))
    q_obs = meas["q_obs"]
    small = meas["hlr_obs"] < 1.1 * meas["psf_fwhm"]
    counts = {c: 0 for c in KAGGLE_COLUMNS}
    for k in range(nv):
        v = vk[k]
        blur = 1.0 - v
        if lat["star"]:
            star = u[k, 0] < 0.92
        else:
            star = small and u[k, 0] < 0.12 * blur
        perc = {
            "star": star,
            # a thin edge-on disk is seen as a disk even when faint; other structure fades
            "F": lat["F"] * ((0.65 + 0.35 * v) if lat["E"] >= 1.0 else (0.5 + 0.5 * v))
            + f_bias[k] + z[k, 0] * (0.1 + 0.25 * blur),
            "q": min(1.0, max(0.05, q_obs + z[k, 1] * (0.07 + 0.2 * blur))),
            "E": (lat["E"] * (0.6 + 0.4 * v) if lat["E"] >= 1.0 else float(np.clip((0.47 - q_obs) / 0.25, 0, 1)))
            + z[k, 2] * (0.08 + 0.2 * blur),
            "bar": lat["bar"] * (0.35 + 0.65 * v) + z[k, 3] * (0.08 + 0.15 * blur),
            "arms": lat["arms"] * (0.4 + 0.6 * v) + z[k, 4] * (0.08 + 0.2 * blur),
            "pitch": (lat["pitch"] + z[k, 5] * (3.0 + 9.0 * blur)) if lat["arms"] > 0 else 5 + 40 * u[k, 5],
            "bt": max(0.0, lat["bt"] + z[k, 6] * (0.04 + 0.1 * blur)),
            "boxy": (u[k, 7] < 0.45 + 0.45 * v) if lat["boxy"] else (u[k, 7] < 0.05),
            "odd": lat["odd"] * (0.4 + 0.6 * v) + z[k, 8] * (0.1 + 0.15 * blur)
            + (1.0 if u[k, 4] < ODD_HAPPY else 0.0),
        }
        # number of arms: can't tell when faint, otherwise right or off by one
        if lat["n_arms"] > 0 and u[k, 6] > 0.08 + 0.5 * blur:
            m = lat["n_arms"]
            if u[k, 9] > 0.55 + 0.4 * v:
                m = max(1, m + (1 if z[k, 9] > 0 else -1))
            perc["n_arms"] = m
        else:
            perc["n_arms"] = 0 if u[k, 9] < 0.6 else int(1 + 4 * u[k, 6]) % 5 + 1
        # odd feature: right type, or a plausible confusion
        if lat["odd"] > 0.5 and u[k, 8] < 0.5 + 0.45 * v:
            perc["odd_type"] = lat["odd_type"]
        else:
            opts = _ODD_CONFUSION.get(lat["odd_type"], _ODD_CONFUSION["none"])
            if lat["E"] >= 1.0 and lat["odd"] <= 0.5:
                opts = ("dust_lane", "other", "dust_lane")
            perc["odd_type"] = opts[int(u[k, 8] * 997) % len(opts)]

        def lapse(qn, a, k=k):
            if lapse_u[k, qn] < LAPSE_RATE:
                choices = _QUESTION_ANSWERS[qn]
                return choices[int(lapse_pick[k, qn] * len(choices))]
            return a

        for a in answer_path(perc, lapse):
            counts[a] += 1
    # conditional fractions: answers of a question over the volunteers who reached it
    out = {}
    for q in GZ2_TREE.questions:
        tot = sum(counts[a.kaggle] for a in q.answers)
        for a in q.answers:
            out[a.kaggle] = counts[a.kaggle] / tot if tot else 0.0
    return out


# -------------------------------------------------------------- one galaxy
def _galaxy_rng(seed: int, index: int):
    ss = np.random.SeedSequence([int(seed), int(index)])
    return tuple(np.random.default_rng(s) for s in ss.spawn(4))  # params, render, votes, noise


def _make_galaxy(task):
    index, seed, stamp, n_volunteers, img_dir = task
    rng_p, rng_r, rng_v, rng_n = _galaxy_rng(seed, index)
    p = sample_galaxy(rng_p)
    rgb, meas = render_galaxy(p, stamp, rng_r, rng_n)
    s = meas["s"]
    meas["psf_fwhm"] = p["psf_fwhm"] * s
    meas["visibility"] = visibility(meas["snr"], meas["hlr_obs"], meas["psf_fwhm"])
    votes = simulate_votes(p, meas, rng_v, n_volunteers)
    gid = ID_OFFSET + index
    _write_jpeg(rgb, Path(img_dir) / f"{gid}.jpg")
    lat = true_latents(p)
    truth = answer_path(lat)
    kind = p["kind"]
    row = {
        "GalaxyID": gid,
        **votes,
        "true_answers": ";".join(truth),
        "true_morphology": morphology_text(kind, lat),
        "true_kind": kind,
        "true_sersic_n": p["sersic_n"],
        "true_axis_ratio": round(p["q"], 6),
        "true_hlr_px": round(meas["hlr_obs"], 4) if not p["star"] else 0.0,
        "true_flux": round(meas["flux"], 4),
        "true_snr": round(meas["snr"], 4),
        "true_n_arms": int(p["n_arms"]),
        "true_pitch_deg": round(p["pitch"], 4) if p["arms"] > 0 else float("nan"),
        "true_bar": int(p["bar"] > 0.5),
        "true_bulge_fraction": round(p["bt"], 6),
        "true_ring": int(p["ring"]),
        "true_odd": int(p["odd"] > 0.5),
        "true_odd_feature": p["odd_type"],
        "true_inclination_deg": round(math.degrees(math.acos(min(1.0, p["cos_i"]))), 4)
        if not (kind.startswith("smooth") or kind == "star") else float("nan"),
        "true_position_angle_deg": round(math.degrees(p["pa"]), 4),
        "true_psf_fwhm_px": round(meas["psf_fwhm"], 4),
        "true_visibility": round(meas["visibility"], 6),
    }
    return row


def _write_jpeg(rgb, path: Path):
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(rgb, mode="RGB").save(tmp, format="JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, path)


# ------------------------------------------------------------------- public
def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"synthetic source: {name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise InputError(f"synthetic source: {name} must be {rng}, got {value}")
    return int(value)


def generate(out_dir: str | Path, n: int, seed: int, *, stamp_size: int = DEFAULT_STAMP,
             n_volunteers: int = 40, workers: int | None = None, progress: bool = True,
             **options) -> Path:
    """Simulate ``n`` galaxies into ``out_dir`` in the Kaggle layout; return ``out_dir``.

    Same ``seed`` -> identical catalogue and pixels, whatever ``workers``.
    ``workers`` defaults to the number of usable cores; ``progress`` shows a
    tqdm bar on stderr.  The catalogue is written last and atomically.
    """
    if options:
        raise InputError(f"synthetic source: unknown option(s) {', '.join(sorted(options))}; "
                         "known: stamp_size, n_volunteers, workers, progress")
    n = _check_int("n", n, 1)
    seed = _check_int("seed", seed, 0)
    stamp_size = _check_int("stamp_size", stamp_size, MIN_STAMP, MAX_STAMP)
    n_volunteers = _check_int("n_volunteers", n_volunteers, 3, 10000)
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            workers = os.cpu_count() or 1
    workers = _check_int("workers", workers, 1)
    out_dir = Path(out_dir)
    img_dir = out_dir / IMAGES
    img_dir.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    tasks = [(i, seed, stamp_size, n_volunteers, str(img_dir)) for i in range(n)]
    bar = tqdm(total=n, desc="synthetic galaxies", unit="gal", file=sys.stderr, disable=not progress)
    rows = []
    try:
        if workers == 1 or n < 8:
            for t in tasks:
                rows.append(_make_galaxy(t))
                bar.update(1)
        else:
            chunk = max(1, min(32, n // (workers * 8)))
            with ProcessPoolExecutor(max_workers=min(workers, n)) as ex:
                for row in ex.map(_make_galaxy, tasks, chunksize=chunk):
                    rows.append(row)
                    bar.update(1)
    finally:
        bar.close()

    cond = pd.DataFrame([{c: r[c] for c in KAGGLE_COLUMNS} for r in rows])
    cum = GZ2_TREE.to_cumulative(cond)
    df = pd.DataFrame({"GalaxyID": np.array([r["GalaxyID"] for r in rows], dtype=np.int64)})
    df = pd.concat([df, cum.reset_index(drop=True),
                    pd.DataFrame([{c: r[c] for c in TRUTH_COLUMNS} for r in rows])], axis=1)
    with atomic_path(out_dir / CATALOGUE) as tmp:
        df.to_csv(tmp, index=False)
    return out_dir
