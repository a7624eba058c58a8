"""Similarity search in the representation: precision@k, queries, true kinds."""

import numpy as np
import pandas as pd
import pytest

from gzmorph.io import InputError
from gzmorph.similarity import SimilaritySettings, base_rate, precision_at_k, similarity_search


def blobs(n_per=40, k=3, dim=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (k, dim))
    x = np.concatenate([c + rng.normal(0, spread, (n_per, dim)) for c in centres])
    y = np.repeat(np.arange(k), n_per)
    return x, y


def test_precision_at_k_on_known_clusters():
    x, y = blobs()
    p = precision_at_k(x, y, k=10)
    assert p["precision"] == pytest.approx(1.0)
    assert p["base_rate"] == pytest.approx(39 / 119)
    shuffled = np.random.default_rng(1).permutation(y)
    assert precision_at_k(x, shuffled, 10)["precision"] < 0.5
    assert base_rate(["a", "a", "b", "b"]) == pytest.approx(1 / 3)
    # the query is never its own neighbour: each point's nearest other has the other label
    near = precision_at_k(np.array([[0.0], [1.0], [10.0], [11.0]]), ["a", "b", "a", "b"], k=1)
    assert near["precision"] == 0.0 and near["base_rate"] == pytest.approx(1 / 3)


def test_similarity_search_queries_and_truth():
    x, y = blobs(n_per=30)
    ids = np.arange(500, 590)
    names = np.array(["round", "spiral", "edge-on"])
    curated = pd.DataFrame({"id": ids[::2], "label": y[::2], "label_name": names[y[::2]],
                            "confidence": np.linspace(0, 1, 45)})
    source = pd.DataFrame({"id": ids, "true_kind": names[y]})
    table, m = similarity_search(ids, x, curated, source, SimilaritySettings(n_components=5, k=5))
    assert len(m["query_ids"]) == 3  # one per class, the most confident
    for name in names:
        g = curated[curated["label_name"] == name]
        assert g.sort_values("confidence")["id"].iloc[-1] in m["query_ids"]
    assert len(table) == 15 and (table["query_id"] != table["neighbour_id"]).all()
    assert m["precision_at_k"] == pytest.approx(1.0) and m["base_rate"] < 0.4
    assert m["truth"]["column"] == "true_kind" and m["truth"]["precision_at_k"] == pytest.approx(1.0)
    with pytest.raises(InputError, match=r"query id\(s\) \[42\] do not exist"):
        similarity_search(ids, x, curated, source, SimilaritySettings(query_ids=[500, 42]))


def test_the_gallery_draws_class_names_with_dollar_signs_as_written(tmp_path):
    """Its titles are curated class names (cut keys, label values, folder names): '$\\alpha_{$' failed the
    similarity rule with a mathtext traceback, and 'a $x$ b' was drawn as mathematics."""
    import matplotlib

    from gzmorph.imageset import write_images
    from gzmorph.similarity import similarity_gallery

    write_images(tmp_path / "images.parquet", np.array([1, 2, 3]), np.zeros((3, 8, 8, 3), np.uint8))
    table = pd.DataFrame({"query_id": [1, 1], "rank": [1, 2], "neighbour_id": [2, 3],
                          "query_label": ["$\\alpha_{$"] * 2, "neighbour_label": ["a $x$ b", "$\\alpha_{$"]})
    with matplotlib.rc_context({"text.parse_math": True}):  # matplotlib's default, whatever ran before
        similarity_gallery(table, tmp_path / "images.parquet", tmp_path / "gallery.png")
    assert (tmp_path / "gallery.png").read_bytes().startswith(b"\x89PNG")
