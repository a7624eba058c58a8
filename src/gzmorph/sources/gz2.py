"""Galaxy Zoo 2 from a local folder: a ``gz2_hart16``-style catalogue + ``images/<asset_id>.jpg``.

Hart et al. (2016) publish, per answer, ``*_weighted_fraction`` and
``*_debiased`` for every task and the raw ``*_fraction`` for some; all are
*conditional* fractions (of the volunteers who answered that task); the debiased ones, corrected
answer by answer, are renormalised per question (:func:`_renormalised`).  We read
one kind (``fraction_kind``, default ``weighted_fraction``, present for every
task), keep the GZ2 columns, and add the Kaggle-layout cumulative columns
through :meth:`gzmorph.tree.DecisionTree.to_cumulative`, so cuts written in
either naming work on every source.

The image of a galaxy is ``images/<asset_id>.jpg`` (the Zenodo image release,
renamed by ``gz2_filename_mapping.csv``); the id is ``dr7objid``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import InputError
from ..tree import GZ2_TREE
from .validate import check_fractions, check_ids, check_tree_sums, read_catalogue, require_columns, row_name, typed_ids

FRACTION_KINDS = ("weighted_fraction", "fraction", "debiased")
DEFAULT_FRACTION_KIND = "weighted_fraction"  # config gz2.fraction_kind
CATALOGUE_GLOBS = ("gz2_hart16*.csv", "gz2_hart16*.csv.gz", "gz2_hart16*.zip", "gz2_hart16*.parquet")


def find_catalogue(data_dir: Path, catalogue: str | None = None) -> Path:
    if catalogue:
        path = data_dir / catalogue
        if not path.is_file():
            raise InputError(f"{path}: GZ2 catalogue not found")
        return path
    found = sorted(p for g in CATALOGUE_GLOBS for p in data_dir.glob(g))
    if not found:
        raise InputError(f"{data_dir}: no GZ2 catalogue ({' or '.join(CATALOGUE_GLOBS)}) found; "
                         "name it with the config key gz2.catalogue")
    if len(found) > 1:
        raise InputError(f"{data_dir}: several GZ2 catalogues {[p.name for p in found]}; "
                         "choose one with the config key gz2.catalogue")
    return found[0]


def _renormalised(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Hart et al.'s debiased fractions are corrected answer by answer, so a question's no longer sum
    to 1 (and an answer nobody gave is empty): each question's are divided by their sum (empty as 0),
    which keeps their ratios and makes them conditional fractions again."""
    df = df.copy()
    by_answer = dict(zip((a.gz2 for a in GZ2_TREE.answers), columns))
    for q in GZ2_TREE.questions:
        cols = [by_answer[a.gz2] for a in q.answers]
        values = df[cols].apply(pd.to_numeric, errors="coerce").fillna(0.0)
        total = values.sum(axis=1)
        df[cols] = values.div(total.where(total > 0, 1.0), axis=0)
    return df


def read_gz2(data_dir: str | Path, catalogue: str | None = None,
             fraction_kind: str = DEFAULT_FRACTION_KIND, images: str = "images") -> pd.DataFrame:
    data_dir = Path(data_dir).resolve()
    if fraction_kind not in FRACTION_KINDS:
        raise InputError(f"gz2.fraction_kind {fraction_kind!r}: choose one of {FRACTION_KINDS}")
    file = find_catalogue(data_dir, catalogue)
    # .csv, .csv.gz, .zip holding one CSV, or .parquet; the 18-digit dr7objids parsed exactly, never through float
    df = read_catalogue(file, text_columns=["dr7objid", "asset_id"])
    gz2_cols = [f"{a.gz2}_{fraction_kind}" for a in GZ2_TREE.answers]
    require_columns(df, ["dr7objid", "asset_id", *gz2_cols], file)

    def name(i: int) -> str:
        return f"{file}: {row_name(file, i)}"

    ids = typed_ids(df["dr7objid"], "integer", name, "dr7objid", hints=False)
    assets = typed_ids(df["asset_id"], "integer", name, "asset_id", hints=False)
    check_ids(ids, file)
    check_ids(assets, file)
    if fraction_kind == "debiased":
        df = _renormalised(df, gz2_cols)
    check_fractions(df, gz2_cols, file)
    conditional = pd.DataFrame({a.kaggle: df[c].astype(float).to_numpy()
                                for a, c in zip(GZ2_TREE.answers, gz2_cols)}, index=df.index)
    check_tree_sums(conditional, file, ids, conditional=True)
    cumulative = GZ2_TREE.to_cumulative(conditional)
    out = pd.DataFrame({
        "id": ids.to_numpy(),
        "image_path": [str(data_dir / images / f"{a}.jpg") for a in assets.tolist()],
    })
    return pd.concat([out, cumulative, df.drop(columns=["dr7objid"]).assign(asset_id=assets)], axis=1)
