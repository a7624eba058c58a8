"""Source readers on the real samples, and one clear error per kind of bad input."""

import shutil

import numpy as np
import pandas as pd
import pytest

from gzmorph.io import InputError
from gzmorph.sources import read_source
from gzmorph.tree import KAGGLE_COLUMNS


def test_kaggle_real_sample(kaggle_dir):
    df = read_source("kaggle", kaggle_dir)
    assert len(df) == 5000 and df["id"].is_unique
    assert list(df.columns[:2]) == ["id", "image_path"] and list(df.columns[2:39]) == KAGGLE_COLUMNS
    assert df["image_path"].str.endswith(".jpg").all()
    assert all(p.startswith(str(kaggle_dir.resolve())) for p in df["image_path"].head())


def test_gz2_real_sample(gz2_dir):
    df = read_source("gz2", gz2_dir)
    assert len(df) == 500 and df["id"].is_unique
    raw = pd.read_csv(gz2_dir / "gz2_hart16_subset.csv")
    # cumulative Kaggle columns from conditional GZ2 fractions: a path product
    spiral = (raw["t01_smooth_or_features_a02_features_or_disk_weighted_fraction"]
              * raw["t02_edgeon_a05_no_weighted_fraction"]
              * raw["t04_spiral_a08_spiral_weighted_fraction"])
    np.testing.assert_allclose(df["Class4.1"], spiral, atol=1e-12)
    np.testing.assert_allclose(df["Class6.1"], raw["t06_odd_a14_yes_weighted_fraction"])
    assert df["image_path"].iloc[0].endswith(f"images/{raw['asset_id'].iloc[0]}.jpg")


def _edit_csv(folder, fn):
    path = folder / "training_solutions_rev1.csv"
    df = pd.read_csv(path)
    fn(df).to_csv(path, index=False)
    return path


def _set(column, row, value):
    def edit(df):
        df.loc[row, column] = value
        return df
    return edit


def test_missing_catalogue(tmp_path):
    with pytest.raises(InputError, match="training_solutions_rev1.csv: Kaggle catalogue not found"):
        read_source("kaggle", tmp_path)


def test_renamed_column_is_named(tiny_kaggle):
    _edit_csv(tiny_kaggle, lambda df: df.rename(columns={"Class7.3": "Class7_3"}))
    with pytest.raises(InputError, match=r"missing column\(s\) 'Class7.3'.*found 'Class7_3'"):
        read_source("kaggle", tiny_kaggle)


def test_fraction_outside_unit_interval_names_line_and_column(tiny_kaggle):
    _edit_csv(tiny_kaggle, _set("Class2.1", 4, 1.7))
    with pytest.raises(InputError, match=r"line 6, column 'Class2.1'.*1.7.*not a number in \[0, 1\]"):
        read_source("kaggle", tiny_kaggle)


def test_nan_fraction(tiny_kaggle):
    _edit_csv(tiny_kaggle, _set("Class1.1", 0, np.nan))
    with pytest.raises(InputError, match=r"line 2, column 'Class1.1'"):
        read_source("kaggle", tiny_kaggle)


def test_duplicate_ids(tiny_kaggle):
    _edit_csv(tiny_kaggle, lambda df: _set("GalaxyID", 9, df["GalaxyID"][3])(df))
    with pytest.raises(InputError, match=r"duplicate id \d+ on lines \[5, 11\]"):
        read_source("kaggle", tiny_kaggle)


def test_broken_tree_sums(tiny_kaggle):
    _edit_csv(tiny_kaggle, _set("Class7.1", 2, 0.99))
    with pytest.raises(InputError, match=r"line 4 .*question 7 sum to"):
        read_source("kaggle", tiny_kaggle)


def test_gz2_missing_fraction_kind(tmp_path, gz2_dir):
    shutil.copy(gz2_dir / "gz2_hart16_subset.csv", tmp_path)
    # raw *_fraction columns exist only for task 1 in the hart16 sample
    with pytest.raises(InputError, match=r"missing column\(s\) .*'t02_edgeon_a04_yes_fraction'"):
        read_source("gz2", tmp_path, fraction_kind="fraction")


def test_gz2_no_catalogue(tmp_path):
    with pytest.raises(InputError, match="no GZ2 catalogue"):
        read_source("gz2", tmp_path)


def test_unknown_source(tmp_path):
    with pytest.raises(InputError, match="unknown source 'sdss'"):
        read_source("sdss", tmp_path)


def test_gz2_debiased_fractions_are_renormalised_per_question(gz2_dir):
    """Hart et al. debias answer by answer: a question's debiased fractions do not sum to 1, and
    456 of the sample's 500 galaxies failed the tree-sum check, so the option could not be used."""
    from gzmorph.tree import GZ2_TREE

    df = read_source("gz2", gz2_dir, fraction_kind="debiased")
    assert len(df) == 500
    for q in GZ2_TREE.questions:
        total = df[[f"{a.gz2}_debiased" for a in q.answers]].sum(axis=1)
        assert ((total - 1).abs() < 1e-9).to_numpy().sum() + (total == 0).sum() == len(df), q.number
    cols = [f"{a.gz2}_debiased" for a in GZ2_TREE.question(1).answers]
    raw = pd.read_csv(gz2_dir / "gz2_hart16_subset.csv", usecols=cols)[cols].fillna(0.0)
    ratio = raw.iloc[:, 0] / raw.sum(axis=1)  # the ratios within the question are kept
    got = df["t01_smooth_or_features_a01_smooth_debiased"]
    assert np.allclose(got[ratio.notna().to_numpy()], ratio.dropna(), atol=1e-9) and ratio.notna().sum() > 490
