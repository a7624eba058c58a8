"""Personalised anomaly detection in the representation (Walmsley et al. 2022, §6).

A simulated user scores interest ``round(5 x odd fraction)`` (Kaggle ``Class6.1``); the true
anomalies are galaxies with odd fraction > ``threshold``.  *GP*: embeddings -> PCA 40 ->
standardise -> Gaussian-process regression (RationalQuadratic + White kernel) of the user's
scores; ``initial`` random galaxies, then batches of ``batch`` chosen by expected
improvement, up to ``budget`` labels.  *Isolation forest*: sklearn ``IsolationForest`` on the
same features, no labels.  *Astronomaly* (Lochner & Bassett 2021, the paper's baseline): the
user labels the ``batch`` galaxies ranked highest by the current score (starting from the
isolation-forest ranking); a random-forest regressor predicts interest ``u`` from the
features and the score becomes ``S tanh(exp(d / alpha) - 1 + artanh(0.1 + 0.85 u / 5))`` with
``S`` the isolation-forest score rescaled to [0, 1] and ``d`` the distance to the nearest
labelled galaxy; ``alpha`` (``astronomaly_alpha``) is in units of the median distance between
nearest neighbours, so the prediction matters near labels and the anomaly score elsewhere.
*Isolation forest + RF trusted everywhere*: the same loop with ``S x (0.1 + u / 5)``, a
stronger variant reported beside it.  Every method ranks the galaxies it has labels for by the
user's score and the others by its prediction.  Metrics: precision in the top 50 / top 200 (the
true anomalies when that is smaller), recall in the top 200, average precision.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from .io import InputError
from .represent_settings import AnomalySettings
from .similarity import pca_reduce

log = logging.getLogger(__name__)





#: Methods of :func:`anomaly_experiment`, in report order; ``astronomaly`` is the paper's baseline.
ANOMALY_METHODS = {"gp": "GP + expected improvement",
                   "astronomaly": "isolation forest + RF active learning (Astronomaly)",
                   "isolation_forest_rf": "isolation forest + RF trusted everywhere",
                   "isolation_forest": "isolation forest (no labels)"}

#: How the isolation-forest + random-forest baseline combines the anomaly score with the predicted
#: interest ``u``: ``astronomaly`` weights the prediction by the distance to the nearest label
#: (Astronomaly's own rule, the paper's baseline); ``everywhere`` trusts it everywhere,
#: ``s_IF x (0.1 + u / 5)``, a stronger variant reported beside it.
FOREST_COMBINES = ("astronomaly", "everywhere")


def anomaly_features(vectors: np.ndarray, n_components: int = AnomalySettings.n_components,
                     seed: int = 0) -> np.ndarray:
    """PCA to ``n_components`` then standardised to zero mean, unit variance."""
    z = pca_reduce(vectors, n_components, seed)
    sd = z.std(0)
    return (z - z.mean(0)) / np.where(sd > 0, sd, 1.0)


def simulated_user(odd_fraction, threshold: float = AnomalySettings.threshold) -> tuple[np.ndarray, np.ndarray]:
    """Interest ``round(5 x odd)`` and anomaly flag ``odd > threshold``."""
    odd = np.nan_to_num(np.asarray(odd_fraction, float), nan=0.0)
    return np.rint(5 * odd), odd > threshold


def expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """Expected improvement over ``best`` of a Gaussian prediction ``(mu, sigma)``."""
    from scipy.stats import norm

    sigma = np.maximum(sigma, 1e-12)
    imp = mu - best - xi
    z = imp / sigma
    return imp * norm.cdf(z) + sigma * norm.pdf(z)


def _rank_scores(pred: np.ndarray, labelled: np.ndarray, interest: np.ndarray) -> np.ndarray:
    """Known interest for labelled galaxies, predictions for the rest."""
    s = np.asarray(pred, float).copy()
    s[labelled] = interest[labelled]
    return s


def _predict(gp, features: np.ndarray, chunk: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """The GP's mean and sd for every galaxy, ``chunk`` rows at a time: its kernel against the
    labelled galaxies is N × m floats (three such arrays while predicting), 4.8 GB at a million
    galaxies and the full budget, where a chunk holds 50,000 rows' worth."""
    parts = [gp.predict(features[i:i + chunk], return_std=True) for i in range(0, len(features), chunk)]
    if not parts:
        return np.zeros(0), np.zeros(0)
    return np.concatenate([m for m, _ in parts]), np.concatenate([s for _, s in parts])


