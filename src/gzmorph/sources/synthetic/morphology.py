"""Morphology sampling: the kind, physical parameters and true latents of one simulated galaxy.

:func:`sample_galaxy` draws a kind from :data:`KIND_WEIGHTS`, then the parameters every galaxy
has (size, brightness, PSF, orientation, field stars), then those of its family (smooth,
edge-on, star or disk-like; disk-like galaxies add arms, bar, lens, ring, merger companion,
tidal tail or clumps by kind).  Lengths are in pixels of the 160 px reference stamp.  The
draws are made in a fixed order from one generator, so a galaxy depends on its seed alone.
"""

from __future__ import annotations

import math

import numpy as np

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


def _loguniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _quant_n(n):
    """A Sersic index rounded to a half, within [0.5, 6]."""
    return float(min(6.0, max(0.5, round(n * 2) / 2)))


def sample_galaxy(rng: np.random.Generator) -> dict:
    """Draw the kind, physical parameters and true latents of one galaxy (reference units)."""
    kind = _KINDS[int(rng.choice(len(_KINDS), p=_KIND_P))]
    p = _common_parameters(kind, rng)
    if kind.startswith("smooth"):
        _smooth(p, rng)
    elif kind.startswith("edgeon"):
        _edge_on(p, rng)
    elif kind == "star":
        _star(p)
    else:
        _disk_like(p, rng)
    return p


def _common_parameters(kind: str, rng: np.random.Generator) -> dict:
    """Size, brightness, PSF, orientation, colour and field stars; neutral values for the rest.

    GZ2 cutouts are scaled to the galaxy's Petrosian radius, so every galaxy fills a
    similar share of the frame; what varies is the resolution (half-light radius over
    PSF FWHM) and the brightness, which are correlated (near galaxies are both).
    """
    hlr = _loguniform(rng, 9.0, 20.0)  # along the major axis
    u_bright = rng.uniform()
    u_snr = min(1.0, max(0.0, 0.6 * u_bright + 0.4 * rng.uniform()))
    snr = float(math.exp(math.log(40.0) + u_snr * (math.log(2500.0) - math.log(40.0))))
    u_res = min(1.0, max(0.0, 0.6 * u_bright + 0.4 * rng.uniform()))
    res = float(math.exp(math.log(1.4) + u_res * (math.log(7.0) - math.log(1.4))))
    return {
        "kind": kind, "hlr": hlr, "snr": snr,
        "psf_fwhm": min(6.0, max(1.0, hlr / res)),
        "pa": float(rng.uniform(0, math.pi)),
        "colour_jitter": rng.normal(0, 0.06, size=3),
        "sersic_n": float("nan"), "q": 1.0, "cos_i": 1.0, "bt": 0.0, "bulge_n": float("nan"),
        "bar": 0.0, "arms": 0.0, "n_arms": 0, "pitch": float("nan"), "arm_frac": 0.0,
        "ring": 0, "odd": 0.0, "odd_type": "none", "F": 0.0, "E": 0.0, "boxy": False, "star": False,
        "n_field_stars": int(rng.integers(0, 4)), "field_seed": int(rng.integers(2**31)),
    }


# ------------------------------------------------------------------ families
def _smooth(p: dict, rng: np.random.Generator) -> None:
    """An elliptical: axis ratio in the band of its kind, one Sersic profile (all bulge)."""
    kind = p["kind"]
    lo, hi = {"smooth_round": (0.81, 1.0), "smooth_inbetween": (0.44, 0.69),
              "smooth_cigar": (0.12, 0.28)}[kind]
    p["q"] = float(rng.uniform(lo, hi))
    if kind == "smooth_cigar":
        p["sersic_n"] = _quant_n(rng.uniform(1.0, 3.0))
    else:
        p["sersic_n"] = _quant_n(rng.uniform(2.0, 5.5))
    p["bt"] = 1.0


def _edge_on(p: dict, rng: np.random.Generator) -> None:
    """A thin disk seen at 84-90 degrees, with no, a rounded or a boxy bulge."""
    kind = p["kind"]
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


def _star(p: dict) -> None:
    """A point source, alone in its frame."""
    p["star"] = True
    p["hlr"] = 0.0
    p["n_field_stars"] = 0


def _disk_like(p: dict, rng: np.random.Generator) -> None:
    """An inclined disk with a bulge, plus the features of its kind."""
    kind = p["kind"]
    _disk_and_bulge(p, rng)
    if kind in ("spiral", "barred_spiral"):
        _spiral_arms(p, rng)
    if kind in ("barred_spiral", "barred_disk") or (kind == "ring" and rng.uniform() < 0.5):
        _bar(p, rng)
    if kind in ("disk", "barred_disk"):
        _lens_disk(p, rng)
    if kind == "ring":
        _ring(p, rng)
    if kind == "merger":
        _merger(p, rng)
    if kind == "disturbed":
        _disturbed(p, rng)
    if kind == "irregular":
        _irregular(p, rng)
    if p["bt"] > 0:
        p["sersic_n"] = p["bulge_n"]


