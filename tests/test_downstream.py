"""Downstream uses of the representation: similarity, anomaly detection, fine-tuning."""

import numpy as np
import pandas as pd
import pytest

from gzmorph.downstream import (
    FOREST_COMBINES, FinetuneConfig, RingRule, anomaly_experiment, astronomaly_combine, base_rate,
    expected_improvement, finetune_experiment, forest_active_learning,
    gp_active_learning, plan_budgets, precision_at_k, ranking_metrics, ring_labels, similarity_search,
)
from gzmorph.io import InputError


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


def test_similarity_search_queries_and_truth():
    x, y = blobs(n_per=30)
    ids = np.arange(500, 590)
    names = np.array(["round", "spiral", "edge-on"])
    curated = pd.DataFrame({"id": ids[::2], "label": y[::2], "label_name": names[y[::2]],
                            "confidence": np.linspace(0, 1, 45)})
    source = pd.DataFrame({"id": ids, "true_kind": names[y]})
    table, m = similarity_search(ids, x, curated, source, None, n_components=5, k=5)
    assert len(m["query_ids"]) == 3  # one per class, the most confident
    for name in names:
        g = curated[curated["label_name"] == name]
        assert g.sort_values("confidence")["id"].iloc[-1] in m["query_ids"]
    assert len(table) == 15 and (table["query_id"] != table["neighbour_id"]).all()
    assert m["precision_at_k"] == pytest.approx(1.0) and m["base_rate"] < 0.4
    assert m["truth"]["column"] == "true_kind" and m["truth"]["precision_at_k"] == pytest.approx(1.0)
    with pytest.raises(InputError, match=r"query id\(s\) \[42\] do not exist"):
        similarity_search(ids, x, curated, source, [500, 42])