def gp_active_learning(features: np.ndarray, interest: np.ndarray, budget: int = AnomalySettings.budget,
                       initial: int = AnomalySettings.initial, batch: int = AnomalySettings.batch,
                       seed: int = 0, callback=None) -> tuple[np.ndarray, list[int]]:
    """GP regression of the user's interest with expected-improvement acquisition.

    ``callback(n_labels, scores)`` is called after every fit.  Returns the final ranking scores
    and the labelled indices in the order they were asked.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RationalQuadratic, WhiteKernel

    n = len(features)
    rng = np.random.default_rng(seed)
    budget = min(budget, n)
    asked = list(rng.choice(n, size=min(initial, budget), replace=False))
    scores = np.zeros(n)
    while True:
        lab = np.array(asked)
        gp = GaussianProcessRegressor(RationalQuadratic() + WhiteKernel(), normalize_y=True,
                                      random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(features[lab], interest[lab])
        mu, sd = _predict(gp, features)
        mask = np.zeros(n, bool)
        mask[lab] = True
        scores = _rank_scores(mu, mask, interest)
        if callback:
            callback(len(asked), scores)
        if len(asked) >= budget:
            break
        ei = expected_improvement(mu, sd, float(interest[lab].max()))
        ei[mask] = -np.inf
        take = min(batch, budget - len(asked))
        asked += list(np.argsort(-ei, kind="stable")[:take])
    return scores, [int(i) for i in asked]


def isolation_forest_scores(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """Isolation-forest anomaly score, higher = more anomalous, rescaled to [0, 1]."""
    from sklearn.ensemble import IsolationForest

    s = -IsolationForest(n_estimators=200, random_state=seed).fit(features).score_samples(features)
    span = s.max() - s.min()
    return (s - s.min()) / span if span > 0 else np.zeros_like(s)


def nearest_spacing(features: np.ndarray) -> float:
    """Median distance from a galaxy to its nearest other galaxy: the unit of Astronomaly's alpha."""
    from scipy.spatial import cKDTree

    d, _ = cKDTree(features).query(features, k=2)
    return float(np.median(d[:, 1])) or 1.0


def astronomaly_combine(s_if: np.ndarray, u: np.ndarray, distance: np.ndarray, alpha: float) -> np.ndarray:
    """Lochner & Bassett (2021) trained score: ``S tanh(exp(d / alpha) - 1 + artanh(0.1 + 0.85 u / 5))``.

    Near a labelled galaxy (``d`` -> 0) the score is the anomaly score scaled by the predicted
    interest; far from every label it returns to the anomaly score.
    """
    f_u = 0.1 + 0.85 * np.clip(u, 0, 5) / 5.0
    return s_if * np.tanh(np.expm1(np.minimum(distance / alpha, 50.0)) + np.arctanh(f_u))


def forest_active_learning(features: np.ndarray, interest: np.ndarray, budget: int = AnomalySettings.budget,
                           batch: int = AnomalySettings.batch, seed: int = 0, callback=None, if_scores=None,
                           combine: str = "astronomaly", alpha: float = AnomalySettings.astronomaly_alpha,
                           spacing: float | None = None) -> tuple[np.ndarray, list[int]]:
    """Isolation forest + random-forest relevance active learning (see the module docstring).

    ``alpha`` is in units of ``spacing`` (default :func:`nearest_spacing` of the features;
    ``combine="astronomaly"`` only).
    """
    from scipy.spatial import cKDTree
    from sklearn.ensemble import RandomForestRegressor

    if combine not in FOREST_COMBINES:
        raise InputError(f"unknown combine {combine!r}; expected one of {FOREST_COMBINES}")
    n = len(features)
    s_if = isolation_forest_scores(features, seed) if if_scores is None else if_scores
    if combine == "astronomaly":
        scale = alpha * (nearest_spacing(features) if spacing is None else spacing)
    score = s_if.copy()
    asked: list[int] = []
    mask = np.zeros(n, bool)
    budget = min(budget, n)
    while len(asked) < budget:
        cand = np.where(mask, -np.inf, score)
        take = min(batch, budget - len(asked))
        new = list(np.argsort(-cand, kind="stable")[:take])
        asked += [int(i) for i in new]
        mask[new] = True
        lab = np.array(asked)
        rf = RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1)
        rf.fit(features[lab], interest[lab])
        u = rf.predict(features)
        u[mask] = interest[mask]  # labelled galaxies: the user's own score
        if combine == "astronomaly":  # labelled galaxies are at distance 0 from themselves
            score = astronomaly_combine(s_if, u, cKDTree(features[lab]).query(features)[0], scale)
        else:
            score = s_if * (0.1 + u / 5.0)
        if callback:
            callback(len(asked), score)
    return score, asked


