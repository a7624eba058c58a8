"""The truth of a simulated galaxy: its latent features and the decision-tree answers they imply.

:func:`answer_path` walks the GZ2 decision tree for an observer who sees latents ``lat``; the
true latents (:func:`true_latents`) give the true answers, a simulated volunteer's perceived
latents give that volunteer's answers (:mod:`.volunteers`).  :func:`morphology_text` describes
the true morphology in words.
"""

from __future__ import annotations

import numpy as np

# thresholds shared by the truth and by the volunteers' perception
Q_ROUND, Q_CIGAR = 0.80, 0.42  # axis ratio: round above, cigar below
PITCH_TIGHT, PITCH_LOOSE = 17.0, 27.0  # degrees
BT_EDGES = (0.03, 0.15, 0.35)  # bulge fraction: none / just noticeable / obvious / dominant
BT_EDGEON_NONE = 0.05

_ODD_TYPES = ("ring", "lens", "disturbed", "irregular", "other", "merger", "dust_lane")
_ODD_COLUMN = {t: f"Class8.{i + 1}" for i, t in enumerate(_ODD_TYPES)}


def true_latents(p: dict) -> dict:
    """The latents of galaxy parameters ``p`` (from :func:`.morphology.sample_galaxy`), as the truth sees them."""
    return {"star": bool(p["star"]), "F": p["F"], "q": p["q"], "E": p["E"], "bar": p["bar"], "arms": p["arms"],
            "pitch": p["pitch"] if p["arms"] > 0 else 25.0, "n_arms": p["n_arms"], "bt": p["bt"],
            "boxy": bool(p["boxy"]), "odd": p["odd"], "odd_type": p["odd_type"], "sersic_n": p["sersic_n"]}


def answer_path(lat: dict, lapse=None) -> list[str]:
    """Answers (Kaggle columns, in walking order) of an observer seeing latents ``lat``.

    ``lat`` keys: ``star`` (bool), ``F`` (structure visible, >0.5 = features
    or disk), ``q`` (axis ratio), ``E`` (edge-on-ness), ``bar``, ``arms``,
    ``pitch`` (deg), ``n_arms`` (0 = can't tell, 5 = more than four), ``bt``
    (bulge fraction), ``boxy`` (bool), ``odd`` and ``odd_type``.  ``lapse`` is
    an optional ``f(question, answer) -> answer`` (volunteer mistakes).

    Q1 smooth / features / star; then the smooth branch (Q7 roundness) or the disk branch
    (Q2 edge-on, then Q9 bulge shape or Q3-Q5, Q10-Q11); then Q6 odd and, if odd, Q8.
    """
    ans = (lambda q, a: a) if lapse is None else lapse
    path = []
    q1 = "Class1.3" if lat["star"] else ("Class1.2" if lat["F"] > 0.5 else "Class1.1")
    q1 = ans(1, q1)
    path.append(q1)
    if q1 == "Class1.1":
        path.append(ans(7, _roundness(lat["q"])))
    elif q1 == "Class1.2":
        path.extend(_disk_answers(lat, ans))
    if lat["odd"] > 0.5:
        path.append(ans(6, "Class6.1"))
    else:
        path.append(ans(6, "Class6.2"))
    if path[-1] == "Class6.1":
        path.append(ans(8, _ODD_COLUMN.get(lat["odd_type"], "Class8.5")))
    return path


def _roundness(q: float) -> str:
    """Q7 for axis ratio ``q``: completely round, in between or cigar-shaped."""
    return "Class7.1" if q >= Q_ROUND else ("Class7.3" if q < Q_CIGAR else "Class7.2")


def _disk_answers(lat: dict, ans) -> list[str]:
    """The answers below 'features or disk': edge-on with its bulge, or face-on bar/arms/bulge."""
    path = []
    q2 = ans(2, "Class2.1" if lat["E"] > 0.5 else "Class2.2")
    path.append(q2)
    if q2 == "Class2.1":
        if lat["bt"] < BT_EDGEON_NONE:
            a9 = "Class9.3"
        else:
            a9 = "Class9.2" if lat["boxy"] else "Class9.1"
        path.append(ans(9, a9))
        return path
    path.append(ans(3, "Class3.1" if lat["bar"] > 0.5 else "Class3.2"))
    q4 = ans(4, "Class4.1" if lat["arms"] > 0.5 else "Class4.2")
    path.append(q4)
    if q4 == "Class4.1":
        p = lat["pitch"]
        path.append(ans(10, "Class10.1" if p < PITCH_TIGHT else ("Class10.3" if p >= PITCH_LOOSE
                                                                 else "Class10.2")))
        m = int(lat["n_arms"])
        path.append(ans(11, "Class11.6" if m <= 0 else f"Class11.{min(m, 5)}"))
    k = int(np.searchsorted(BT_EDGES, lat["bt"], side="right"))
    path.append(ans(5, f"Class5.{k + 1}"))
    return path


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
