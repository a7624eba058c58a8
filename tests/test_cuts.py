"""Cuts: the named cuts on real data, computed independently, and user cuts."""

import numpy as np
import pandas as pd
import pytest

from gzmorph.cuts import NAMED_CUTS, get_cut
from gzmorph.io import InputError
from gzmorph.sources import read_source
from gzmorph.tree import GZ2_TREE, KAGGLE_COLUMNS


def test_hiwl5_selects_exactly_what_the_thresholds_imply(kaggle_dir):
    """Expected counts straight from the CSV with pandas, rules as in the data README."""
    raw = pd.read_csv(kaggle_dir / "training_solutions_rev1.csv")
    smooth, feat = raw["Class1.1"] > 0.469, raw["Class1.2"] > 0.430
    expected = {
        "round": smooth & (raw["Class7.1"] > 0.50),
        "in-between": smooth & (raw["Class7.2"] > 0.50),
        "cigar": smooth & (raw["Class7.3"] > 0.50),
        "edge-on": feat & (raw["Class2.1"] > 0.602),
        "spiral": feat & (raw["Class2.2"] > 0.715) & (raw["Class4.1"] > 0.619),
    }
    got = get_cut("hiwl5").assign(read_source("kaggle", kaggle_dir)[KAGGLE_COLUMNS])
    names = np.array(get_cut("hiwl5").class_names)
    for k, (name, mask) in enumerate(expected.items()):
        assert names[k] == name
        assert set(raw["GalaxyID"][mask]) == set(raw["GalaxyID"][got["label"].to_numpy() == k]), name
    assert (got["label"] >= 0).sum() == sum(m.sum() for m in expected.values())
    assert not got["ambiguous"].any()  # the five hiwl5 rules are mutually exclusive


def test_strict_inequality_at_threshold():
    row = GZ2_TREE.ideal_votes(["Class1.1", "Class7.1", "Class6.2"])
    row.update({"Class1.1": 0.469, "Class1.2": 0.531})  # exactly at the threshold: not smooth
    got = get_cut("hiwl5").assign(pd.DataFrame([row]))
    assert got["label"].tolist() == [-1]


HIWL5_THRESHOLDS = {  # Zhu et al. (2019) / HIWL: each class's cumulative-fraction conditions, strict >
    "round": {"Class1.1": 0.469, "Class7.1": 0.50}, "in-between": {"Class1.1": 0.469, "Class7.2": 0.50},
    "cigar": {"Class1.1": 0.469, "Class7.3": 0.50}, "edge-on": {"Class1.2": 0.430, "Class2.1": 0.602},
    "spiral": {"Class1.2": 0.430, "Class2.2": 0.715, "Class4.1": 0.619}}


@pytest.mark.parametrize("name", list(HIWL5_THRESHOLDS))
def test_hiwl5_labels_just_above_every_threshold_and_not_at_any(name):
    """Without the real samples too: a galaxy just above each of its class's thresholds gets the
    class; the same galaxy exactly at any one of them is unlabelled."""
    cut = get_cut("hiwl5")
    zero = {c: 0.0 for c in GZ2_TREE.kaggle_columns}
    above = {**zero, **{k: v + 0.001 for k, v in HIWL5_THRESHOLDS[name].items()}}
    assert cut.assign(pd.DataFrame([above]))["label"].tolist() == [list(HIWL5_THRESHOLDS).index(name)]
    for k, v in HIWL5_THRESHOLDS[name].items():
        assert cut.assign(pd.DataFrame([{**above, k: v}]))["label"].tolist() == [-1], k


def test_guan9_path_products_on_real_gz2(gz2_dir):
    df = read_source("gz2", gz2_dir)
    raw = pd.read_csv(gz2_dir / "gz2_hart16_subset.csv")
    f = lambda c: raw[[x for x in raw.columns if x.startswith(c) and x.endswith("_weighted_fraction")][0]]
    conf = np.stack([
        f("t01_smooth_or_features_a01") * f("t07_rounded_a16"),
        f("t01_smooth_or_features_a01") * f("t07_rounded_a17"),
        f("t01_smooth_or_features_a01") * f("t07_rounded_a18"),
        f("t01_smooth_or_features_a02") * f("t02_edgeon_a04") * (f("t09_bulge_shape_a25") + f("t09_bulge_shape_a26")),
        f("t01_smooth_or_features_a02") * f("t02_edgeon_a04") * f("t09_bulge_shape_a27"),
        f("t01_smooth_or_features_a02") * f("t02_edgeon_a05") * f("t03_bar_a06") * f("t04_spiral_a08"),
        f("t01_smooth_or_features_a02") * f("t02_edgeon_a05") * f("t03_bar_a06") * f("t04_spiral_a09"),
        f("t01_smooth_or_features_a02") * f("t02_edgeon_a05") * f("t03_bar_a07") * f("t04_spiral_a08"),
        f("t01_smooth_or_features_a02") * f("t02_edgeon_a05") * f("t03_bar_a07") * f("t04_spiral_a09"),
    ], axis=1)
    got = get_cut("guan9").assign(df[KAGGLE_COLUMNS])
    np.testing.assert_array_equal(got["label"], conf.argmax(axis=1))
    np.testing.assert_allclose(got["confidence"], conf.max(axis=1), atol=1e-9)