def ranking_metrics(scores: np.ndarray, is_anomaly: np.ndarray, tops=(50, 200)) -> dict:
    """Precision in the top N (N capped at the number of true anomalies), recall in the top
    ``max(tops)``, average precision."""
    from sklearn.metrics import average_precision_score

    is_anomaly = np.asarray(is_anomaly, bool)
    n_anom = int(is_anomaly.sum())
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    out = {}
    for t in tops:
        n_eff = max(1, min(t, n_anom, len(order)))
        out[f"precision_top{t}"] = float(is_anomaly[order[:n_eff]].mean())
        out[f"top{t}_n"] = n_eff
    t = max(tops)
    out[f"recall_top{t}"] = float(is_anomaly[order[:t]].sum() / n_anom) if n_anom else float("nan")
    out["average_precision"] = float(average_precision_score(is_anomaly, scores)) if n_anom else float("nan")
    return out


def _seed_scores(feats: np.ndarray, interest: np.ndarray, settings: AnomalySettings, seed: int,
                 spacing: float, record) -> dict[str, np.ndarray]:
    """Final scores of every method of :data:`ANOMALY_METHODS` for one seed; ``record(method)``
    gives the callback that follows a method's learning curve."""
    s_if = isolation_forest_scores(feats, seed)
    scores = {"gp": gp_active_learning(feats, interest, settings.budget, settings.initial, settings.batch,
                                       seed, record("gp"))[0]}
    for method, combine in (("astronomaly", "astronomaly"), ("isolation_forest_rf", "everywhere")):
        scores[method] = forest_active_learning(feats, interest, settings.budget, settings.batch, seed,
                                                record(method), if_scores=s_if, combine=combine,
                                                alpha=settings.astronomaly_alpha, spacing=spacing)[0]
    scores["isolation_forest"] = s_if
    return scores


def _mean_sd(rows: list[dict]) -> dict:
    """Per method and metric, the mean and sd over seeds of the rows of :func:`ranking_metrics`."""
    methods = {}
    for m in ANOMALY_METHODS:
        vals = {k: np.array([r[m][k] for r in rows], float) for k in rows[0][m] if not k.endswith("_n")}
        methods[m] = {k: {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
                      for k, v in vals.items()}
    return methods


def _ratio(methods, a, b):
    """Ratio of the mean average precision of methods ``a`` and ``b`` (NaN when undefined)."""
    x, y = methods[a]["average_precision"]["mean"], methods[b]["average_precision"]["mean"]
    return float(x / y) if y and np.isfinite(x) and np.isfinite(y) else float("nan")


def anomaly_experiment(vectors: np.ndarray, odd_fraction, settings: AnomalySettings | None = None,
                       seed: int = 0, tops=(50, 200)):
    """Run every method of :data:`ANOMALY_METHODS` over ``settings.seeds`` seeds from ``seed``;
    return ``(metrics, curves table, final scores of the first seed per method)``."""
    settings = settings or AnomalySettings()
    seeds = [seed + i for i in range(settings.seeds)]
    interest, is_anom = simulated_user(odd_fraction, settings.threshold)
    n_anom = int(is_anom.sum())
    feats = anomaly_features(vectors, settings.n_components, seed=0)
    spacing = nearest_spacing(feats)
    rows, curves, first = [], [], {}
    tp = min(tops)
    for s in seeds:

        def record(method):
            def cb(n_labels, sc):
                curves.append({"method": method, "seed": int(s), "n_labels": int(n_labels),
                               f"precision_top{tp}": ranking_metrics(sc, is_anom, (tp,))[f"precision_top{tp}"]})
            return cb

        scores = _seed_scores(feats, interest, settings, s, spacing, record)
        row = {m: ranking_metrics(scores[m], is_anom, tops) for m in ANOMALY_METHODS}
        rows.append(row)
        log.info("seed %d: AP %s", s, ", ".join(f"{m} {r['average_precision']:.3f}" for m, r in row.items()))
        if not first:
            first = scores
    methods = _mean_sd(rows)
    per_seed = [{"seed": int(s), **{f"{m}_{k}": v for m, r in row.items() for k, v in r.items()}}
                for s, row in zip(seeds, rows)]
    metrics = {"n_galaxies": int(len(vectors)), "threshold": settings.threshold, "n_anomalies": n_anom,
               "anomaly_share": n_anom / max(1, len(vectors)), "budget": settings.budget,
               "initial": settings.initial, "batch": settings.batch, "n_components": int(feats.shape[1]),
               "astronomaly_alpha": settings.astronomaly_alpha, "seeds": [int(s) for s in seeds],
               "top_n": {f"top{t}": max(1, min(t, n_anom)) for t in tops},
               "methods": methods, "per_seed": per_seed,
               **{f"ap_ratio_gp_vs_{m}": _ratio(methods, "gp", m) for m in ANOMALY_METHODS if m != "gp"}}
    if n_anom == 0:
        metrics["note"] = (f"no galaxy has odd fraction > {settings.threshold}: lower "
                           "represent.anomalies.threshold to get true anomalies")
    return metrics, pd.DataFrame(curves), first
