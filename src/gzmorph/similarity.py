"""Similarity search in the representation (Walmsley et al. 2022, §5).

Embeddings -> PCA (``n_components``) -> Euclidean nearest neighbours (ball tree).
``precision@k``: for every labelled (curated) galaxy as the query, the share of its ``k``
nearest labelled neighbours with the same curated label, averaged; the *base rate* beside it
is what random neighbours would give, ``sum_c p_c (n_c - 1) / (n - 1)``.  For synthetic
galaxies the same is computed over all galaxies with their true morphology (``true_kind``).
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from .io import InputError, atomic_path
from .represent_settings import SimilaritySettings





def pca_reduce(vectors: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """The first ``n_components`` principal components of ``vectors`` (fewer when the data have fewer)."""
    from sklearn.decomposition import PCA

    n = max(1, min(int(n_components), vectors.shape[1], len(vectors)))
    return PCA(n_components=n, random_state=seed).fit_transform(np.asarray(vectors, np.float64))


def _nn(z: np.ndarray, k: int):
    """A ball-tree nearest-neighbour index of ``z`` answering ``k`` neighbours."""
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


def precision_at_k(z: np.ndarray, labels, k: int = SimilaritySettings.k) -> dict:
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


def plain_id(value):
    """An id as a plain Python value, integer or string as the catalogue has it (never np.int64)."""
    return value.item() if isinstance(value, np.generic) else value


def default_queries(curated: pd.DataFrame) -> list:
    """One query per curated class (in label order): its most confident galaxy."""
    df = curated.sort_values(["label", "confidence"] if "confidence" in curated.columns else ["label"],
                             ascending=[True, False] if "confidence" in curated.columns else [True],
                             kind="stable") if "label" in curated.columns else curated
    return [plain_id(i) for i in df.drop_duplicates("label_name")["id"]]


def _query_neighbours(z: np.ndarray, ids: np.ndarray, pos: pd.Series, query_ids, label_of: dict,
                      k: int) -> pd.DataFrame:
    """The ``k`` nearest neighbours of every query (the query itself left out), with their labels."""
    nn = _nn(z, min(k + 1, len(z)))
    rows = []
    for q in map(plain_id, query_ids):
        dist, idx = nn.kneighbors(z[[pos[q]]], n_neighbors=min(k + 1, len(z)))
        rank = 0
        for d, i in zip(dist[0], idx[0]):
            if ids[i] == q:
                continue
            rank += 1
            if rank > k:
                break
            rows.append({"query_id": q, "query_label": label_of.get(q), "rank": rank,
                         "neighbour_id": plain_id(ids[i]), "distance": float(d),
                         "neighbour_label": label_of.get(plain_id(ids[i]))})
    return pd.DataFrame(rows, columns=["query_id", "query_label", "rank", "neighbour_id", "distance",
                                       "neighbour_label"])


def _truth_precision(z: np.ndarray, pos: pd.Series, source: pd.DataFrame, k: int) -> dict | None:
    """precision@k over every galaxy with a true morphology (synthetic sources), else ``None``."""
    col = truth_column(source)
    if not col:
        return None
    t = source[["id", col]].dropna()
    t = t[t["id"].isin(pos.index)]
    pt = precision_at_k(z[pos.loc[t["id"].to_numpy()].to_numpy()], t[col].astype(str).to_numpy(), k)
    return {"column": col, "n_galaxies": pt["n_queries"], "precision_at_k": pt["precision"],
            "base_rate": pt["base_rate"], "precision_per_kind": pt["per_label"]}


def similarity_search(ids, vectors: np.ndarray, curated: pd.DataFrame, source: pd.DataFrame | None = None,
                      settings: SimilaritySettings | None = None, seed: int = 0):
    """Neighbours of the query galaxies (among all galaxies) and precision metrics.

    Returns ``(neighbours table, metrics dict)``.
    """
    settings = settings or SimilaritySettings()
    k = settings.k
    ids = np.asarray(ids)  # integers or strings, as the catalogue's
    ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else ids.astype(object)
    z = pca_reduce(vectors, settings.n_components, seed)
    pos = pd.Series(np.arange(len(ids)), index=ids)
    query_ids = settings.query_ids or default_queries(curated)
    unknown = [q for q in query_ids if plain_id(q) not in pos.index]
    if unknown:
        raise InputError(f"similarity query id(s) {unknown[:10]} do not exist among the {len(ids)} "
                         "embedded galaxies")
    label_of = dict(zip(map(plain_id, curated["id"]), curated["label_name"]))
    table = _query_neighbours(z, ids, pos, query_ids, label_of, k)
    lab = curated[curated["id"].isin(pos.index)]
    lab_idx = pos.loc[lab["id"].to_numpy()].to_numpy()
    p = precision_at_k(z[lab_idx], lab["label_name"].to_numpy(), k)
    metrics = {"k": p["k"], "n_components": int(z.shape[1]), "n_galaxies": int(len(ids)),
               "n_labelled": p["n_queries"], "precision_at_k": p["precision"], "base_rate": p["base_rate"],
               "lift": p["precision"] / p["base_rate"] if p["base_rate"] else float("nan"),
               "precision_per_label": p["per_label"], "query_ids": [plain_id(q) for q in query_ids],
               "query_neighbours_same_label": float(
                   (table["neighbour_label"] == table["query_label"]).mean()) if len(table) else float("nan")}
    truth = _truth_precision(z, pos, source, k) if source is not None else None
    if truth:
        metrics["truth"] = truth
    return table, metrics


def similarity_gallery(table: pd.DataFrame, images_path, out_path, max_queries: int = 12) -> None:
    """PNG: one row per query (query first, then its neighbours by rank)."""
    from matplotlib.figure import Figure

    from .imageset import read_images  # pyarrow: kept out of the DAG-time import of the settings

    queries = list(dict.fromkeys(table["query_id"]))[:max_queries]
    k = int(table["rank"].max()) if len(table) else 0
    fig = Figure(figsize=(1.1 * (k + 1), 1.2 * max(1, len(queries))))
    axes = fig.subplots(max(1, len(queries)), k + 1, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, q in enumerate(queries):
        t = table[table["query_id"] == q].sort_values("rank")
        ids = [plain_id(q)] + t["neighbour_id"].tolist()
        _, imgs = read_images(images_path, ids)
        for c, img in enumerate(imgs):
            axes[r, c].imshow(img)
            lab = t["query_label"].iloc[0] if c == 0 else t["neighbour_label"].iloc[c - 1]
            # class names as written ('$' is no mathematics: a name such as '$\\alpha_{$' failed the rule)
            axes[r, c].set_title(("query: " if c == 0 else f"{c}: ") + (str(lab) if lab else "–"), fontsize=6,
                                 parse_math=False)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
