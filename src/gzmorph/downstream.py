"""Downstream uses of the representation (Walmsley et al. 2022, §5-6): similarity search,
personalised anomaly detection and fine-tuning from few labels.

Similarity
    embeddings -> PCA (10 components) -> Euclidean nearest neighbours (ball tree).
    ``precision@k``: for every labelled (curated) galaxy as the query, the share of its ``k``
    nearest labelled neighbours with the same curated label, averaged; the *base rate* beside it
    is what random neighbours would give, ``sum_c p_c (n_c - 1) / (n - 1)``.  For synthetic
    galaxies the same is computed over all galaxies with their true morphology (``true_kind``).

Anomalies
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

Fine-tuning (rings)
    Ring: ``Class6.1 >= min_odd`` and ring share of the odd votes ``Class8.1 / Class6.1 >
    ring_min``; not ring: ``Class8.1 / Class6.1 < not_ring_max`` (0 where nobody answered
    question 8); both among featured, face-on galaxies (``Class2.2 >= min_face_on``).  Per seed a
    balanced test set of ``test_fraction`` of the rings (and as many non-rings) is held out; the
    training sets are nested balanced sets of ``budget`` rings + ``budget`` non-rings.  Arms:
    ``frozen`` (fixed representation + a linear head), ``finetuned`` (representation + a new head,
    all weights trained), ``scratch`` (the same architecture from random weights); all trained by
    :func:`gzmorph.train.fit` for a fixed number of optimiser steps.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .io import InputError

# --------------------------------------------------------------------------- workflow options

#: Defaults of the ``represent:`` config block (workflow/rules/represent.smk); laptop scale: the
#: synthetic default run's whole stage takes about 2.5 minutes on 2 CPU cores.
from .settings import deep_merge

WORKFLOW_DEFAULTS = {
    "backbone": "cnn", "model_kwargs": {}, "pretrained": "", "epochs": 3, "batch_size": 64, "lr": 0.002,
    "weight_decay": 0.0001, "val_fraction": 0.1, "patience": 0, "augment": True, "n_volunteers": 40,
    "sum_tolerance": 0.02, "device": "auto", "amp": "auto", "threads": 2, "gpu_mem_mb": 16000, "runtime": 240,
    "embed_batch_size": 256, "map_method": "auto",
    "similarity": {"n_components": 10, "k": 10, "query_ids": []},
    "anomalies": {"n_components": 40, "threshold": 0.9, "initial": 10, "batch": 10, "budget": 200, "seeds": 3,
                  "astronomaly_alpha": 1.0},
    "finetune": {"ring_min": 0.25, "not_ring_max": 0.05, "min_odd": 0.3, "min_face_on": 0.5,
                 "budgets": "auto", "min_budget": 8, "max_budget": 256, "budget_factor": 4,
                 "test_fraction": 0.3, "seeds": 2, "steps": 30, "head_steps": 200, "batch_size": 32,
                 "lr": 0.001, "lr_finetune": 0.0003, "lr_head": 0.01, "augment": True,
                 "arms": ["frozen", "finetuned", "scratch"]},
}
_TRAIN_KEYS = ("backbone", "model_kwargs", "epochs", "batch_size", "lr", "weight_decay", "val_fraction",
               "augment", "n_volunteers", "sum_tolerance", "device", "amp")


def workflow_options(given: dict | None, seed: int = 0) -> tuple[dict, dict]:
    """The ``represent:`` config merged over :data:`WORKFLOW_DEFAULTS`, and the keyword
    arguments of :func:`train_representation` it implies."""
    rep = deep_merge(WORKFLOW_DEFAULTS, given)
    opts = {k: rep[k] for k in _TRAIN_KEYS}
    opts["pretrained"] = rep["pretrained"] or None
    opts["patience"] = rep["patience"] or None
    opts["seed"] = int(seed)
    return rep, opts


# --------------------------------------------------------------------------- similarity


def pca_reduce(vectors: np.ndarray, n_components: int = 10, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    n = max(1, min(int(n_components), vectors.shape[1], len(vectors)))
    return PCA(n_components=n, random_state=seed).fit_transform(np.asarray(vectors, np.float64))


def _nn(z: np.ndarray, k: int):
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k, algorithm="ball_tree").fit(z)


def base_rate(labels) -> float:
    """Expected share of same-label neighbours for random neighbours (without the query itself)."""
    labels = pd.Series(labels).dropna()
    n = len(labels)
    if n < 2:
        return float("nan")
    c = labels.value_counts().to_numpy(float)
    return float(np.sum(c / n * (c - 1) / (n - 1)))


def precision_at_k(z: np.ndarray, labels, k: int = 10) -> dict:
    """Mean share of the ``k`` nearest neighbours (self excluded) with the query's label, every
    galaxy of ``z`` a query; per label too."""
    labels = np.asarray(labels)
    n = len(z)
    if n < 2:
        raise InputError(f"precision@{k} needs at least 2 labelled galaxies, got {n}")
    kk = min(k, n - 1)
    _, idx = _nn(z, kk).kneighbors(None, n_neighbors=kk)  # X=None: each point's neighbours without itself
    same = labels[idx] == labels[:, None]
    per = same.mean(1)
    per_label = pd.Series(per).groupby(labels).mean()
    return {"precision": float(per.mean()), "k": int(kk), "n_queries": int(n),
            "base_rate": base_rate(labels),
            "per_label": {str(k_): float(v) for k_, v in per_label.items()}}


def truth_column(df: pd.DataFrame) -> str | None:
    """Column with the true morphology category of synthetic galaxies, if any."""
    for c in ("true_kind", "true_label", "true_morphology"):
        if c in df.columns and df[c].notna().any() and df[c].nunique() <= max(50, len(df) // 10):
            return c
    return None


def default_queries(curated: pd.DataFrame) -> list[int]:
    """One query per curated class (in label order): its most confident galaxy."""
    df = curated.sort_values(["label", "confidence"] if "confidence" in curated.columns else ["label"],
                             ascending=[True, False] if "confidence" in curated.columns else [True],
                             kind="stable") if "label" in curated.columns else curated
    return [int(i) for i in df.drop_duplicates("label_name")["id"]]


def similarity_search(ids, vectors: np.ndarray, curated: pd.DataFrame, source: pd.DataFrame | None = None,
                      query_ids=None, n_components: int = 10, k: int = 10, seed: int = 0):
    """Neighbours of the query galaxies (among all galaxies) and precision metrics.

    Returns ``(neighbours table, metrics dict)``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    z = pca_reduce(vectors, n_components, seed)
    pos = pd.Series(np.arange(len(ids)), index=ids)
    if query_ids is None or len(query_ids) == 0:
        query_ids = default_queries(curated)
    unknown = [q for q in query_ids if int(q) not in pos.index]
    if unknown:
        raise InputError(f"similarity query id(s) {unknown[:10]} do not exist among the {len(ids)} "
                         "embedded galaxies")
    label_of = dict(zip(curated["id"].astype(np.int64), curated["label_name"]))
    nn = _nn(z, min(k + 1, len(z)))
    rows = []
    for q in query_ids:
        dist, idx = nn.kneighbors(z[[pos[int(q)]]], n_neighbors=min(k + 1, len(z)))
        rank = 0
        for d, i in zip(dist[0], idx[0]):
            if ids[i] == int(q):
                continue
            rank += 1
            if rank > k:
                break
            rows.append({"query_id": int(q), "query_label": label_of.get(int(q)), "rank": rank,
                         "neighbour_id": int(ids[i]), "distance": float(d),
                         "neighbour_label": label_of.get(int(ids[i]))})
    table = pd.DataFrame(rows, columns=["query_id", "query_label", "rank", "neighbour_id", "distance",
                                        "neighbour_label"])
    lab = curated[curated["id"].astype(np.int64).isin(pos.index)]
    lab_idx = pos.loc[lab["id"].astype(np.int64)].to_numpy()
    p = precision_at_k(z[lab_idx], lab["label_name"].to_numpy(), k)
    metrics = {"k": p["k"], "n_components": int(z.shape[1]), "n_galaxies": int(len(ids)),
               "n_labelled": p["n_queries"], "precision_at_k": p["precision"], "base_rate": p["base_rate"],
               "lift": p["precision"] / p["base_rate"] if p["base_rate"] else float("nan"),
               "precision_per_label": p["per_label"], "query_ids": [int(q) for q in query_ids],
               "query_neighbours_same_label": float(
                   (table["neighbour_label"] == table["query_label"]).mean()) if len(table) else float("nan")}
    if source is not None:
        col = truth_column(source)
        if col:
            t = source[["id", col]].dropna()
            t = t[t["id"].astype(np.int64).isin(pos.index)]
            pt = precision_at_k(z[pos.loc[t["id"].astype(np.int64)].to_numpy()], t[col].astype(str).to_numpy(), k)
            metrics["truth"] = {"column": col, "n_galaxies": pt["n_queries"], "precision_at_k": pt["precision"],
                                "base_rate": pt["base_rate"], "precision_per_kind": pt["per_label"]}
    return table, metrics


