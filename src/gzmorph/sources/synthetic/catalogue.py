"""The catalogue writer: simulate ``n`` galaxies (in parallel) and write them in the Kaggle layout.

Galaxy ``i`` is drawn from ``numpy.random.SeedSequence([seed, i])`` alone, so the output does
not depend on ``workers``.  Each worker writes its galaxy's JPEG and returns its catalogue
row; the catalogue is written last and atomically.
"""

from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ...io import InputError, atomic_path
from ...tree import GZ2_TREE, KAGGLE_COLUMNS
from .morphology import sample_galaxy
from .render import render_galaxy
from .truth import answer_path, morphology_text, true_latents
from .volunteers import simulate_votes, visibility

CATALOGUE = "training_solutions_rev1.csv"
IMAGES = "images_training_rev1"

DEFAULT_STAMP = 160
MIN_STAMP = 64
MAX_STAMP = 1024
ID_OFFSET = 100000
JPEG_QUALITY = 90

TRUTH_COLUMNS = [
    "true_answers", "true_morphology", "true_kind",
    "true_sersic_n", "true_axis_ratio", "true_hlr_px", "true_flux", "true_snr",
    "true_n_arms", "true_pitch_deg", "true_bar", "true_bulge_fraction",
    "true_ring", "true_odd", "true_odd_feature", "true_inclination_deg",
    "true_position_angle_deg", "true_psf_fwhm_px", "true_visibility",
]


# -------------------------------------------------------------- one galaxy
def _galaxy_rng(seed: int, index: int):
    ss = np.random.SeedSequence([int(seed), int(index)])
    return tuple(np.random.default_rng(s) for s in ss.spawn(4))  # params, render, votes, noise


def _make_galaxy(task):
    """Sample, render and vote on galaxy ``index``; write its JPEG; return its catalogue row."""
    index, seed, stamp, n_volunteers, img_dir = task
    rng_p, rng_r, rng_v, rng_n = _galaxy_rng(seed, index)
    p = sample_galaxy(rng_p)
    rgb, meas = render_galaxy(p, stamp, rng_r, rng_n)
    meas["psf_fwhm"] = p["psf_fwhm"] * meas["s"]
    meas["visibility"] = visibility(meas["snr"], meas["hlr_obs"], meas["psf_fwhm"])
    votes = simulate_votes(p, meas, rng_v, n_volunteers)
    gid = ID_OFFSET + index
    _write_jpeg(rgb, Path(img_dir) / f"{gid}.jpg")
    return {"GalaxyID": gid, **votes, **_truth_row(p, meas)}


def _truth_row(p: dict, meas: dict) -> dict:
    """The ``true_*`` columns of galaxy ``p`` with its measurements ``meas``."""
    lat = true_latents(p)
    kind = p["kind"]
    return {
        "true_answers": ";".join(answer_path(lat)),
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


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
    workers = _check_int("workers", _usable_cores() if workers is None else workers, 1)
    out_dir = Path(out_dir)
    img_dir = out_dir / IMAGES
    img_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(i, seed, stamp_size, n_volunteers, str(img_dir)) for i in range(n)]
    rows = _simulate(tasks, workers, progress)
    with atomic_path(out_dir / CATALOGUE) as tmp:
        _catalogue(rows).to_csv(tmp, index=False)
    return out_dir


def _simulate(tasks: list[tuple], workers: int, progress: bool) -> list[dict]:
    """The rows of ``tasks`` in order: in this process for one worker or few galaxies, else in a pool."""
    from tqdm import tqdm

    n = len(tasks)
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
    return rows


def _catalogue(rows: list[dict]) -> pd.DataFrame:
    """GalaxyID, the cumulative (Kaggle convention) vote fractions, then the truth columns."""
    cond = pd.DataFrame([{c: r[c] for c in KAGGLE_COLUMNS} for r in rows])
    cum = GZ2_TREE.to_cumulative(cond)
    df = pd.DataFrame({"GalaxyID": np.array([r["GalaxyID"] for r in rows], dtype=np.int64)})
    return pd.concat([df, cum.reset_index(drop=True),
                      pd.DataFrame([{c: r[c] for c in TRUTH_COLUMNS} for r in rows])], axis=1)
