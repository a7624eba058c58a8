"""The curation stage's report section: what went into the curated catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .html import (
    ORDER, Block, Section, bullet_list, columns, definition_list, details, figure, heading, image_grid,
    metrics, new_figure, note, paragraph, style_axes, table,
)
from .blocks import export_name

SPLITS = ("train", "val", "test")
SPLIT_COLOURS = {"train": "#3b5bdb", "val": "#f59f00", "test": "#12b886"}
_OTHER_COLOUR = "#868e96"
#: keys of stats.json that have their own place in the section
#: the curated catalogue's columns this section reads (the report job reads no others)
COLUMNS = ("id", "label", "label_name", "confidence", "split", "true_label", "true_morphology")
_KNOWN_STATS = {"n_source", "n_selected", "n_ambiguous", "n_corrupt_images", "corrupt_ids", "cut",
                "cut_description", "truth_match", "per_class", "corrupt_policy", "sources",
                "n_selected_per_source", "counts_per_source", "cut_rules", "max_per_class", "warnings"}


def _class_name(class_names: Sequence[str], label: int) -> str:
    label = int(label)
    return str(class_names[label]) if 0 <= label < len(class_names) else f"label {label}"


def _split_order(values) -> list[str]:
    present = [str(v) for v in pd.unique(pd.Series(values).dropna())]
    return [s for s in SPLITS if s in present] + sorted(s for s in present if s not in SPLITS)


def counts_table(df: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Galaxies per class (rows, in class order, zeros kept) and split (columns), with totals."""
    splits = _split_order(df["split"]) if "split" in df else []
    labels = sorted(set(range(len(class_names))) | {int(v) for v in df["label"].unique()})
    rows = []
    for k in labels:
        sub = df[df["label"] == k]
        row = {"class": _class_name(class_names, k)}
        for s in splits:
            row[s] = int((sub["split"] == s).sum())
        row["total"] = int(len(sub))
        row["share"] = len(sub) / len(df) if len(df) else float("nan")
        rows.append(row)
    out = pd.DataFrame(rows)
    total = {"class": "all classes", **{s: int((df["split"] == s).sum()) for s in splits},
             "total": int(len(df)), "share": 1.0 if len(df) else float("nan")}
    return pd.concat([out, pd.DataFrame([total])], ignore_index=True).set_index("class")


def _counts_figure(counts: pd.DataFrame, splits: list[str]):
    per_class = counts.iloc[:-1]
    n = len(per_class)
    fig = new_figure((5.0, 0.9 + 0.3 * n))
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    left = np.zeros(n)
    for s in splits:
        vals = per_class[s].to_numpy(dtype=float)
        ax.barh(y, vals, left=left, color=SPLIT_COLOURS.get(s, _OTHER_COLOUR), label=s, height=0.7)
        left += vals
    for yi, tot in zip(y, left):
        ax.text(tot, yi, f" {int(tot):,}", va="center", fontsize=8.5, color="#333")
    ax.set_yticks(y, per_class.index)
    ax.set_xlabel("galaxies")
    ax.set_xlim(0, max(1.0, left.max()) * 1.12)
    style_axes(ax, grid="x")
    if splits:
        ax.legend(frameon=False, ncols=len(splits), loc="lower right", bbox_to_anchor=(1, 1), fontsize=9)
    return fig