# --------------------------------------------------------------------------- anomalies


def anomaly_features(vectors: np.ndarray, n_components: int = 40, seed: int = 0) -> np.ndarray:
    """PCA to ``n_components`` then standardised to zero mean, unit variance."""
    z = pca_reduce(vectors, n_components, seed)
    sd = z.std(0)
    return (z - z.mean(0)) / np.where(sd > 0, sd, 1.0)


def simulated_user(odd_fraction, threshold: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Interest ``round(5 x odd)`` and anomaly flag ``odd > threshold``."""
    odd = np.nan_to_num(np.asarray(odd_fraction, float), nan=0.0)
    return np.rint(5 * odd), odd > threshold


def expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    from scipy.stats import norm

    sigma = np.maximum(sigma, 1e-12)
    imp = mu - best - xi
    z = imp / sigma
    return imp * norm.cdf(z) + sigma * norm.pdf(z)


def _rank_scores(pred: np.ndarray, labelled: np.ndarray, interest: np.ndarray) -> np.ndarray:
    """Known interest for labelled galaxies (plus a large offset so they keep their order
    relative to predictions on the same scale), predictions for the rest."""
    s = np.asarray(pred, float).copy()
    s[labelled] = interest[labelled]
    return s


def gp_active_learning(features: np.ndarray, interest: np.ndarray, budget: int = 200, initial: int = 10,
                       batch: int = 10, seed: int = 0, callback=None) -> tuple[np.ndarray, list[int]]:
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
        mu, sd = gp.predict(features, return_std=True)
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


#: How the isolation-forest + random-forest baseline combines the anomaly score with the predicted
#: interest ``u``: ``astronomaly`` weights the prediction by the distance to the nearest label
#: (Astronomaly's own rule, the paper's baseline); ``everywhere`` trusts it everywhere,
#: ``s_IF x (0.1 + u / 5)``, a stronger variant reported beside it.
FOREST_COMBINES = ("astronomaly", "everywhere")


def forest_active_learning(features: np.ndarray, interest: np.ndarray, budget: int = 200, batch: int = 10,
                           seed: int = 0, callback=None, if_scores=None, combine: str = "astronomaly",
                           alpha: float = 1.0, spacing: float | None = None) -> tuple[np.ndarray, list[int]]:
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


#: Methods of :func:`anomaly_experiment`, in report order; ``astronomaly`` is the paper's baseline.
ANOMALY_METHODS = {"gp": "GP + expected improvement",
                   "astronomaly": "isolation forest + RF active learning (Astronomaly)",
                   "isolation_forest_rf": "isolation forest + RF trusted everywhere",
                   "isolation_forest": "isolation forest (no labels)"}


def anomaly_experiment(vectors: np.ndarray, odd_fraction, *, threshold: float = 0.9, n_components: int = 40,
                       budget: int = 200, initial: int = 10, batch: int = 10, seeds=(0, 1, 2),
                       tops=(50, 200), alpha: float = 1.0, progress: bool = True):
    """Run every method of :data:`ANOMALY_METHODS` over ``seeds``; return ``(metrics, curves table,
    final scores of the first seed per method)``."""
    interest, is_anom = simulated_user(odd_fraction, threshold)
    n_anom = int(is_anom.sum())
    feats = anomaly_features(vectors, n_components, seed=0)
    spacing = nearest_spacing(feats)
    rows, curves, first = [], [], {}
    tp = min(tops)
    for s in seeds:

        def record(method):
            def cb(n_labels, sc):
                curves.append({"method": method, "seed": int(s), "n_labels": int(n_labels),
                               f"precision_top{tp}": ranking_metrics(sc, is_anom, (tp,))[f"precision_top{tp}"]})
            return cb

        s_if = isolation_forest_scores(feats, s)
        scores = {"gp": gp_active_learning(feats, interest, budget, initial, batch, s, record("gp"))[0]}
        for method, combine in (("astronomaly", "astronomaly"), ("isolation_forest_rf", "everywhere")):
            scores[method] = forest_active_learning(feats, interest, budget, batch, s, record(method),
                                                    if_scores=s_if, combine=combine, alpha=alpha,
                                                    spacing=spacing)[0]
        scores["isolation_forest"] = s_if
        row = {m: ranking_metrics(scores[m], is_anom, tops) for m in ANOMALY_METHODS}
        rows.append(row)
        if progress:
            print(f"[anomalies] seed {s}: AP " + ", ".join(f"{m} {r['average_precision']:.3f}" for m, r in row.items()),
                  file=sys.stderr)
        if not first:
            first = scores
    methods = {}
    for m in ANOMALY_METHODS:
        vals = {k: np.array([r[m][k] for r in rows], float) for k in rows[0][m] if not k.endswith("_n")}
        methods[m] = {k: {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
                      for k, v in vals.items()}
    per_seed = [{"seed": int(s), **{f"{m}_{k}": v for m, r in row.items() for k, v in r.items()}}
                for s, row in zip(seeds, rows)]
    metrics = {"n_galaxies": int(len(vectors)), "threshold": threshold, "n_anomalies": n_anom,
               "anomaly_share": n_anom / max(1, len(vectors)), "budget": budget, "initial": initial,
               "batch": batch, "n_components": int(feats.shape[1]), "astronomaly_alpha": alpha,
               "seeds": [int(s) for s in seeds], "top_n": {f"top{t}": max(1, min(t, n_anom)) for t in tops},
               "methods": methods, "per_seed": per_seed,
               **{f"ap_ratio_gp_vs_{m}": _ratio(methods, "gp", m) for m in ANOMALY_METHODS if m != "gp"}}
    if n_anom == 0:
        metrics["note"] = (f"no galaxy has odd fraction > {threshold}: lower represent.anomalies.threshold "
                           "to get true anomalies")
    return metrics, pd.DataFrame(curves), first


def _ratio(methods, a, b):
    x, y = methods[a]["average_precision"]["mean"], methods[b]["average_precision"]["mean"]
    return float(x / y) if y and np.isfinite(x) and np.isfinite(y) else float("nan")


# --------------------------------------------------------------------------- fine-tuning


@dataclass
class RingRule:
    ring_min: float = 0.25
    not_ring_max: float = 0.05
    min_odd: float = 0.3
    min_face_on: float = 0.5

    def describe(self) -> str:
        return (f"featured face-on galaxies (Class2.2 >= {self.min_face_on}); ring: Class6.1 >= {self.min_odd} "
                f"and ring share of the odd votes Class8.1/Class6.1 > {self.ring_min}; not ring: "
                f"Class8.1/Class6.1 < {self.not_ring_max} (0 where nobody called it odd)")


def ring_labels(df: pd.DataFrame, rule: RingRule | None = None) -> np.ndarray:
    """1 = ring, 0 = clearly not a ring, -1 = neither (left out)."""
    rule = rule or RingRule()
    need = ["Class2.2", "Class6.1", "Class8.1"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(f"ring labels need the vote-fraction columns {missing}")
    odd = df["Class6.1"].to_numpy(float)
    ring = df["Class8.1"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(odd > 0, ring / np.where(odd > 0, odd, 1), 0.0)
    face_on = df["Class2.2"].to_numpy(float) >= rule.min_face_on
    known = np.isfinite(share)
    out = np.full(len(df), -1, dtype=np.int64)
    out[face_on & known & (share < rule.not_ring_max)] = 0
    out[face_on & known & (odd >= rule.min_odd) & (share > rule.ring_min)] = 1
    return out


def plan_budgets(budgets, n_available: int, min_budget: int = 8, max_budget: int = 256,
                 factor: float = 4.0) -> tuple[list[int], list[str]]:
    """Label budgets (positives per training set) and notes on the ones skipped.

    ``budgets="auto"``: ``min_budget x factor^i`` up to ``max_budget``; those above the available
    positives are skipped with a note.  An explicit list is taken as asked: a budget above the
    available positives is an ``InputError``.
    """
    if budgets in ("auto", None):
        cand, b = [], float(min_budget)
        while b <= max_budget + 1e-9:
            cand.append(int(round(b)))
            b *= factor
        keep = [b for b in cand if b <= n_available]
        notes = [f"budget {b} skipped: only {n_available} rings available for training" for b in cand if b > n_available]
        return keep, notes
    budgets = sorted(int(b) for b in budgets)
    too_big = [b for b in budgets if b > n_available]
    if too_big:
        raise InputError(f"fine-tuning label budget(s) {too_big} exceed the {n_available} rings available for "
                         "training (after holding out the test set); lower represent.finetune.budgets")
    if any(b < 1 for b in budgets):
        raise InputError(f"fine-tuning label budgets must be >= 1, got {budgets}")
    return budgets, []


@dataclass
class FinetuneConfig:
    steps: int = 30
    batch_size: int = 32
    lr: float = 1e-3  # from-scratch model and the new head of the fine-tuned arm
    lr_finetune: float = 3e-4  # the backbone of the fine-tuned representation
    lr_head: float = 1e-2  # the linear head on the frozen representation
    head_steps: int = 200
    augment: bool | dict = True
    test_fraction: float = 0.3
    seeds: tuple = (0, 1)
    arms: tuple = ("frozen", "finetuned", "scratch")
    device: str = "auto"


def _quiet_fit(*args, **kwargs):
    from .train import fit

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        return fit(*args, progress=False, **kwargs)


def _binary_metrics(logits, y: np.ndarray) -> dict:
    import torch
    from sklearn.metrics import roc_auc_score

    p = torch.softmax(logits.float(), 1)[:, 1].numpy()
    acc = float(((p > 0.5).astype(int) == y).mean())
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    return {"accuracy": acc, "roc_auc": auc}


def _train_image_arm(model, images, y, cfg: FinetuneConfig, norm, lr_groups, seed, device):
    import torch

    from . import augment as A

    n = len(images)
    bs = max(2, min(cfg.batch_size, n))
    spe = max(1, n // bs)
    epochs = max(1, math.ceil(cfg.steps / spe))
    transform = A.BatchTransform(norm["mean"], norm["std"], A.AugmentConfig.from_value(cfg.augment))
    _quiet_fit(model, torch.nn.CrossEntropyLoss(), (torch.from_numpy(images), torch.as_tensor(y)), None,
               epochs=epochs, batch_size=bs, seed=seed, optimizer=lambda p: torch.optim.AdamW(lr_groups(model)),
               transform=transform, device=device)
    return transform


def finetune_experiment(rep, images: np.ndarray, embeddings: np.ndarray, labels: np.ndarray,
                        budgets, cfg: FinetuneConfig, budget_notes=None, progress: bool = True):
    """All arms x budgets x seeds.  ``images``, ``embeddings`` and ``labels`` (1/0/-1) are aligned.

    ``rep`` is a :class:`gzmorph.represent.Representation`.  Returns ``(runs table, summary dict)``.
    """
    from .represent import flush_denormal

    with flush_denormal():
        return _finetune_experiment(rep, images, embeddings, labels, budgets, cfg, progress)


def _finetune_experiment(rep, images, embeddings, labels, budgets, cfg, progress):
    import torch

    from .models import create_model
    from .train import pick_device, predict_tensor

    device = pick_device(cfg.device)
    pos_all, neg_all = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    runs = []
    unknown = set(cfg.arms) - {"frozen", "finetuned", "scratch"}
    if unknown:
        raise InputError(f"fine-tuning arms {sorted(unknown)} unknown; choose from frozen, finetuned, scratch")
    for seed in cfg.seeds:
        rng = np.random.default_rng(seed)
        pos, neg = rng.permutation(pos_all), rng.permutation(neg_all)
        n_test = max(2, int(round(cfg.test_fraction * len(pos))))
        test = np.concatenate([pos[:n_test], neg[:n_test]])
        y_test = labels[test]
        pool_pos, pool_neg = pos[n_test:], neg[n_test:]
        for b in budgets:
            tr = np.concatenate([pool_pos[:b], pool_neg[:b]])
            y_tr = labels[tr]
            for arm in cfg.arms:
                torch.manual_seed(seed)
                if arm == "frozen":
                    e_tr = torch.from_numpy(embeddings[tr])
                    mu, sd = e_tr.mean(0), e_tr.std(0).clamp_min(1e-6)
                    head = torch.nn.Linear(embeddings.shape[1], 2)
                    n = len(tr)
                    bs = max(2, min(cfg.batch_size, n))
                    epochs = max(1, math.ceil(cfg.head_steps / max(1, n // bs)))
                    _quiet_fit(head, torch.nn.CrossEntropyLoss(), ((e_tr - mu) / sd, torch.as_tensor(y_tr)), None,
                               epochs=epochs, batch_size=bs, seed=seed,
                               optimizer=lambda p: torch.optim.AdamW(p, lr=cfg.lr_head, weight_decay=1e-2),
                               device=device)
                    out = predict_tensor(head, (torch.from_numpy(embeddings[test]) - mu) / sd, device=device)
                elif arm == "finetuned":
                    model = copy.deepcopy(rep.model).cpu()
                    model.head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(model.num_features, 2))
                    tf = _train_image_arm(model, images[tr], y_tr, cfg, rep.norm,
                                          lambda m: [{"params": m.backbone.parameters(), "lr": cfg.lr_finetune},
                                                     {"params": m.head.parameters(), "lr": cfg.lr}], seed, device)
                    out = predict_tensor(model, torch.from_numpy(images[test]), tf, device=device)
                else:
                    c = dict(rep.bundle["model_config"])
                    model = create_model(c.pop("name"), 2, c.pop("image_size"),
                                         **{k: v for k, v in c.items() if k != "num_classes"})
                    tf = _train_image_arm(model, images[tr], y_tr, cfg, rep.norm,
                                          lambda m: [{"params": m.parameters(), "lr": cfg.lr}], seed, device)
                    out = predict_tensor(model, torch.from_numpy(images[test]), tf, device=device)
                m = _binary_metrics(out, y_test)
                runs.append({"seed": int(seed), "budget": int(b), "arm": arm, "n_train": int(len(tr)),
                             "n_test": int(len(test)), **m})
                if progress:
                    print(f"[finetune] seed {seed} budget {b} {arm}: accuracy {m['accuracy']:.3f}, "
                          f"AUC {m['roc_auc']:.3f}", file=sys.stderr)
    df = pd.DataFrame(runs)
    summary = {}
    for arm, g in df.groupby("arm", sort=False):
        summary[arm] = {}
        for b, gb in g.groupby("budget"):
            summary[arm][str(b)] = {}
            for k in ("accuracy", "roc_auc"):
                summary[arm][str(b)][f"{k}_mean"] = float(gb[k].mean())
                summary[arm][str(b)][f"{k}_sd"] = float(gb[k].std(ddof=1)) if len(gb) > 1 else 0.0
            summary[arm][str(b)]["n_seeds"] = int(len(gb))
    return df, summary


def run_finetune(model_path, images_path, embeddings_path, source_path, params: dict):
    """The ``finetune`` rule: ring labels from the source votes, budgets, all arms.  Returns
    ``(metrics dict, runs table)``."""
    from .imageset import read_images
    from .represent import load_representation, read_embeddings

    rule = RingRule(**{k: params[k] for k in ("ring_min", "not_ring_max", "min_odd", "min_face_on")})
    source = pd.read_parquet(source_path)
    ids, emb = read_embeddings(embeddings_path)
    img_ids, imgs = read_images(images_path)
    src = source.set_index("id").reindex(ids)
    labels = ring_labels(src.reset_index(), rule)
    sel = np.flatnonzero(labels >= 0)
    pos_img = pd.Series(np.arange(len(img_ids)), index=img_ids)
    images = imgs[pos_img.loc[ids[sel]].to_numpy()]
    labels_sel, emb_sel = labels[sel], emb[sel]
    n_pos, n_neg = int((labels_sel == 1).sum()), int((labels_sel == 0).sum())
    tf = float(params["test_fraction"])
    n_test = max(2, int(round(tf * n_pos)))
    available = max(0, min(n_pos, n_neg) - n_test)
    if available < 1 and params["budgets"] not in ("auto", None):
        raise InputError(f"fine-tuning: {n_pos} rings and {n_neg} non-rings ({rule.describe()}): too few to hold "
                         f"out a test set of {n_test} each and train on budgets {params['budgets']}")
    budgets, notes = plan_budgets(params["budgets"], available, params["min_budget"], params["max_budget"],
                                  params["budget_factor"])
    metrics = {"task": "ring vs not ring", "rule": rule.describe(), "n_rings": n_pos, "n_not_rings": n_neg,
               "n_test_per_class": n_test, "available_for_training": int(available), "budgets": budgets,
               "notes": notes}
    if not budgets:
        metrics["notes"] = notes + [f"no fine-tuning run: {n_pos} rings leave {available} for training after the "
                                    f"test set, fewer than the smallest budget {params['min_budget']}"]
        metrics.update(seeds=[], steps=params["steps"], head_steps=params["head_steps"], arms={})
        return metrics, pd.DataFrame(columns=["seed", "budget", "arm", "n_train", "n_test", "accuracy", "roc_auc"])
    seed0 = int(params.get("seed", 0))
    cfg = FinetuneConfig(steps=params["steps"], batch_size=params["batch_size"], lr=params["lr"],
                         lr_finetune=params["lr_finetune"], lr_head=params.get("lr_head", 1e-2),
                         head_steps=params["head_steps"],
                         augment=params["augment"], test_fraction=tf,
                         seeds=tuple(seed0 + i for i in range(int(params["seeds"]))), arms=tuple(params["arms"]),
                         device=params.get("device", "auto"))
    rep = load_representation(model_path, "cpu")
    runs, summary = finetune_experiment(rep, images, emb_sel, labels_sel, budgets, cfg)
    metrics.update(seeds=list(cfg.seeds), steps=cfg.steps, head_steps=cfg.head_steps, arms=summary)
    return metrics, runs


# --------------------------------------------------------------------------- report


def similarity_gallery(table: pd.DataFrame, images_path, out_path, max_queries: int = 12) -> None:
    """PNG: one row per query (query first, then its neighbours by rank)."""
    from matplotlib.figure import Figure

    from .imageset import read_images
    from .io import atomic_path

    queries = list(dict.fromkeys(table["query_id"]))[:max_queries]
    k = int(table["rank"].max()) if len(table) else 0
    fig = Figure(figsize=(1.1 * (k + 1), 1.2 * max(1, len(queries))))
    axes = fig.subplots(max(1, len(queries)), k + 1, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, q in enumerate(queries):
        t = table[table["query_id"] == q].sort_values("rank")
        ids = [int(q)] + t["neighbour_id"].astype(int).tolist()
        _, imgs = read_images(images_path, ids)
        for c, img in enumerate(imgs):
            axes[r, c].imshow(img)
            lab = t["query_label"].iloc[0] if c == 0 else t["neighbour_label"].iloc[c - 1]
            axes[r, c].set_title(("query: " if c == 0 else f"{c}: ") + (str(lab) if lab else "–"), fontsize=6)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _fmt_ms(d: dict) -> str:
    return f"{d['mean']:.3f} ± {d['sd']:.3f}"


def represent_section(part: str, inputs: dict):
    """The report section of one part of the stage; ``inputs`` are the rule's input paths."""
    from . import report as R

    builder = {"embeddings": _embeddings_section, "similarity": _similarity_section,
               "anomalies": _anomalies_section, "finetune": _finetune_section}[part]
    return builder(inputs, R)


def _embeddings_section(inp, R):
    import json

    from .curate import read_catalogue
    from .io import load_bundle
    from .represent import MODEL_FORMAT

    bundle = load_bundle(inp["model"], MODEL_FORMAT, "representation model file")
    m = pd.read_parquet(inp["map"])
    curated, classes = read_catalogue(inp["curated"])
    source = pd.read_parquet(inp["source"], columns=["id", "Class6.1"])
    training = pd.read_csv(inp["training"], sep="\t")
    qc = json.loads(open(inp["qc"]).read())
    sec = R.Section("Representation (Zoobot-style)", anchor="represent-embeddings",
                    order=R.ORDER["embeddings"], summary="one model answering every decision-tree question")
    cfg = bundle["config"]
    last = training.iloc[-1] if len(training) else {}
    sec.add(R.paragraph(
        f"A {bundle['model_config']['name']} backbone at {bundle['image_size']} px with one output per answer "
        f"({len(bundle['answers'])}) is trained on every galaxy of the source with the negative log "
        "Dirichlet-multinomial likelihood of each question's vote counts (concentration 1 + 100·sigmoid). "
        + ("Vote counts come from the catalogue." if bundle["count_source"] == "counts" else
           f"The catalogue has only cumulative vote fractions: counts are conditional fraction × reach × "
           f"{cfg['n_volunteers']} volunteers, rounded.") +
        f" The {bundle['num_features']}-d pooled layer is the representation."))
    sec.add(R.metrics({"galaxies": int(bundle["n_galaxies"]), "embedding dim": int(bundle["num_features"]),
                       "epochs": int(len(training)), "final val loss": float(last.get("val_loss", float("nan"))),
                       "skipped images": int(qc.get("n_corrupt_images", 0))}, float_format="{:.3f}"))
    fig = R.new_figure((5.2, 3.0))
    ax = fig.add_subplot()
    ax.plot(training["epoch"], training["train_loss"], "o-", label="train")
    if "val_loss" in training:
        ax.plot(training["epoch"], training["val_loss"], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per galaxy (−log likelihood)")
    ax.legend(frameon=False)
    R.style_axes(ax)
    fig2 = R.new_figure((10, 4.2))
    a1, a2 = fig2.subplots(1, 2)
    lab = m.merge(curated[["id", "label_name"]], on="id", how="left")
    a1.scatter(lab["x"], lab["y"], s=3, c="#c8ccd6", label="not in the cut")
    for name in classes:
        g = lab[lab["label_name"] == name]
        a1.scatter(g["x"], g["y"], s=4, label=f"{name} ({len(g)})")
    a1.legend(markerscale=3, fontsize=7, frameon=False)
    a1.set_title("curated label", fontsize=9)
    odd = m.merge(source, on="id", how="left")
    sc = a2.scatter(odd["x"], odd["y"], s=3, c=odd["Class6.1"], cmap="viridis")
    fig2.colorbar(sc, ax=a2, label="odd fraction (Class6.1)")
    a2.set_title("odd fraction", fontsize=9)
    for a in (a1, a2):
        a.set_xlabel(f"{m['method'].iloc[0].upper()} 1")
        a.set_ylabel(f"{m['method'].iloc[0].upper()} 2")
        R.style_axes(a, grid=None)
    sec.add(R.figure(fig2, f"Embedding map of all {len(m):,} galaxies ({m['method'].iloc[0].upper()} of the "
                           "representation), coloured by curated label and by odd fraction."),
            R.figure(fig, "Training curve."))
    return sec


def _similarity_section(inp, R):
    import json

    from .imageset import read_images

    met = json.loads(open(inp["metrics"]).read())
    tab = pd.read_parquet(inp["neighbours"])
    sec = R.Section("Similarity search", anchor="represent-similarity", order=R.ORDER["embeddings"] + 1,
                    summary=f"precision@{met['k']} {met['precision_at_k']:.3f} vs base rate {met['base_rate']:.3f}")
    sec.add(R.paragraph(f"Representation → PCA ({met['n_components']} components) → Euclidean nearest neighbours "
                        "(ball tree). Precision@k: every labelled (curated) galaxy is a query and its "
                        f"{met['k']} nearest labelled neighbours are compared with its label; the base rate is the "
                        "precision of random neighbours."))
    vals = {f"precision@{met['k']}": met["precision_at_k"], "label base rate": met["base_rate"],
            "lift": met["lift"], "labelled queries": int(met["n_labelled"])}
    if "truth" in met:
        vals[f"precision@{met['k']} by true {met['truth']['column']}"] = met["truth"]["precision_at_k"]
        vals["true-kind base rate"] = met["truth"]["base_rate"]
    sec.add(R.metrics(vals, float_format="{:.3f}"))
    per = pd.DataFrame({"precision@k": met["precision_per_label"]})
    per.index.name = "curated label"
    blocks = [R.table(per, float_format="{:.3f}", caption="Precision by query label")]
    if "truth" in met:
        pt = pd.DataFrame({"precision@k": met["truth"]["precision_per_kind"]})
        pt.index.name = met["truth"]["column"]
        blocks.append(R.table(pt, float_format="{:.3f}", caption="Precision by true morphology (all galaxies)"))
    sec.add(R.columns(*blocks))
    for q in dict.fromkeys(tab["query_id"]):
        t = tab[tab["query_id"] == q].sort_values("rank")
        ids = [int(q)] + t["neighbour_id"].astype(int).tolist()
        _, imgs = read_images(inp["images"], ids)
        titles = [f"query {q}\n{t['query_label'].iloc[0]}"] + [
            f"{r}: {lab if isinstance(lab, str) else '–'}\nd={d:.3g}"
            for r, lab, d in zip(t["rank"], t["neighbour_label"], t["distance"])]
        sec.add(R.image_grid(imgs, titles, ncols=len(ids), cell_px=64,
                             label=f"Query {q} ({t['query_label'].iloc[0]}) and its nearest neighbours"))
    return sec


def _anomalies_section(inp, R):
    import json

    from .imageset import read_images

    met = json.loads(open(inp["metrics"]).read())
    curves = pd.read_csv(inp["curves"], sep="\t")
    rank = pd.read_parquet(inp["ranking"])
    names = ANOMALY_METHODS
    base = "astronomaly"
    sec = R.Section("Personalised anomaly detection", anchor="represent-anomalies", order=R.ORDER["embeddings"] + 2,
                    summary=f"AP {met['methods']['gp']['average_precision']['mean']:.3f} (GP) vs "
                            f"{met['methods'][base]['average_precision']['mean']:.3f} (Astronomaly baseline)")
    sec.add(R.paragraph(
        f"A simulated user rates interest as round(5 × odd fraction); true anomalies: odd fraction > "
        f"{met['threshold']} ({met['n_anomalies']} of {met['n_galaxies']:,} galaxies). Representation → PCA "
        f"{met['n_components']} → standardise; the GP method asks {met['initial']} random galaxies, then batches of "
        f"{met['batch']} by expected improvement, up to {met['budget']} labels; mean ± sd over "
        f"{len(met['seeds'])} seeds. Precision in the top N uses N = min(N, number of anomalies) "
        f"({', '.join(f'{k}: {v}' for k, v in met['top_n'].items())})."))
    if met.get("note"):
        sec.add(R.note(met["note"], kind="warn"))
    rows = []
    for m, vals in met["methods"].items():
        rows.append({"method": names.get(m, m), **{k: _fmt_ms(v) for k, v in vals.items()}})
    sec.add(R.table(pd.DataFrame(rows), caption="Ranking metrics, mean ± sd over seeds"))
    if len(curves):
        col = [c for c in curves.columns if c.startswith("precision_top")][0]
        fig = R.new_figure((5.6, 3.2))
        ax = fig.add_subplot()
        for m, g in curves.groupby("method"):
            s = g.groupby("n_labels")[col].agg(["mean", "std"]).fillna(0)
            ax.plot(s.index, s["mean"], "o-", ms=3, label=names.get(m, m))
            ax.fill_between(s.index, s["mean"] - s["std"], s["mean"] + s["std"], alpha=0.15)
        ax.set_xlabel("labels given by the user")
        ax.set_ylabel(col.replace("_", " "))
        ax.set_ylim(-0.02, 1.02)
        ax.legend(frameon=False, fontsize=8)
        R.style_axes(ax)
        sec.add(R.figure(fig, "Precision of the top-ranked galaxies vs the number of labels (seed mean ± sd)."))
    for m in ("gp", base):
        top = rank.sort_values(f"score_{m}", ascending=False).head(16)
        _, imgs = read_images(inp["images"], top["id"].to_numpy())
        sec.add(R.image_grid(imgs, [f"{i}\nodd {o:.2f}" for i, o in zip(top["id"], top["odd_fraction"])],
                             ncols=8, cell_px=84, label=f"Top 16 by {names[m]} (first seed)"))
    return sec


def _finetune_section(inp, R):
    import json

    met = json.loads(open(inp["metrics"]).read())
    runs = pd.read_csv(inp["runs"], sep="\t")
    sec = R.Section("Fine-tuning from few labels: rings", anchor="represent-finetune",
                    order=R.ORDER["embeddings"] + 3, summary="label efficiency of the representation")
    sec.add(R.paragraph(
        f"Task: ring vs not ring, {met['rule']}. {met['n_rings']} rings, {met['n_not_rings']} non-rings; per seed a "
        f"balanced test set of {met['n_test_per_class']} + {met['n_test_per_class']} galaxies is held out and the "
        f"training sets are balanced (budget = rings = non-rings). Arms: frozen representation + linear head "
        f"({met['head_steps']} steps), representation fine-tuned and the same architecture from scratch "
        f"({met['steps']} steps each); mean ± sd over {len(met['seeds'])} seeds."))
    if met["notes"]:
        sec.add(R.note("; ".join(met["notes"]) + " (budgets: auto; an explicit list above the available rings "
                       "is an error)."))
    if not met["arms"]:
        return sec
    rows = []
    for arm, per in met["arms"].items():
        for b, v in per.items():
            rows.append({"arm": arm, "budget (rings)": int(b),
                         "accuracy": f"{v['accuracy_mean']:.3f} ± {v['accuracy_sd']:.3f}",
                         "ROC AUC": f"{v['roc_auc_mean']:.3f} ± {v['roc_auc_sd']:.3f}"})
    sec.add(R.table(pd.DataFrame(rows).sort_values(["budget (rings)", "arm"]).reset_index(drop=True),
                    caption="Test accuracy and ROC AUC, mean ± sd over seeds"))
    fig = R.new_figure((9, 3.2))
    a1, a2 = fig.subplots(1, 2)
    for arm, g in runs.groupby("arm", sort=False):
        for ax, col in ((a1, "accuracy"), (a2, "roc_auc")):
            s = g.groupby("budget")[col].agg(["mean", "std"]).fillna(0)
            ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, label=arm)
    for ax, col in ((a1, "accuracy"), (a2, "ROC AUC")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("rings in the training set")
        ax.set_ylabel(f"test {col}")
        ax.axhline(0.5, color="#9aa1b1", lw=0.8, ls="--")
        R.style_axes(ax)
    a1.legend(frameon=False, fontsize=8)
    sec.add(R.figure(fig, "Label efficiency: test accuracy and ROC AUC vs number of labelled rings."))
    return sec
