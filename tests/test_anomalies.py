"""Personalised anomaly detection: ranking metrics, GP and forest active learning, the experiment."""

import numpy as np
import pytest

from gzmorph.anomalies import (
    FOREST_COMBINES, AnomalySettings, anomaly_experiment, astronomaly_combine, expected_improvement,
    forest_active_learning, gp_active_learning, isolation_forest_scores, ranking_metrics,
)
from gzmorph.io import InputError


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


def test_the_gp_predicts_in_chunks_as_it_would_at_once():
    """Every galaxy's GP mean and sd, a chunk of rows at a time: the figures of one call (up to
    rounding; the sd of a labelled galaxy, ~1e-5, is the square root of a difference of near-equal
    numbers)."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    from gzmorph.anomalies import _predict

    rng = np.random.default_rng(0)
    x = rng.normal(size=(103, 4))
    gp = GaussianProcessRegressor(normalize_y=True).fit(x[:20], x[:20, 0] ** 2)
    mu, sd = gp.predict(x, return_std=True)
    for chunk in (1, 10, 50_000):
        m, s = _predict(gp, x, chunk)
        assert np.allclose(m, mu, rtol=1e-9, atol=1e-12) and np.allclose(s, sd, rtol=1e-9, atol=1e-8)


def test_anomaly_experiment_reports_all_methods():
    x, odd, _ = planted(n=200, n_anom=8)
    metrics, curves, first = anomaly_experiment(x, odd, AnomalySettings(n_components=4, budget=30, seeds=2),
                                                tops=(5, 20))
    assert metrics["n_anomalies"] == 8 and metrics["top_n"] == {"top5": 5, "top20": 8}
    for m in ("gp", "astronomaly", "isolation_forest_rf", "isolation_forest"):
        ap = metrics["methods"][m]["average_precision"]
        assert 0 <= ap["mean"] <= 1 and ap["sd"] >= 0
    assert set(curves["method"]) == {"gp", "astronomaly", "isolation_forest_rf"} and curves["n_labels"].max() == 30
    assert set(first) == {"gp", "astronomaly", "isolation_forest_rf", "isolation_forest"}
    assert metrics["ap_ratio_gp_vs_astronomaly"] == pytest.approx(
        metrics["methods"]["gp"]["average_precision"]["mean"] / metrics["methods"]["astronomaly"]["average_precision"]["mean"])
    none, _, _ = anomaly_experiment(x, odd * 0, AnomalySettings(n_components=4, budget=20, seeds=1))
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


def outliers_of_two_kinds(n=400, seed=0):
    """15 boring outliers (far along axis 0) and 15 interesting ones (far along axis 1): an isolation
    forest ranks both kinds alike, and only the user's interest labels tell them apart."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 6))
    boring, anom = np.split(rng.choice(n, 30, replace=False), 2)
    x[boring, 0] = rng.uniform(4, 7, 15)
    x[anom, 1] = rng.uniform(4, 7, 15)
    interest = np.zeros(n)
    interest[anom] = 5
    return x, interest, anom


def test_forest_active_learning_labels_its_top_ranked_and_rejects_unknown_combine():
    x, interest, anom = outliers_of_two_kinds()
    is_anom = np.isin(np.arange(len(x)), anom)
    s_if = isolation_forest_scores(x, 0)
    ap_if = ranking_metrics(s_if, is_anom, (15,))["average_precision"]
    ap = {}
    for combine in FOREST_COMBINES:
        scores, asked = forest_active_learning(x, interest, budget=20, batch=10, seed=0, combine=combine)
        assert len(asked) == 20 == len(set(asked)) and scores.shape == (len(x),)
        assert asked[:10] == list(np.argsort(-s_if, kind="stable")[:10])  # first batch: the forest's top 10
        ap[combine] = ranking_metrics(scores, is_anom, (15,))["average_precision"]
    # labels lift the interesting outliers above the boring ones: everywhere (RF relevance on every
    # galaxy) separates them fully; astronomaly's only near its labels, so it gains less
    assert ap_if < 0.8 and ap["everywhere"] > 0.95 and ap["astronomaly"] > ap_if
    with pytest.raises(InputError, match="combine"):
        forest_active_learning(x, interest, budget=10, combine="magic")
