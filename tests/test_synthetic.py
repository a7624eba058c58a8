"""Tests of the built-in synthetic galaxy source (gzmorph.sources.synthetic)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gzmorph.io import InputError
from gzmorph.sources import synthetic
from gzmorph.sources.synthetic import CATALOGUE, IMAGES, TRUTH_COLUMNS, generate
from gzmorph.sources.synthetic import catalogue as synthetic_catalogue
from gzmorph.tree import GZ2_TREE, KAGGLE_COLUMNS

STAMP = 96  # small stamps keep the tests fast


def _hiwl5(df: pd.DataFrame) -> np.ndarray:
    """The 5-class hiwl5 cut (strict >), None where a galaxy is not selected."""
    c = np.full(len(df), None, dtype=object)
    smooth, feat = df["Class1.1"] > 0.469, df["Class1.2"] > 0.430
    c[(smooth & (df["Class7.1"] > 0.50)).to_numpy()] = "round"
    c[(smooth & (df["Class7.2"] > 0.50)).to_numpy()] = "in-between"
    c[(smooth & (df["Class7.3"] > 0.50)).to_numpy()] = "cigar"
    c[(feat & (df["Class2.1"] > 0.602)).to_numpy()] = "edge-on"
    c[(feat & (df["Class2.2"] > 0.715) & (df["Class4.1"] > 0.619)).to_numpy()] = "spiral"
    return c


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    generate(out, 80, 3, stamp_size=STAMP, workers=1, progress=False)
    return out, pd.read_csv(out / CATALOGUE)


def _pixels(out, ids):
    return np.stack([np.asarray(Image.open(out / IMAGES / f"{i}.jpg")) for i in ids])


def test_layout(sample):
    out, df = sample
    assert list(df.columns) == ["GalaxyID", *KAGGLE_COLUMNS, *TRUTH_COLUMNS]
    assert all(c.startswith("true_") for c in df.columns[38:])
    assert len(df) == 80 and df["GalaxyID"].is_unique and df["GalaxyID"].dtype == np.int64
    for gid in df["GalaxyID"]:
        im = Image.open(out / IMAGES / f"{gid}.jpg")
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (STAMP, STAMP)
    assert not list(out.glob(".*tmp")) and not list((out / IMAGES).glob(".*tmp"))


def test_vote_sums_and_range(sample):
    _, df = sample
    votes = df[KAGGLE_COLUMNS]
    assert GZ2_TREE.sum_violations(votes, tol=1e-6).empty
    assert ((votes >= 0) & (votes <= 1 + 1e-12)).all().all()
    # Q1 and Q6 are roots: their answers sum to one
    assert np.allclose(df[["Class1.1", "Class1.2", "Class1.3"]].sum(axis=1), 1.0)
    assert np.allclose(df[["Class6.1", "Class6.2"]].sum(axis=1), 1.0)


def test_truth_columns(sample):
    _, df = sample
    for path in df["true_answers"]:
        GZ2_TREE.ideal_votes(path.split(";"))  # raises when the path does not follow the tree
    assert df["true_morphology"].str.len().min() > 3
    assert (df["true_snr"] > 0).all() and (df["true_flux"] > 0).all()
    spirals = df["true_answers"].str.contains("Class4.1")
    assert (df.loc[spirals, "true_n_arms"] >= 1).all()
    assert df.loc[spirals, "true_pitch_deg"].notna().all()
    assert df.loc[~spirals, "true_pitch_deg"].isna().all()


def test_determinism(tmp_path):
    a, b, c, d = (tmp_path / x for x in "abcd")
    generate(a, 24, 11, stamp_size=STAMP, workers=1, progress=False)
    generate(b, 24, 11, stamp_size=STAMP, workers=1, progress=False)
    generate(c, 24, 11, stamp_size=STAMP, workers=2, progress=False)
    generate(d, 24, 12, stamp_size=STAMP, workers=1, progress=False)
    csv = [(x / CATALOGUE).read_bytes() for x in (a, b, c, d)]
    assert csv[0] == csv[1] == csv[2]
    assert csv[0] != csv[3]
    ids = pd.read_csv(a / CATALOGUE)["GalaxyID"]
    pa, pb, pc, pd_ = (_pixels(x, ids) for x in (a, b, c, d))
    assert np.array_equal(pa, pb) and np.array_equal(pa, pc)
    assert not np.array_equal(pa, pd_)


def test_truth_agreement_hiwl5():
    """Votes and truth agree on >= 98 % of the hiwl5 selection; all 5 classes appear.

    Runs the catalogue side of the simulator (parameters, measurements of the
    noiseless galaxy, volunteers) without writing JPEGs, to keep it quick.
    """
    rows, ideal = [], []
    for i in range(300):
        rng_p, rng_r, rng_v, rng_n = synthetic_catalogue._galaxy_rng(5, i)
        p = synthetic.sample_galaxy(rng_p)
        _, meas = synthetic.render_galaxy(p, STAMP, rng_r, rng_n)
        meas["psf_fwhm"] = p["psf_fwhm"] * meas["s"]
        meas["visibility"] = synthetic.visibility(meas["snr"], meas["hlr_obs"], meas["psf_fwhm"])
        rows.append(synthetic.simulate_votes(p, meas, rng_v, 40))
        ideal.append(GZ2_TREE.ideal_votes(synthetic.answer_path(synthetic.true_latents(p))))
    votes = GZ2_TREE.to_cumulative(pd.DataFrame(rows))
    by_votes, by_truth = _hiwl5(votes), _hiwl5(pd.DataFrame(ideal))
    sel = by_votes != None  # noqa: E711 - elementwise
    assert 0.3 <= sel.mean() <= 0.8
    assert (by_votes[sel] == by_truth[sel]).mean() >= 0.98
    counts = pd.Series(by_votes[sel]).value_counts()
    assert set(counts.index) == {"round", "in-between", "cigar", "edge-on", "spiral"}
    assert counts.min() >= 5


def test_confidence_falls_with_snr(sample):
    _, df = sample
    conf = df[["Class1.1", "Class1.2", "Class1.3"]].max(axis=1).to_numpy()
    order = np.argsort(df["true_snr"].to_numpy())
    third = len(df) // 3
    assert conf[order[-third:]].mean() > conf[order[:third]].mean()


def test_bright_large_galaxies_get_mostly_correct_votes(sample):
    _, df = sample
    good = df["true_visibility"] > 0.8
    assert good.sum() >= 5
    q1_true = df.loc[good, "true_answers"].str.split(";").str[0]
    frac_true = np.array([df.loc[i, c] for i, c in q1_true.items()])
    assert frac_true.mean() > 0.75


def test_crash_leaves_no_catalogue(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.render_galaxy

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("renderer failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic_catalogue, "render_galaxy", flaky)  # where generate looks it up
    with pytest.raises(RuntimeError, match="renderer failed"):
        generate(tmp_path, 20, 1, stamp_size=STAMP, workers=1, progress=False)
    assert not (tmp_path / CATALOGUE).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{CATALOGUE}")]


@pytest.mark.parametrize("kwargs", [
    {"n": 0}, {"n": -3}, {"n": 2.5}, {"seed": -1}, {"stamp_size": 16}, {"stamp_size": 100000},
    {"n_volunteers": 0}, {"workers": 0}, {"colour": "red"},
])
def test_bad_arguments(tmp_path, kwargs):
    args = {"n": 5, "seed": 0, **kwargs}
    with pytest.raises(ValueError) as err:
        generate(tmp_path, args.pop("n"), args.pop("seed"), progress=False, **args)
    assert isinstance(err.value, InputError)
    assert "synthetic source" in str(err.value)
    assert not (tmp_path / CATALOGUE).exists()
