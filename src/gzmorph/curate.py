"""Curation: source table → labelled, balanced, split catalogue + image tensors.

Three steps, one Snakemake rule each, so that changing a split fraction does
not decode images again:

1. :func:`select` applies the cut and the per-class cap → ``selection.parquet``;
2. :func:`gzmorph.preprocess.preprocess_stream`, written block by block to
   ``images.parquet`` (:class:`gzmorph.imageset.ImageWriter`), and the list of bad images;
3. :func:`split` drops bad images, makes seeded stratified train/val/test
   splits → ``catalogue.parquet`` and ``stats.json``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .cuts import Cut
from .io import InputError, atomic_path
from .tree import GZ2_TREE, KAGGLE_COLUMNS

SPLITS = ("train", "val", "test")
META_CLASSES = b"gzmorph.classes"
META_CUT = b"gzmorph.cut"


def select(source: pd.DataFrame, cut: Cut, max_per_class: int | None = None,
           where: str = "source catalogue") -> tuple[pd.DataFrame, dict]:
    """Label with ``cut``; keep the most confident ``max_per_class`` (or the cut's top_k) per class."""
    cut = cut.resolve(source, where)
    assigned = cut.assign_table(source, where)
    cap = max_per_class or cut.top_k
    df = source.assign(label=assigned["label"].to_numpy(), confidence=assigned["confidence"].to_numpy())
    df = df[df["label"] >= 0]
    n_matched = df.groupby("label").size().reindex(range(len(cut.classes)), fill_value=0)
    empty = [cut.classes[k].name for k, n in n_matched.items() if n == 0]
    if empty:
        raise InputError(f"{where}: cut {cut.name!r} leaves class(es) {empty} empty "
                         f"(counts: {dict(zip(cut.class_names, n_matched.tolist()))}); "
                         "loosen the cut or choose another source")
    df = _cap_and_name(df, cut.class_names, cap)
    if "true_answers" in df.columns and cut.needs_votes:
        df["true_label"] = true_labels(df["true_answers"], cut)
    stats = {
        "cut": cut.name, "cut_kind": cut.kind, "cut_description": cut.description,
        "cut_rules": cut.rules_text, "classes": cut.class_names,
        "n_source": int(len(source)), "n_ambiguous": int(assigned["ambiguous"].sum()),
        "n_matched_per_class": dict(zip(cut.class_names, map(int, n_matched))),
        "max_per_class": cap or 0,  # the cap applied (the config's, else the cut's top_k); 0 = none, as in config
    }
    return df, stats


def _cap_and_name(df: pd.DataFrame, classes: list[str], cap: int | None) -> pd.DataFrame:
    if cap:
        # most confident first; ties broken by id so the choice is deterministic
        df = (df.sort_values(["label", "confidence", "id"], ascending=[True, False, True])
                .groupby("label", sort=True).head(cap))
    df = df.sort_values("id").reset_index(drop=True)
    df.insert(2, "label_name", np.asarray(classes, dtype=object)[df["label"].to_numpy()])
    return df


def select_sources(source: pd.DataFrame, cuts: dict[str, Cut], max_per_class: int | None = None,
                   where: str = "source catalogue", name: str = "") -> tuple[pd.DataFrame, dict]:
    """:func:`select` over several sources merged into ``source`` (its ``source`` column): each
    source labelled by its own cut (``cuts``: source name -> cut), classes matched by name.

    A class that only one source gives is an error naming it, the source and its cut (map it to a
    shared name in a label cut's ``classes``, or leave it out).  Class order: the first source's,
    then any new class of later sources.  The cap keeps the most confident per class over the
    union (label cuts' galaxies have confidence 1)."""
    per, order, has = {}, [], {}
    for src, cut in cuts.items():
        sub = source[source["source"] == src]
        w = f"{where} (source {src!r})"
        if not len(sub):
            raise InputError(f"{w}: no galaxies")
        cut = cut.resolve(sub, w)
        per[src] = (sub, cut, cut.assign_table(sub, w))
        for c in cut.class_names:
            if c not in has:
                order.append(c)
            has.setdefault(c, []).append(src)
    if len(cuts) > 1:
        alone = [(c, srcs[0]) for c, srcs in has.items() if len(srcs) == 1]
        if alone:
            c, src = alone[0]
            others = [s for s in cuts if s != src]
            raise InputError(
                f"{where}: class {c!r} exists in source {src!r} only (cut {cuts[src].name!r}), not in "
                f"{', '.join(map(repr, others))} (classes: "
                f"{'; '.join(f'{s}: {per[s][1].class_names}' for s in cuts)}); sources must share their "
                "classes: map it to a shared class name in a label cut's classes (e.g. "
                f"{{{c!r}: ...}} under the cut's classes), or leave it out"
                + (f" ({len(alone)} such class(es): {[a for a, _ in alone]})" if len(alone) > 1 else ""))
    pos = {c: k for k, c in enumerate(order)}
    parts, stats_per = [], {}
    for src, (sub, cut, assigned) in per.items():
        local = assigned["label"].to_numpy()
        label = np.array([pos[cut.class_names[k]] if k >= 0 else -1 for k in local], dtype=np.int64)
        part = sub.assign(label=label, confidence=assigned["confidence"].to_numpy())
        parts.append(part[part["label"] >= 0])
        matched = {c: int((local == k).sum()) for k, c in enumerate(cut.class_names)}
        stats_per[src] = {"cut": cut.name, "cut_kind": cut.kind, "cut_description": cut.description,
                          "cut_rules": cut.rules_text, "n_source": int(len(sub)),
                          "n_ambiguous": int(assigned["ambiguous"].sum()), "n_matched_per_class": matched}
    df = pd.concat(parts)
    n_matched = df.groupby("label").size().reindex(range(len(order)), fill_value=0)
    empty = [order[k] for k, n in n_matched.items() if n == 0]
    if empty:
        raise InputError(f"{where}: the cuts leave class(es) {empty} empty in every source "
                         f"(counts: {dict(zip(order, n_matched.tolist()))})")
    caps = [c.top_k for _, c, _ in per.values() if c.top_k]
    cap = max_per_class or (min(caps) if caps else None)
    df = _cap_and_name(df, order, cap)
    stats = {
        "cut": name or "+".join(dict.fromkeys(c.name for c in cuts.values())), "cut_kind": "sources",
        "cut_description": "several sources, each by its own cut: " + ", ".join(
            f"{s} by {c.name!r}" for s, c in cuts.items()),
        "cut_rules": {f"{s}: {c}": r for s, (_, cut, _) in per.items() for c, r in cut.rules_text.items()},
        "classes": order, "n_source": int(len(source)),
        "n_ambiguous": int(sum(v["n_ambiguous"] for v in stats_per.values())),
        "n_matched_per_class": dict(zip(order, map(int, n_matched))), "max_per_class": cap or 0,
        "sources": stats_per,
        "n_selected_per_source": {s: int((df["source"] == s).sum()) for s in cuts},
    }
    return df, stats


def true_labels(true_answers: pd.Series, cut: Cut) -> np.ndarray:
    """The class the cut gives a galaxy's *true* morphology (its unanimous ideal votes); -1 if none."""
    ideal = pd.DataFrame([GZ2_TREE.ideal_votes(str(a).split(";")) for a in true_answers],
                         index=true_answers.index)[KAGGLE_COLUMNS]
    return cut.assign(ideal)["label"].to_numpy()


def assign_splits(labels: np.ndarray, ids: np.ndarray, fractions: dict, seed: int) -> np.ndarray:
    """Seeded stratified split.  Per class: shuffle (by a seeded permutation of the
    id-sorted members), give ``round(f * n)`` to val and test; classes too small
    for every split fill train first, then test, then val."""
    fr = np.array([fractions.get(s, 0.0) for s in SPLITS], dtype=float)
    if (fr < 0).any() or not np.isclose(fr.sum(), 1.0) or fr[0] <= 0:
        raise InputError(f"config split: fractions {dict(zip(SPLITS, fr.tolist()))} must be ≥ 0, sum to 1, "
                         "and give train a positive share")
    out = np.empty(len(labels), dtype=object)
    rng = np.random.default_rng(seed)
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        members = members[np.argsort(ids[members], kind="stable")]
        members = members[rng.permutation(len(members))]
        n = len(members)
        n_val, n_test = (int(round(f * n)) for f in fr[1:])
        wanted = [s for s, f in zip(SPLITS, fr) if f > 0]
        if n >= len(wanted):  # at least one in every split that has a share
            n_val = max(n_val, 1 if fr[1] > 0 else 0)
            n_test = max(n_test, 1 if fr[2] > 0 else 0)
            while n - n_val - n_test < 1:
                if n_val >= n_test and n_val > 1:
                    n_val -= 1
                else:
                    n_test -= 1
        else:
            n_test = 1 if n >= 2 and fr[2] > 0 else 0
            n_val = 1 if n - n_test >= 2 and fr[1] > 0 else 0
        n_train = n - n_val - n_test
        out[members[:n_train]] = "train"
        out[members[n_train:n_train + n_val]] = "val"
        out[members[n_train + n_val:]] = "test"
    return out


def split(selection: pd.DataFrame, bad_ids, fractions: dict, seed: int,
          select_stats: dict, image_qc: dict) -> tuple[pd.DataFrame, dict]:
    """Drop bad images, split, and gather the statistics the report shows."""
    bad_ids = set(bad_ids)  # integers or strings, as the catalogue's ids are (image_qc.json keeps them)
    df = selection[~selection["id"].isin(bad_ids)].reset_index(drop=True)
    classes = select_stats["classes"]
    empty = [c for k, c in enumerate(classes) if not (df["label"] == k).any()]
    if empty:
        raise InputError(f"class(es) {empty} have no galaxy left once unreadable images are dropped")
    df.insert(4, "split", assign_splits(df["label"].to_numpy(), df["id"].to_numpy(), fractions, seed))
    counts = (df.groupby(["label_name", "split"]).size().unstack(fill_value=0)
                .reindex(index=classes, columns=list(SPLITS), fill_value=0))
    warnings = [f"class {c!r} has {int(counts.loc[c].sum())} galaxies: no {s} example"
                for c in classes for s in SPLITS
                if counts.loc[c, s] == 0 and fractions.get(s, 0) > 0]
    stats = dict(select_stats)
    stats.update({
        "n_selected": int(len(selection)), "n_curated": int(len(df)),
        "counts": {c: {s: int(counts.loc[c, s]) for s in SPLITS} for c in classes},
        "split_fractions": {s: float(fractions.get(s, 0.0)) for s in SPLITS}, "seed": int(seed),
        "warnings": warnings, **image_qc,
    })
    if "source" in df.columns and "sources" in select_stats:  # several sources: where the galaxies came from
        per = df.groupby(["source", "split"]).size().unstack(fill_value=0)
        stats["counts_per_source"] = {str(src): {s: int(per.loc[src].get(s, 0)) for s in SPLITS}
                                      for src in per.index}
    if "true_label" in df.columns:
        stats["truth_match"] = float((df["true_label"] == df["label"]).mean())
        stats["truth_match_per_class"] = {
            c: float((g["true_label"] == g["label"]).mean()) for c, g in df.groupby("label_name")}
    return df, stats


def write_catalogue(df: pd.DataFrame, path, classes: list[str], cut_name: str) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[META_CLASSES] = json.dumps(classes).encode()
    meta[META_CUT] = cut_name.encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)


def catalogue_meta(path) -> tuple[list[str], str | None]:
    """Ordered class names and cut name written by :func:`write_catalogue` (schema only)."""
    meta = pq.read_schema(path).metadata or {}
    if META_CLASSES not in meta:
        raise InputError(f"{path}: not a curated gzmorph catalogue (no class list in its metadata)")
    cut = meta.get(META_CUT, b"").decode() or None
    if cut and cut.startswith('"'):  # a JSON-encoded name, as other writers store it
        cut = json.loads(cut)
    return json.loads(meta[META_CLASSES]), cut


def read_catalogue(path, columns=None) -> tuple[pd.DataFrame, list[str]]:
    """The curated catalogue (only those of ``columns`` it has, when given: a report needs a few of a
    GZ2 catalogue's hundreds) and its ordered class names."""
    classes, _ = catalogue_meta(path)
    if columns is not None:
        import pyarrow.parquet as pq

        have = set(pq.read_schema(path).names)
        columns = [c for c in columns if c in have]
    return pd.read_parquet(path, columns=columns), classes