def _confidence_figure(df: pd.DataFrame, class_names: Sequence[str], labels: list[int], splits: list[str]):
    conf = df["confidence"].astype(float)
    finite = conf[np.isfinite(conf)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if 0.0 <= lo and hi <= 1.0:
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    bins = np.linspace(lo, hi, 26)
    ncols = min(4, max(1, len(labels)))
    nrows = int(np.ceil(len(labels) / ncols))
    fig = new_figure((2.5 * ncols + 0.4, 1.85 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    for ax, k in zip(axes.flat, labels):
        sub = df[df["label"] == k]
        stack = [sub.loc[sub["split"] == s, "confidence"].astype(float).dropna().to_numpy() for s in splits]
        if sum(len(a) for a in stack):
            ax.hist(stack, bins=bins, stacked=True, label=splits,
                    color=[SPLIT_COLOURS.get(s, _OTHER_COLOUR) for s in splits])
        ax.set_title(f"{_class_name(class_names, k)}  (n={len(sub):,})", fontsize=9.5)
        style_axes(ax, grid="y")
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(labels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("confidence", fontsize=8.5)
    if splits:
        handles, names = axes.flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, names, loc="outside upper right", ncols=len(splits), frameon=False, fontsize=9)
    return fig


def _key(v):
    """A galaxy id as a plain value: an integer (from np.int64 or a numeric dict key) or a string."""
    v = v.item() if isinstance(v, np.generic) else v
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class _ImageSource:
    """Images by galaxy id (integers or strings), from an ``images.parquet`` path, ``(ids, images)``, a dict
    or an aligned array."""

    def __init__(self, images, catalogue_ids: np.ndarray):
        self._lookup: dict = {}
        self._images = None
        self._store = None
        if images is None:
            return
        if isinstance(images, (str, Path)):  # an image store: only the galaxies shown are read
            from ..imageset import ImageStore

            self._store = ImageStore(images)
            self._lookup = {_key(v): i for i, v in enumerate(self._store.ids)}
            return
        if isinstance(images, Mapping):
            ids = [_key(k) for k in images]
            arr = [images[k] for k in images]
        elif isinstance(images, tuple) and len(images) == 2:
            ids, arr = images
        else:
            arr = np.asarray(images)
            if len(arr) != len(catalogue_ids):
                raise ValueError(f"an image array without ids must align with the catalogue: "
                                 f"{len(arr)} images for {len(catalogue_ids)} rows; pass (ids, images)")
            ids = catalogue_ids
        self._images = arr
        self._lookup = {_key(v): i for i, v in enumerate(ids)}

    def get(self, ids) -> tuple[list, list[np.ndarray], list]:
        found, rows, missing = [], [], []
        for i in map(_key, ids):
            pos = self._lookup.get(i)
            if pos is None:
                missing.append(i)
            else:
                found.append(i)
                rows.append(pos)
        if self._store is not None:
            return found, list(self._store.read_rows(rows)) if rows else [], missing
        return found, [np.asarray(self._images[r]) for r in rows], missing


def _example_blocks(df: pd.DataFrame, source: _ImageSource, class_names: Sequence[str], labels: list[int],
                    n_confident: int, n_random: int, seed: int) -> list[Block]:
    rng = np.random.default_rng(seed)
    blocks: list[Block] = []
    missing_all: list[int] = []
    for k in labels:
        sub = df[df["label"] == k]
        name = _class_name(class_names, k)
        if sub.empty:
            blocks.append(paragraph(f"{name}: no galaxies in the catalogue.", muted=True))
            continue
        top = sub.sort_values(["confidence", "id"], ascending=[False, True], kind="mergesort").head(n_confident)
        test = sub[sub["split"] == "test"] if "split" in sub else sub
        pool_name = "test"
        if test.empty:
            test, pool_name = sub, "all"
        pick = rng.choice(len(test), size=min(n_random, len(test)), replace=False)
        rnd = test.iloc[np.sort(pick)]
        grids = []
        for rows, what, kind in ((top, f"{len(top)} most confident", "confident"),
                                 (rnd, f"{len(rnd)} random ({pool_name} split)", "random")):
            conf = dict(zip(map(_key, rows["id"]), rows["confidence"].astype(float)))
            ids, imgs, missing = source.get(rows["id"].to_numpy())
            missing_all += missing
            titles = [f"{i}\n{conf[i]:.2f}" for i in ids]
            grids.append(image_grid(np.stack(imgs) if imgs else [], titles, ncols=8, cell_px=96,
                                    label=what, name=f"examples-{export_name(name)}-{kind}",
                                    export_title=f"{name}: {what}"))
        blocks.append(heading(f"{name}  ·  {len(sub):,} galaxies"))
        blocks.extend(grids)
    if missing_all:
        blocks.append(note(f"{len(missing_all)} example ids have no image in the image table "
                           f"(first: {', '.join(map(str, missing_all[:10]))}).", kind="warn"))
    return blocks


def _truth_blocks(df: pd.DataFrame, class_names: Sequence[str], stats: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    has_true_label = "true_label" in df
    match = stats.get("truth_match")
    if match is None and has_true_label:
        known = df["true_label"].astype(int) >= 0
        if known.any():
            match = float((df.loc[known, "label"].astype(int) == df.loc[known, "true_label"].astype(int)).mean())
    if match is None and not has_true_label:
        return blocks
    blocks.append(heading("Agreement with the simulation truth"))
    vals = {"truth match": match}
    if has_true_label:
        vals["galaxies with a true class"] = int((df["true_label"].astype(int) >= 0).sum())
    blocks.append(metrics(vals, caption="Fraction of curated galaxies whose assigned label equals the class "
                                        "the simulated morphology implies (galaxies with a true class only).",
                          name="truth-match"))
    if has_true_label:
        lab = df["label"].astype(int).map(lambda v: _class_name(class_names, v))
        true = df["true_label"].astype(int).map(lambda v: "(none)" if v < 0 else _class_name(class_names, v))
        ct = pd.crosstab(lab, true, margins=True, margins_name="total")
        order = [c for c in class_names if c in ct.index]
        order += [c for c in ct.index if c not in order and c != "total"] + ["total"]
        cols = [c for c in class_names if c in ct.columns] + [c for c in ct.columns
                                                                if c not in class_names and c != "total"]
        ct = ct.reindex(index=order, columns=cols + ["total"], fill_value=0)
        ct.index.name = "label \\ true"
        blocks.append(table(ct, caption="Confusion table: assigned label (rows) against the label the "
                                        "simulated truth implies (columns).", total_row=True,
                            name="truth-confusion"))
    if "true_morphology" in df:
        ct = pd.crosstab(df["true_morphology"].astype(str),
                         df["label"].astype(int).map(lambda v: _class_name(class_names, v)))
        ct = ct.reindex(columns=[c for c in class_names if c in ct.columns]
                        + [c for c in ct.columns if c not in class_names])
        ct.index.name = "true morphology"
        blocks.append(details("Assigned label by simulated morphology",
                              table(ct, caption="Galaxies per simulated morphology (rows) and assigned label.",
                                    name="truth-morphology")))
    return blocks


def _per_class_block(per_class: Any) -> Block | None:
    if not per_class:
        return None
    if isinstance(per_class, Mapping):
        if all(isinstance(v, Mapping) for v in per_class.values()):
            df = pd.DataFrame.from_dict(per_class, orient="index")
        else:
            df = pd.DataFrame({"value": pd.Series(per_class, dtype=object)})
        df.index.name = "class"
        return table(df, caption="Per-class statistics from the curation step.", name="per-class-statistics")
    if isinstance(per_class, list) and all(isinstance(v, Mapping) for v in per_class):
        return table(per_class, caption="Per-class statistics from the curation step.",
                     name="per-class-statistics")
    return paragraph(f"per_class: {per_class}")


def curation_section(catalogue_df: pd.DataFrame, images, class_names: Sequence[str],
                     stats: Mapping[str, Any] | None = None, *, n_confident: int = 8, n_random: int = 8,
                     seed: int = 0, title: str = "Curation", anchor: str = "curation") -> Section:
    """The report section of the curation stage.

    ``catalogue_df`` is ``curated/catalogue.parquet`` (``id``, ``label``,
    ``confidence``, ``split``, optional ``true_label``/``true_morphology``);
    ``images`` is the path of ``curated/images.parquet``, ``(ids, images)``, a
    dict id→image, an image array aligned with the catalogue rows, or ``None``
    (no example grids); ``stats`` is the curation stats dict (every key is
    optional; unknown scalar keys are listed at the end).  Random examples are
    drawn with ``seed`` so the page is reproducible.

    The section: overview, galaxies per class and split, selection rules, per-class
    statistics, confidence per class, corrupt images, agreement with the truth, example
    images per class, other statistics -- each part only where its data is there.
    """
    df = _checked_catalogue(catalogue_df)
    stats = dict(stats or {})
    class_names = list(class_names)
    splits = _split_order(df["split"])
    labels = [k for k in range(len(class_names))] + sorted({int(v) for v in df["label"].unique()}
                                                           - set(range(len(class_names))))
    sec = Section(title, anchor=anchor, order=ORDER["curation"],
                  summary=f"{len(df):,} galaxies in {len(class_names)} classes")
    sec.add(*_overview_blocks(df, class_names, stats, splits))
    sec.add(*_counts_blocks(df, class_names, splits))
    sec.add(*_selection_blocks(stats))
    sec.add(*_sources_blocks(stats))
    pc = _per_class_block(stats.get("per_class"))
    if pc is not None:
        sec.add(details("Per-class statistics", pc))
    sec.add(heading("Confidence per class"))
    sec.add(figure(_confidence_figure(df, class_names, labels, splits),
                   "Distribution of the label confidence per class, stacked by split.", name="confidence"))
    sec.add(*_corrupt_blocks(stats))
    sec.add(*_truth_blocks(df, class_names, stats))
    if images is not None:
        sec.add(*_examples_blocks(df, images, class_names, labels, n_confident, n_random, seed))
    sec.add(*_other_stats_blocks(stats))
    return sec


def _checked_catalogue(df: pd.DataFrame) -> pd.DataFrame:
    """The catalogue, which must have ``id``, ``label`` and ``confidence``; without ``split``, all in ``all``."""
    for col in ("id", "label", "confidence"):
        if col not in df:
            raise ValueError(f"catalogue has no {col!r} column (columns: {list(df.columns)[:12]})")
    if "split" not in df:
        df = df.assign(split="all")
    return df


def _overview_blocks(df: pd.DataFrame, class_names: list[str], stats: Mapping[str, Any],
                     splits: list[str]) -> list[Block]:
    """One sentence on the catalogue and the headline numbers (source, selected, per split ...)."""
    head = {}
    for key, name in (("n_source", "source galaxies"), ("n_selected", "selected"),
                      ("n_ambiguous", "ambiguous (dropped)"), ("n_corrupt_images", "corrupt images")):
        if stats.get(key) is not None:
            head[name] = stats[key]
    head["in catalogue"] = len(df)
    for s in splits:
        head[f"{s} split"] = int((df["split"] == s).sum())
    if stats.get("truth_match") is not None:
        head["truth match"] = float(stats["truth_match"])
    intro = (f"The curated catalogue holds {len(df):,} galaxies labelled with one of "
             f"{len(class_names)} classes")
    intro += f" by the cut `{stats['cut']}`." if stats.get("cut") else "."
    return [paragraph(intro), metrics(head, name="overview")]


def _counts_blocks(df: pd.DataFrame, class_names: list[str], splits: list[str]) -> list[Block]:
    """Galaxies per class and split: the table and the stacked bar chart side by side."""
    counts = counts_table(df, class_names)
    return [heading("Galaxies per class and split"),
            columns(table(counts, float_format="{:.1%}", total_row=True, name="counts",
                          caption="Galaxies per class and split; share is of the whole catalogue."),
                    figure(_counts_figure(counts, splits), "Galaxies per class, stacked by split.",
                           name="counts"))]


def _selection_blocks(stats: Mapping[str, Any]) -> list[Block]:
    """The cut's description and rules, the per-class cap and the curation warnings (if there is a cut)."""
    if not (stats.get("cut_description") or stats.get("cut")):
        return []
    blocks = [heading(f"Selection rules{' – ' + str(stats['cut']) if stats.get('cut') else ''}")]
    desc = stats.get("cut_description")
    if isinstance(desc, Mapping) and desc:
        blocks.append(definition_list(desc))
    elif isinstance(desc, (list, tuple)) and desc:
        blocks.append(bullet_list(desc))
    elif desc:
        blocks.append(paragraph(str(desc)))
    if isinstance(stats.get("cut_rules"), Mapping) and stats["cut_rules"]:
        blocks.append(definition_list({str(k): f"`{v}`" for k, v in stats["cut_rules"].items()}))
    if stats.get("max_per_class"):
        blocks.append(paragraph(f"At most {stats['max_per_class']} galaxies per class are kept, "
                                "the most confident first."))
    for w in stats.get("warnings") or []:
        blocks.append(note(str(w), kind="warn"))
    return blocks


def _sources_blocks(stats: Mapping[str, Any]) -> list[Block]:
    """Several sources (config ``sources:``): one row per source -- its cut, the galaxies it had,
    the ambiguous ones, those each class matched, those kept, and their splits."""
    per = stats.get("sources")
    if not isinstance(per, Mapping) or not per:
        return []
    kept = stats.get("n_selected_per_source") or {}
    splits = stats.get("counts_per_source") or {}
    rows = []
    for src, st in per.items():
        row = {"source": src, "cut": st.get("cut"), "galaxies": st.get("n_source"),
               "ambiguous": st.get("n_ambiguous"),
               **{f"matched {c}": n for c, n in (st.get("n_matched_per_class") or {}).items()},
               "kept": kept.get(src)}
        rows.append(row | {s: n for s, n in (splits.get(src) or {}).items()})
    df = pd.DataFrame(rows)
    matched = [c for c in df.columns if c.startswith("matched ")]
    df[matched] = df[matched].fillna(0).astype(int)  # a class another source's cut has: none matched here
    return [heading("Sources"),
            paragraph("Each source is cut by its own rules; its galaxies are merged into one catalogue "
                      "(column `source`), and the splits are drawn over the union.", muted=True),
            table(df, caption="Galaxies per source: read, ambiguous, matched per class, kept and per split",
                  name="sources")]


def _corrupt_blocks(stats: Mapping[str, Any]) -> list[Block]:
    """How many source images could not be read, the policy and their ids (nothing when none)."""
    n_corrupt = stats.get("n_corrupt_images")
    corrupt_ids = list(stats.get("corrupt_ids") or [])
    if not (n_corrupt or corrupt_ids):
        return []
    n = int(n_corrupt if n_corrupt is not None else len(corrupt_ids))
    policy = stats.get("corrupt_policy") or ("Galaxies whose source image could not be decoded are "
                                             "left out of the curated catalogue and image table.")
    text = f"{n:,} source image{'s' if n != 1 else ''} could not be read. {policy}"
    if corrupt_ids:
        shown = ", ".join(str(i) for i in corrupt_ids[:40])
        text += f" Ids: {shown}{' …' if len(corrupt_ids) > 40 else ''}"
    return [heading("Corrupt images"), note(text, kind="warn")]


def _examples_blocks(df: pd.DataFrame, images, class_names: Sequence[str], labels: list[int],
                     n_confident: int, n_random: int, seed: int) -> list[Block]:
    """Example images per class, under a heading and a line saying what they are."""
    source = _ImageSource(images, df["id"].to_numpy())
    return [heading("Examples per class"),
            paragraph(f"For each class the {n_confident} most confident galaxies and {n_random} random "
                      f"test-split galaxies; the captions give the galaxy id and its confidence.",
                      muted=True),
            *_example_blocks(df, source, class_names, labels, n_confident, n_random, seed)]


def _other_stats_blocks(stats: Mapping[str, Any]) -> list[Block]:
    """The statistics without a place of their own, in a collapsed table (nested ones as short JSON)."""
    other = {k: v for k, v in stats.items()
             if k not in _KNOWN_STATS and not isinstance(v, (Mapping, list, tuple))}
    nested = {k: v for k, v in stats.items() if k not in _KNOWN_STATS and isinstance(v, (Mapping, list, tuple))}
    if not (other or nested):
        return []
    rows = [{"statistic": k, "value": str(v) if not isinstance(v, (int, float)) else v}
            for k, v in other.items()]
    rows += [{"statistic": k, "value": _short(v)} for k, v in nested.items()]
    return [details("Other curation statistics", table(pd.DataFrame(rows).astype({"value": object}),
                                                       name="other-statistics"))]


def _short(v: Any, limit: int = 200) -> str:
    import json

    try:
        text = json.dumps(v, default=str)
    except (TypeError, ValueError):
        text = str(v)
    return text if len(text) <= limit else text[:limit] + " …"