def test_user_threshold_cut_with_ambiguity():
    cut = get_cut("mine", {"mine": {"classes": {
        "smooth": ["Class1.1 > 0.5"], "not-star": ["Class1.3 < 0.1", "Class1.1 >= 0.2"]}}})
    rows = [GZ2_TREE.ideal_votes(["Class1.1", "Class7.1", "Class6.2"]),
            GZ2_TREE.ideal_votes(["Class1.3", "Class6.2"])]
    got = cut.assign(pd.DataFrame(rows))
    assert got["ambiguous"].tolist() == [True, False]  # row 0 meets both classes
    assert got["label"].tolist() == [-1, -1]


def test_user_conditional_and_path_product_cut():
    cut = get_cut("bars", {"bars": {"kind": "path_product", "top_k": 5, "classes": {
        "barred": "t01_a02 * t02_a05 * t03_a06", "unbarred": "Class1.2 * Class2.2 * Class3.2"}}})
    row = GZ2_TREE.ideal_votes(["Class1.2", "Class2.2", "Class3.1", "Class4.2", "Class5.1", "Class6.2"])
    assert cut.assign(pd.DataFrame([row]))["label"].tolist() == [0]
    cond = get_cut("c", {"c": {"classes": {"a": ["cond(t07_a16) > 0.5"], "b": ["Class1.2 > 0.5"]}}})
    assert cond.classes[0].conditions[0].term.conditional
    # evaluated on the conditional fraction: Class7.1 is 0.4 of all, 1.0 of those asked (Class1.1 = 0.4)
    row = {c: 0.0 for c in GZ2_TREE.kaggle_columns}
    row.update({"Class1.1": 0.4, "Class1.3": 0.6, "Class7.1": 0.4, "Class6.2": 1.0})
    cut = get_cut("c", {"c": {"classes": {"a": ["cond(t07_a16) > 0.5"], "b": ["Class1.3 > 0.9"]}}})
    out = cut.assign(pd.DataFrame([row]))
    assert out["label"].tolist() == [0] and out["confidence"].tolist() == [1.0]


@pytest.mark.parametrize("spec, message", [
    ({"classes": {"a": ["Class99.1 > 0.5"], "b": ["Class1.1 > 0.1"]}}, "not an answer"),
    ({"classes": {"a": ["Class1.1 >> 0.5"], "b": ["Class1.1 > 0.1"]}}, "cannot read condition"),
    ({"classes": {"a": ["Class1.1 > 1e"], "b": ["Class1.1 > 0.1"]}}, "'1e' is not a number"),  # was a traceback
    ({"classes": {"a": ["Class1.1 > ."], "b": ["Class1.1 > 0.1"]}}, "'.' is not a number"),
    ({"classes": {"a": ["Class1.1 > 0.5"]}}, "at least two classes"),
    ({"kind": "fuzzy", "classes": {"a": "x", "b": "y"}}, "is not one of 'threshold'"),
    ({"kind": "path_product", "classes": {"a": "t01_a01 * (t07_a16", "b": "t01_a02"}}, "cannot read expression"),
    ({"classes": {"a": ["Class1.1 < 0.5"], "b": ["Class1.1 > 0.5"]}}, "no '>' condition"),
])
def test_bad_user_cuts_name_the_key(spec, message):
    with pytest.raises(InputError, match=f"config cuts.bad.*{message}"):
        get_cut("bad", {"bad": spec})


def test_unknown_cut_lists_known():
    with pytest.raises(InputError, match="guan9, hiwl5"):
        get_cut("zhu7")
    assert set(NAMED_CUTS) == {"hiwl5", "guan9"}
