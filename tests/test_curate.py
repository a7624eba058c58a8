"""Selection, caps, splits and truth matching."""

import numpy as np
import pandas as pd
import pytest

from gzmorph.curate import assign_splits, read_catalogue, select, split, true_labels, write_catalogue
from gzmorph.cuts import get_cut
from gzmorph.io import InputError
from gzmorph.sources import read_source
from gzmorph.tree import GZ2_TREE, KAGGLE_COLUMNS

PATHS = {
    "round": ["Class1.1", "Class7.1", "Class6.2"],
    "cigar": ["Class1.1", "Class7.3", "Class6.2"],
    "edge-on": ["Class1.2", "Class2.1", "Class9.3", "Class6.2"],
}


def _table(labels_and_conf):
    rows = []
    for i, (path, conf) in enumerate(labels_and_conf):
        v = GZ2_TREE.ideal_votes(PATHS[path])
        # soften: a share of the crowd answered "star" instead
        v = {k: x * conf for k, x in v.items()}
        v["Class1.3"] += 1 - conf
        v["Class6.1"], v["Class6.2"] = 0.0, 1.0
        rows.append({"id": 100 + i, "image_path": f"/x/{100 + i}.jpg", **v, "true_answers": ";".join(PATHS[path])})
    return pd.DataFrame(rows)


def test_select_cap_keeps_most_confident_and_truth():
    cut = get_cut("t", {"t": {"classes": {"round": ["Class7.1 > 0.5"], "cigar": ["Class7.3 > 0.5"]}}})
    src = _table([("round", 0.9), ("round", 0.7), ("round", 0.99), ("cigar", 0.8), ("edge-on", 1.0)])
    sel, stats = select(src, cut, max_per_class=2)
    assert sel["id"].tolist() == [100, 102, 103]  # the 0.7 round is capped away; edge-on unlabelled
    assert sel["label_name"].tolist() == ["round", "round", "cigar"]
    np.testing.assert_allclose(sel["confidence"], [0.9, 0.99, 0.8])
    assert stats["n_matched_per_class"] == {"round": 3, "cigar": 1}
    assert (sel["true_label"] == sel["label"]).all()
    # no cap given: the cut's own top_k caps (guan9's 600 is one; the config's default cap is 0)
    capped = get_cut("t", {"t": {"top_k": 2, "classes": {"round": ["Class7.1 > 0.5"], "cigar": ["Class7.3 > 0.5"]}}})
    sel, stats = select(src, capped)
    assert sel["id"].tolist() == [100, 102, 103] and stats["max_per_class"] == 2


def test_empty_class_is_an_error():
    cut = get_cut("t", {"t": {"classes": {"round": ["Class7.1 > 0.5"], "cigar": ["Class7.3 > 0.5"]}}})
    with pytest.raises(InputError, match=r"leaves class\(es\) \['cigar'\] empty"):
        select(_table([("round", 0.9), ("edge-on", 1.0)]), cut, where="cat.parquet")


def test_true_labels_for_named_cuts():
    answers = pd.Series([";".join(PATHS["cigar"]), ";".join(PATHS["edge-on"]),
                         "Class1.2;Class2.2;Class3.1;Class4.1;Class10.1;Class11.2;Class5.2;Class6.2"])
    assert true_labels(answers, get_cut("hiwl5")).tolist() == [2, 3, 4]
    assert true_labels(answers, get_cut("guan9")).tolist() == [2, 4, 5]


def test_splits_are_stratified_seeded_and_order_free():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 1000)
    ids = rng.permutation(5000)[:1000]
    fr = {"train": 0.8, "val": 0.1, "test": 0.1}
    a = assign_splits(labels, ids, fr, seed=1)
    for k in range(3):
        n = (labels == k).sum()
        assert abs((a[labels == k] == "test").sum() - 0.1 * n) <= 1
    order = rng.permutation(1000)  # same galaxies in another row order: same split per id
    b = assign_splits(labels[order], ids[order], fr, seed=1)
    assert dict(zip(ids[order], b)) == dict(zip(ids, a))
    assert (assign_splits(labels, ids, fr, seed=2) != a).any()
    # val and test take their own fractions
    uneven = assign_splits(np.zeros(20, int), np.arange(20), {"train": 0.6, "val": 0.3, "test": 0.1}, 0)
    assert pd.Series(uneven).value_counts().to_dict() == {"train": 12, "val": 6, "test": 2}


@pytest.mark.parametrize("n, expected", [(1, {"train": 1}), (2, {"train": 1, "test": 1}),
                                         (3, {"train": 1, "val": 1, "test": 1}),
                                         (10, {"train": 8, "val": 1, "test": 1})])
def test_tiny_classes_fill_train_then_test(n, expected):
    s = assign_splits(np.zeros(n, int), np.arange(n), {"train": 0.8, "val": 0.1, "test": 0.1}, 0)
    assert pd.Series(s).value_counts().to_dict() == expected


def test_bad_fractions():
    with pytest.raises(InputError, match="sum to 1"):
        assign_splits(np.zeros(3, int), np.arange(3), {"train": 0.8, "val": 0.3, "test": 0.1}, 0)


def test_split_drops_bad_images_and_writes_catalogue(tmp_path):
    cut = get_cut("t", {"t": {"classes": {"round": ["Class7.1 > 0.5"], "cigar": ["Class7.3 > 0.5"]}}})
    src = _table([("round", 0.9)] * 6 + [("cigar", 0.9)] * 5)
    sel, st = select(src, cut)
    cat, stats = split(sel, [101], {"train": 0.6, "val": 0.2, "test": 0.2}, 0, st,
                       {"n_corrupt_images": 1, "corrupt_ids": [101]})
    assert 101 not in set(cat["id"]) and stats["n_curated"] == 10 and stats["n_corrupt_images"] == 1
    assert stats["truth_match"] == 1.0
    assert sum(stats["counts"]["round"].values()) == 5
    write_catalogue(cat, tmp_path / "c.parquet", st["classes"], "t")
    back, classes = read_catalogue(tmp_path / "c.parquet")
    assert classes == ["round", "cigar"] and back["id"].tolist() == cat["id"].tolist()
    with pytest.raises(InputError, match="no galaxy left"):
        split(sel, sel["id"][sel["label"] == 1], {"train": 0.8, "val": 0.1, "test": 0.1}, 0, st, {})


def test_real_kaggle_guan9_cap(kaggle_dir):
    src = read_source("kaggle", kaggle_dir)
    sel, stats = select(src, get_cut("guan9"), max_per_class=50)
    assert sel.groupby("label").size().max() == 50
    # the kept ones are the most confident of their class
    full = get_cut("guan9").assign(src[KAGGLE_COLUMNS])
    for k in range(9):
        conf = full["confidence"][full["label"] == k].sort_values(ascending=False)
        kept = sel[sel["label"] == k]["confidence"]
        assert kept.min() >= conf.iloc[min(49, len(conf) - 1)] - 1e-12
