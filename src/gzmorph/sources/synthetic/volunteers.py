"""The simulated volunteers: vote fractions of a crowd that perceives a galaxy imperfectly.

Each volunteer *perceives* the true latents -- attenuated and blurred by noise that grows as
the galaxy's :func:`visibility` falls (fainter, less resolved), with the measured axis ratio
instead of the intrinsic one, a personal bias to see structure, plausible confusions of the
odd feature and occasional random answers -- and walks the decision tree with the same
:func:`.truth.answer_path` as the truth.
"""

from __future__ import annotations

import numpy as np

from ...tree import GZ2_TREE, KAGGLE_COLUMNS
from .truth import answer_path, true_latents

LAPSE_RATE = 0.06  # chance that a volunteer picks a random answer to a question
ODD_HAPPY = 0.10  # chance that a volunteer calls an ordinary galaxy odd

_QUESTION_ANSWERS = {q.number: [a.kaggle for a in q.answers] for q in GZ2_TREE.questions}

_ODD_CONFUSION = {
    "ring": ("lens", "other", "irregular"),
    "merger": ("disturbed", "irregular", "other"),
    "disturbed": ("merger", "irregular", "other"),
    "irregular": ("disturbed", "other", "merger"),
    "none": ("other", "disturbed", "lens", "irregular"),
}


def visibility(snr: float, hlr_px: float, psf_fwhm_px: float) -> float:
    """How easily features are seen: falls with lower S/N and with smaller size relative to the PSF."""
    if hlr_px <= 0:
        return 0.0
    a = snr ** 2 / (snr ** 2 + 120.0 ** 2)
    res = hlr_px / psf_fwhm_px
    b = res ** 2 / (res ** 2 + 1.3 ** 2)
    return float(a * b)


def simulate_votes(p: dict, meas: dict, rng: np.random.Generator, n_volunteers: int) -> dict:
    """Conditional vote fractions (Kaggle columns) of simulated volunteers for galaxy ``p``.

    Draw the crowd (size, skill, habits) and every volunteer's random numbers at once; let
    each volunteer perceive the galaxy and walk the tree (with lapses); count the answers and
    divide each question's counts by the volunteers who reached it.
    """
    lat = true_latents(p)
    crowd = _Crowd(rng, n_volunteers, meas["visibility"])
    counts = {c: 0 for c in KAGGLE_COLUMNS}
    for k in range(crowd.n):
        perc = _perceive(lat, meas, crowd, k)
        for a in answer_path(perc, crowd.lapse(k)):
            counts[a] += 1
    return _conditional_fractions(counts)


class _Crowd:
    """The volunteers of one galaxy and their random draws (in a fixed order from ``rng``)."""

    def __init__(self, rng: np.random.Generator, n_volunteers: int, vis: float):
        nv = max(3, int(round(n_volunteers * rng.uniform(0.8, 1.2))))
        skill = np.clip(rng.normal(1.0, 0.12, nv), 0.6, 1.2)
        # some volunteers see structure everywhere, some nowhere
        habit = rng.uniform(size=nv)
        self.n = nv
        self.f_bias = rng.normal(0.0, 0.12, nv) + np.where(habit < 0.15, 0.4, np.where(habit > 0.92, -0.3, 0.0))
        self.vk = np.clip(vis * skill, 0.0, 1.0)  # the visibility each volunteer experiences
        self.z = rng.normal(size=(nv, 10))
        self.u = rng.uniform(size=(nv, 10))
        self.lapse_u = rng.uniform(size=(nv, 12))
        self.lapse_pick = rng.uniform(size=(nv, 12))

    def lapse(self, k: int):
        """Volunteer ``k``'s mistakes: ``f(question, answer) -> answer`` for :func:`answer_path`."""
        def lapse(qn, a):
            if self.lapse_u[k, qn] < LAPSE_RATE:
                choices = _QUESTION_ANSWERS[qn]
                return choices[int(self.lapse_pick[k, qn] * len(choices))]
            return a

        return lapse


def _perceive(lat: dict, meas: dict, crowd: _Crowd, k: int) -> dict:
    """The latents volunteer ``k`` perceives: true ones attenuated and blurred as visibility falls."""
    v = crowd.vk[k]
    blur = 1.0 - v
    z, u, q_obs = crowd.z[k], crowd.u[k], meas["q_obs"]
    if lat["star"]:
        star = u[0] < 0.92
    else:
        small = meas["hlr_obs"] < 1.1 * meas["psf_fwhm"]
        star = small and u[0] < 0.12 * blur
    perc = {
        "star": star,
        # a thin edge-on disk is seen as a disk even when faint; other structure fades
        "F": lat["F"] * ((0.65 + 0.35 * v) if lat["E"] >= 1.0 else (0.5 + 0.5 * v))
        + crowd.f_bias[k] + z[0] * (0.1 + 0.25 * blur),
        "q": min(1.0, max(0.05, q_obs + z[1] * (0.07 + 0.2 * blur))),
        "E": (lat["E"] * (0.6 + 0.4 * v) if lat["E"] >= 1.0 else float(np.clip((0.47 - q_obs) / 0.25, 0, 1)))
        + z[2] * (0.08 + 0.2 * blur),
        "bar": lat["bar"] * (0.35 + 0.65 * v) + z[3] * (0.08 + 0.15 * blur),
        "arms": lat["arms"] * (0.4 + 0.6 * v) + z[4] * (0.08 + 0.2 * blur),
        "pitch": (lat["pitch"] + z[5] * (3.0 + 9.0 * blur)) if lat["arms"] > 0 else 5 + 40 * u[5],
        "bt": max(0.0, lat["bt"] + z[6] * (0.04 + 0.1 * blur)),
        "boxy": (u[7] < 0.45 + 0.45 * v) if lat["boxy"] else (u[7] < 0.05),
        "odd": lat["odd"] * (0.4 + 0.6 * v) + z[8] * (0.1 + 0.15 * blur)
        + (1.0 if u[4] < ODD_HAPPY else 0.0),
    }
    perc["n_arms"] = _perceived_n_arms(lat, v, z, u)
    perc["odd_type"] = _perceived_odd_type(lat, v, u)
    return perc


def _perceived_n_arms(lat: dict, v: float, z: np.ndarray, u: np.ndarray) -> int:
    """Number of arms: can't tell when faint, otherwise right or off by one."""
    blur = 1.0 - v
    if lat["n_arms"] > 0 and u[6] > 0.08 + 0.5 * blur:
        m = lat["n_arms"]
        if u[9] > 0.55 + 0.4 * v:
            m = max(1, m + (1 if z[9] > 0 else -1))
        return m
    return 0 if u[9] < 0.6 else int(1 + 4 * u[6]) % 5 + 1


def _perceived_odd_type(lat: dict, v: float, u: np.ndarray) -> str:
    """Odd feature: the right type, or a plausible confusion."""
    if lat["odd"] > 0.5 and u[8] < 0.5 + 0.45 * v:
        return lat["odd_type"]
    opts = _ODD_CONFUSION.get(lat["odd_type"], _ODD_CONFUSION["none"])
    if lat["E"] >= 1.0 and lat["odd"] <= 0.5:
        opts = ("dust_lane", "other", "dust_lane")
    return opts[int(u[8] * 997) % len(opts)]


def _conditional_fractions(counts: dict) -> dict:
    """Answers of each question over the volunteers who reached it (0 where nobody did)."""
    out = {}
    for q in GZ2_TREE.questions:
        tot = sum(counts[a.kaggle] for a in q.answers)
        for a in q.answers:
            out[a.kaggle] = counts[a.kaggle] / tot if tot else 0.0
    return out