def test_ranking_metrics_by_hand():
    is_anom = np.array([1, 0, 1, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    m = ranking_metrics(scores, is_anom, tops=(1, 4))
    assert m["precision_top1"] == 1.0
    assert m["top4_n"] == 2 and m["precision_top4"] == 0.5  # capped at the 2 true anomalies
    assert m["recall_top4"] == 1.0
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert expected_improvement(np.array([1.0]), np.array([1e-9]), 0.0)[0] == pytest.approx(1.0)


def planted(n=400, n_anom=15, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, dim))
    anom = rng.choice(n, n_anom, replace=False)
    x[anom] = rng.normal(0, 0.3, (n_anom, dim)) + np.array([2.5] + [0] * (dim - 1))  # a corner, not outliers
    odd = np.clip(rng.normal(0.1, 0.08, n), 0, 1)
    odd[anom] = 0.95
    return x, odd, anom


def test_gp_active_learning_finds_planted_anomalies_better_than_random():
    x, odd, anom = planted()
    interest = np.rint(5 * odd)
    scores, asked = gp_active_learning(x, interest, budget=60, initial=10, batch=10, seed=0)
    assert len(asked) == 60 == len(set(asked))
    is_anom = np.zeros(len(x), bool)
    is_anom[anom] = True
    m = ranking_metrics(scores, is_anom, (15,))
    assert m["average_precision"] > 5 * is_anom.mean()  # random ranking: AP ~ 0.04
    assert m["precision_top15"] > 0.5


def test_anomaly_experiment_reports_all_methods():
    x, odd, _ = planted(n=200, n_anom=8)
    metrics, curves, first = anomaly_experiment(x, odd, n_components=4, budget=30, seeds=(0, 1), tops=(5, 20),
                                                progress=False)
    assert metrics["n_anomalies"] == 8 and metrics["top_n"] == {"top5": 5, "top20": 8}
    for m in ("gp", "astronomaly", "isolation_forest_rf", "isolation_forest"):
        ap = metrics["methods"][m]["average_precision"]
        assert 0 <= ap["mean"] <= 1 and ap["sd"] >= 0
    assert set(curves["method"]) == {"gp", "astronomaly", "isolation_forest_rf"} and curves["n_labels"].max() == 30
    assert set(first) == {"gp", "astronomaly", "isolation_forest_rf", "isolation_forest"}
    assert metrics["ap_ratio_gp_vs_astronomaly"] == pytest.approx(
        metrics["methods"]["gp"]["average_precision"]["mean"] / metrics["methods"]["astronomaly"]["average_precision"]["mean"])
    none, _, _ = anomaly_experiment(x, odd * 0, n_components=4, budget=20, seeds=(0,), progress=False)
    assert none["n_anomalies"] == 0 and "threshold" in none["note"]


def test_astronomaly_combination_follows_labels_near_and_anomaly_score_far():
    s = np.array([0.8, 0.8, 0.8])
    u = np.array([0.0, 5.0, 0.0])
    near = astronomaly_combine(s, u, np.zeros(3), alpha=1.0)
    assert near == pytest.approx(s * (0.1 + 0.85 * u / 5))  # at a label: anomaly score x f(interest)
    far = astronomaly_combine(s, u, np.full(3, 10.0), alpha=1.0)
    assert far == pytest.approx(s, rel=1e-6)  # far from every label: the anomaly score alone
    mid = astronomaly_combine(s, u, np.full(3, 0.5), alpha=1.0)
    assert np.all(near <= mid) and np.all(mid <= far + 1e-12)


def test_forest_active_learning_labels_its_top_ranked_and_rejects_unknown_combine():
    x, odd, anom = planted()
    interest = np.rint(5 * odd)
    for combine in FOREST_COMBINES:
        scores, asked = forest_active_learning(x, interest, budget=30, batch=10, seed=0, combine=combine)
        assert len(asked) == 30 == len(set(asked)) and scores.shape == (len(x),)
    with pytest.raises(InputError, match="combine"):
        forest_active_learning(x, interest, budget=10, combine="magic")


def test_ring_labels_rule():
    df = pd.DataFrame({"Class2.2": [0.8, 0.8, 0.8, 0.2, 0.8, 0.8],
                       "Class6.1": [0.6, 0.6, 0.0, 0.6, 0.1, 0.6],
                       "Class8.1": [0.3, 0.01, 0.0, 0.3, 0.05, 0.1]})
    assert ring_labels(df, RingRule()).tolist() == [1, 0, 0, -1, -1, -1]
    with pytest.raises(InputError, match="Class8.1"):
        ring_labels(df.drop(columns="Class8.1"))


def test_plan_budgets():
    assert plan_budgets("auto", 40) == ([8, 32], ["budget 128 skipped: only 40 rings available for training"])
    assert plan_budgets("auto", 40, 8, 64, 2)[0] == [8, 16, 32]
    assert plan_budgets([4, 2], 5) == ([2, 4], [])
    with pytest.raises(InputError, match=r"budget\(s\) \[16\] exceed the 10 rings"):
        plan_budgets([8, 16], 10)
    assert plan_budgets("auto", 3, 8, 32) == ([], ["budget 8 skipped: only 3 rings available for training",
                                                    "budget 32 skipped: only 3 rings available for training"])


def test_finetune_arms_run_on_tiny_data():
    from gzmorph.represent import RepresentConfig, Representation, fit_representation

    rng = np.random.default_rng(0)
    n = 40
    labels = np.array([1] * 12 + [0] * 20 + [-1] * 8)
    imgs = rng.integers(0, 60, (n, 16, 16, 3), dtype=np.uint8)
    imgs[labels == 1, 4:12, 4:12] = 220  # rings are bright in the middle
    counts = np.zeros((n, 37), np.int64)
    counts[:, 0] = 40
    cfg = RepresentConfig(epochs=1, batch_size=8, augment=False, progress=False, model_kwargs={"widths": (4, 8, 8, 16)})
    model, norm, _ = fit_representation(imgs, counts, cfg)
    rep = Representation({"model_config": model.config, "state_dict": model.state_dict(), "image_size": 16,
                          "norm": norm}, device="cpu")
    emb = rep.embed(imgs)
    ft = FinetuneConfig(steps=2, head_steps=5, batch_size=8, seeds=(0,), augment=False, device="cpu")
    runs, summary = finetune_experiment(rep, imgs, emb, labels, [2, 4], ft, progress=False)
    assert len(runs) == 2 * 3 and set(runs["arm"]) == {"frozen", "finetuned", "scratch"}
    assert runs["accuracy"].between(0, 1).all() and runs["roc_auc"].between(0, 1).all()
    assert (runs["n_test"] == 8).all()  # round(0.3 * 12) rings + as many non-rings
    assert set(summary["frozen"]) == {"2", "4"} and "accuracy_sd" in summary["scratch"]["4"]