def _disk_and_bulge(p: dict, rng: np.random.Generator) -> None:
    """Inclination (rings and disturbed disks nearer face-on), bulge, arm chirality and phase."""
    p["cos_i"] = float(rng.uniform(0.55, 1.0)) if p["kind"] not in ("ring", "disturbed") \
        else float(rng.uniform(0.7, 1.0))
    p["q"] = math.sqrt(p["cos_i"] ** 2 + (0.12 ** 2) * (1 - p["cos_i"] ** 2))
    p["bulge_n"] = _quant_n(rng.uniform(1.0, 4.0))
    p["bulge_q"] = float(rng.uniform(0.75, 1.0))
    p["bulge_size"] = float(rng.uniform(0.15, 0.35))
    p["bt"] = float(rng.uniform(0.0, 0.5))
    p["chirality"] = float(rng.choice([-1.0, 1.0]))
    p["phase"] = float(rng.uniform(0, 2 * math.pi))


# ------------------------------------------------------ features of disks
def _spiral_arms(p: dict, rng: np.random.Generator) -> None:
    p["n_arms"] = int(rng.choice([1, 2, 3, 4], p=[0.08, 0.55, 0.2, 0.17]))
    p["pitch"] = float(rng.uniform(7.0, 42.0))
    p["arm_frac"] = float(rng.uniform(0.35, 0.65))
    p["arm_sharp"] = float(rng.uniform(1.5, 4.0))
    p["arms"] = 0.45 + p["arm_frac"]
    p["F"] = min(1.0, 0.1 + p["arms"])


def _bar(p: dict, rng: np.random.Generator) -> None:
    p["bar"] = float(rng.uniform(0.62, 1.0))
    p["bar_frac"] = 0.06 + 0.14 * (p["bar"] - 0.6) / 0.4
    p["bar_len"] = float(rng.uniform(0.9, 1.6))  # in disk scale lengths (half length)
    p["bar_q"] = float(rng.uniform(0.2, 0.33))
    p["bar_angle"] = float(rng.uniform(0, math.pi))
    p["bt"] = min(p["bt"], 0.35)


def _lens_disk(p: dict, rng: np.random.Generator) -> None:
    """A disk without arms: a bigger bulge and a lens that tells it from a smooth galaxy."""
    p["bt"] = float(rng.uniform(0.15, 0.5))
    p["F"] = float(rng.uniform(0.75, 0.9)) if p["kind"] == "disk" else max(0.8, p["bar"])
    p["lens"] = float(rng.uniform(0.15, 0.3))


def _ring(p: dict, rng: np.random.Generator) -> None:
    p["ring"] = 1
    p["ring_frac"] = float(rng.uniform(0.18, 0.32))
    p["ring_r"] = float(rng.uniform(1.6, 2.6))  # disk scale lengths
    p["odd"], p["odd_type"] = float(rng.uniform(0.7, 1.0)), "ring"
    p["F"] = 0.9


def _merger(p: dict, rng: np.random.Generator) -> None:
    """Two overlapping galaxies with tidal tails; the primary is smaller than a lone galaxy."""
    p["odd"], p["odd_type"], p["F"] = float(rng.uniform(0.75, 1.0)), "merger", 0.95
    p["sep"] = float(rng.uniform(0.9, 1.8))  # in units of hlr
    p["flux_ratio"] = float(rng.uniform(0.35, 1.0))
    p["sep_angle"] = float(rng.uniform(0, 2 * math.pi))
    p["tail_frac"] = float(rng.uniform(0.08, 0.2))
    p["hlr"] = 0.7 * p["hlr"]


def _disturbed(p: dict, rng: np.random.Generator) -> None:
    """An off-centre disk with a tidal tail."""
    p["odd"], p["odd_type"], p["F"] = float(rng.uniform(0.7, 1.0)), "disturbed", 0.9
    p["tail_frac"] = float(rng.uniform(0.15, 0.3))
    p["offset"] = float(rng.uniform(0.2, 0.5))


def _irregular(p: dict, rng: np.random.Generator) -> None:
    """Star-forming clumps on a bulgeless disk."""
    p["odd"], p["odd_type"], p["F"] = float(rng.uniform(0.7, 1.0)), "irregular", 0.9
    p["bt"] = 0.0
    p["n_clumps"] = int(rng.integers(3, 9))
    p["clump_frac"] = float(rng.uniform(0.3, 0.55))
    p["clump_seed"] = int(rng.integers(2**31))
