"""Galaxy Zoo 2 as released for Zoobot: read it into the standard table (it is fetched by
:mod:`gzmorph.sources.gz2_download`).

What the real files look like
-----------------------------
Read from Mike Walmsley's ``galaxy-datasets`` repository (``mwalmsley/galaxy-datasets``):

* ``galaxy_datasets/shared/gz2.py`` (commit 38f00ea): the three URLs and md5s
  in :data:`gzmorph.download.GZ2_FILES`; the loader reads the parquet and sets
  ``file_loc = <root>/images/<subfolder>/<filename>``; the archive is unpacked
  in ``<root>`` (``archive_includes_subdir=True`` in ``shared/download_utils.py``)
  and is complete when ``<root>/images/587722/587722981741363294.jpg`` exists.
  So the tar holds ``images/<subfolder>/<dr7objid>.jpg`` with ``subfolder`` the
  first six digits of the SDSS DR7 objid (424x424 JPEGs).
* ``replication/notebooks/gz2_a_modernize.ipynb``: built from the GZ2 master
  catalogue ("original" sample, 209,294 galaxies, one without an image dropped
  -> 209,293) by renaming Hart et al. (2016) ``t??_..._count`` columns to
  Zoobot's "ortho" names (below); then ``<question>_total-votes`` (sum of the
  question's answer counts) and ``<answer>_fraction`` = count / total-votes.
* ``replication/notebooks/gz2_c_split.ipynb`` (commit 5417e55): full column list
  of the released catalogue and the split ``train_test_split(test_size=0.2,
  random_state=42)``::

    ra, dec, <30 answer counts>, <10 *_total-votes>, <30 *_fraction>, file_loc,
    subfolder, iauname, <10 *_semantic>, summary, leaf_prob, label, id_str

  ``id_str`` is the dr7objid (an integer; "not iauname"), ``file_loc`` an
  absolute path on the author's machine (ignored here).  The current release
  (train md5 d5507a93...) also has ``filename`` (``<dr7objid>.jpg``), which
  ``gz2.py`` joins with ``subfolder``.  An earlier release paired the
  catalogue with the Zenodo zip and ``filename = <asset_id>.jpg``
  (``notebooks/gz2_split.ipynb``, commit 5f1e8eb).
* ``galaxy_datasets/shared/label_metadata.py``: ``gz2_ortho_pairs``, 10
  questions / 30 answers.  **Question 8 ("odd feature": ring, lens, disturbed,
  irregular, other, merger, dust lane) is not in the catalogue**, so the
  Kaggle columns ``Class8.1 … Class8.7`` cannot be computed from it; they are
  NaN by default (``missing_answers``).

Count columns, Zoobot name -> GZ2 answer (Kaggle column)::

    smooth-or-featured-gz2_smooth / _featured-or-disk / _artifact   t01 a01-a03 (Class1.1-1.3)
    disk-edge-on-gz2_yes / _no                                     t02 a04-a05 (Class2.1-2.2)
    bar-gz2_yes / _no                                              t03 a06-a07 (Class3.1-3.2)
    has-spiral-arms-gz2_yes / _no                                  t04 a08-a09 (Class4.1-4.2)
    bulge-size-gz2_no / _just-noticeable / _obvious / _dominant    t05 a10-a13 (Class5.1-5.4)
    something-odd-gz2_yes / _no                                    t06 a14-a15 (Class6.1-6.2)
    how-rounded-gz2_round / _in-between / _cigar                   t07 a16-a18 (Class7.1-7.3)
    bulge-shape-gz2_round / _boxy / _no-bulge                      t09 a25-a27 (Class9.1-9.3)
    spiral-winding-gz2_tight / _medium / _loose                    t10 a28-a30 (Class10.1-10.3)
    spiral-arm-count-gz2_1 / _2 / _3 / _4 / _more-than-4 / _cant-tell
                                                                   t11 a31-a37 (Class11.1-11.6)

The Kaggle columns are computed here from the *counts* (conditional fraction =
count / sum of the question's counts, 0 where nobody answered), then
:meth:`gzmorph.tree.DecisionTree.to_cumulative`; the catalogue's own
``*_fraction`` columns are kept but not used.

The same data are also on Hugging Face (``mwalmsley/gz2``, parquet shards with
embedded images): a different file layout, not a byte mirror, so not in the
registry.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import pandas as pd

from ..io import InputError
from ..tree import GZ2_TREE
from .validate import require_columns

#: GZ2 answer name (``GZ2_TREE``) -> Zoobot "ortho" count column in the catalogue.
ZOOBOT_COUNT_COLUMNS: dict[str, str] = {
    "t01_smooth_or_features_a01_smooth": "smooth-or-featured-gz2_smooth",
    "t01_smooth_or_features_a02_features_or_disk": "smooth-or-featured-gz2_featured-or-disk",
    "t01_smooth_or_features_a03_star_or_artifact": "smooth-or-featured-gz2_artifact",
    "t02_edgeon_a04_yes": "disk-edge-on-gz2_yes",
    "t02_edgeon_a05_no": "disk-edge-on-gz2_no",
    "t03_bar_a06_bar": "bar-gz2_yes",
    "t03_bar_a07_no_bar": "bar-gz2_no",
    "t04_spiral_a08_spiral": "has-spiral-arms-gz2_yes",
    "t04_spiral_a09_no_spiral": "has-spiral-arms-gz2_no",
    "t05_bulge_prominence_a10_no_bulge": "bulge-size-gz2_no",
    "t05_bulge_prominence_a11_just_noticeable": "bulge-size-gz2_just-noticeable",
    "t05_bulge_prominence_a12_obvious": "bulge-size-gz2_obvious",
    "t05_bulge_prominence_a13_dominant": "bulge-size-gz2_dominant",
    "t06_odd_a14_yes": "something-odd-gz2_yes",
    "t06_odd_a15_no": "something-odd-gz2_no",
    "t07_rounded_a16_completely_round": "how-rounded-gz2_round",
    "t07_rounded_a17_in_between": "how-rounded-gz2_in-between",
    "t07_rounded_a18_cigar_shaped": "how-rounded-gz2_cigar",
    "t09_bulge_shape_a25_rounded": "bulge-shape-gz2_round",
    "t09_bulge_shape_a26_boxy": "bulge-shape-gz2_boxy",
    "t09_bulge_shape_a27_no_bulge": "bulge-shape-gz2_no-bulge",
    "t10_arms_winding_a28_tight": "spiral-winding-gz2_tight",
    "t10_arms_winding_a29_medium": "spiral-winding-gz2_medium",
    "t10_arms_winding_a30_loose": "spiral-winding-gz2_loose",
    "t11_arms_number_a31_1": "spiral-arm-count-gz2_1",
    "t11_arms_number_a32_2": "spiral-arm-count-gz2_2",
    "t11_arms_number_a33_3": "spiral-arm-count-gz2_3",
    "t11_arms_number_a34_4": "spiral-arm-count-gz2_4",
    "t11_arms_number_a36_more_than_4": "spiral-arm-count-gz2_more-than-4",
    "t11_arms_number_a37_cant_tell": "spiral-arm-count-gz2_cant-tell",
}

#: Questions the Zoobot catalogue does not carry (their Kaggle columns are filled).
MISSING_QUESTIONS = tuple(q.number for q in GZ2_TREE.questions
                          if not any(a.gz2 in ZOOBOT_COUNT_COLUMNS for a in q.answers))

CATALOGUES = {"train": "gz2_train_catalog.parquet", "test": "gz2_test_catalog.parquet"}
IMAGES_ARCHIVE = "images_gz2.tar.gz"


def is_release(data_dir: str | Path, catalogue: str | None = None) -> bool:
    """Whether a gz2 ``data_dir`` is read as the Zoobot release: it holds the release's train
    catalogue and no Hart16 catalogue is named (``gz2.catalogue``)."""
    return (Path(data_dir) / CATALOGUES["train"]).is_file() and not catalogue
ID_COLUMN = "id_str"
#: folders (relative to ``dest_dir``) searched for ``<subfolder>/<filename>``
IMAGE_ROOTS = ("images", "images_gz2", ".")


def _parse_ids(values: pd.Series, file: Path) -> np.ndarray:
    """dr7objids (> 2**53) must not pass through float: parse ints or strings exactly."""
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return values.to_numpy(np.int64)
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values.tolist()):
        try:
            if isinstance(v, (float, np.floating)):
                if not np.isfinite(v) or v != int(v) or abs(v) >= 2 ** 53:
                    raise ValueError
                out[i] = int(v)
            else:
                out[i] = int(str(v).strip())
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{file}: row {i}: {ID_COLUMN} {v!r} is not an integer SDSS DR7 objid") from None
    return out


def _relative_image_paths(df: pd.DataFrame, ids: np.ndarray) -> list[str]:
    if "subfolder" in df.columns and "filename" in df.columns:
        return [f"{s}/{f}" for s, f in zip(df["subfolder"].astype(str), df["filename"].astype(str))]
    if "file_loc" in df.columns:
        return ["/".join(PurePosixPath(str(p).replace("\\", "/")).parts[-2:]) for p in df["file_loc"]]
    return [f"{str(i)[:6]}/{i}.jpg" for i in ids]


def _read_catalogue(file: Path) -> pd.DataFrame:
    if not file.is_file():
        raise InputError(f"{file}: Zoobot GZ2 catalogue not found; run "
                         f"gzmorph.sources.gz2_download.download_gz2({str(file.parent)!r}) or copy it there")
    try:
        df = pd.read_parquet(file)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise InputError(f"{file}: not a readable parquet file ({err}); delete it to download it again") from err
    require_columns(df, [ID_COLUMN, *ZOOBOT_COUNT_COLUMNS.values()], file)
    return df


def _check_counts(df: pd.DataFrame, file: Path, row_offset: int) -> None:
    for col in ZOOBOT_COUNT_COLUMNS.values():
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = df[col].iloc[i:i + 1].tolist()[0]  # a plain Python value: nan, not np.float64(nan)
            raise InputError(f"{file}: row {i + row_offset}, column {col!r}: vote count {value!r} "
                             f"is not a non-negative number ({int(bad.sum())} bad value(s) in this column)")


def conditional_from_counts(counts: pd.DataFrame, missing_answers: float = np.nan) -> pd.DataFrame:
    """Zoobot count columns -> conditional fractions keyed by Kaggle names.

    fraction = count / (sum of that question's counts), 0 where the sum is 0.
    Answers of questions absent from the catalogue get ``missing_answers``.
    """
    out: dict[str, np.ndarray] = {}
    for q in GZ2_TREE.questions:
        cols = [ZOOBOT_COUNT_COLUMNS.get(a.gz2) for a in q.answers]
        if any(c is None for c in cols):
            for a in q.answers:
                out[a.kaggle] = np.full(len(counts), missing_answers, dtype=float)
            continue
        block = counts[cols].to_numpy(float)
        total = block.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(total > 0, block / np.where(total > 0, total, 1.0), 0.0)
        for j, a in enumerate(q.answers):
            out[a.kaggle] = frac[:, j]
    return pd.DataFrame({c: out[c] for c in GZ2_TREE.kaggle_columns}, index=counts.index)


def read_gz2_remote(dest_dir: str | Path, *, splits: Sequence[str] = ("train", "test"),
                    image_root: str | None = None, check_images: bool = True,
                    missing_answers: float = np.nan) -> pd.DataFrame:
    """Read the downloaded Zoobot GZ2 catalogue(s) in ``dest_dir`` into the standard table.

    Columns: ``id`` (int64, the dr7objid), ``image_path`` (absolute JPEG path),
    the 37 cumulative Kaggle columns ``Class1.1 … Class11.6`` (``Class8.*`` =
    ``missing_answers``, NaN by default: question 8 is not in the catalogue),
    ``zoobot_split`` (``train``/``test``: Zoobot's own split), then every other
    catalogue column unchanged (counts, ``*_fraction``, ``*_total-votes``, ra,
    dec, iauname, summary, label, subfolder, filename...) except ``id_str`` (now
    ``id``) and ``file_loc`` (a path on the catalogue author's machine).

    ``image_root``: folder of ``<subfolder>/<filename>`` relative to ``dest_dir``;
    by default the first of ``images``, ``images_gz2``, ``.`` holding the first
    galaxy's image.  ``check_images``: every image must exist, else
    :class:`InputError` naming how many are missing and the first few.
    """
    dest_dir = Path(dest_dir).resolve()
    unknown = [s for s in splits if s not in CATALOGUES]
    if unknown or not splits:
        raise InputError(f"gz2_remote splits {list(splits)!r}: choose from {list(CATALOGUES)}")

    parts, files = [], []
    offset = 0
    for split in splits:
        file = dest_dir / CATALOGUES[split]
        df = _read_catalogue(file)
        _check_counts(df, file, 0)
        df = df.reset_index(drop=True)
        df.insert(0, "zoobot_split", split)
        parts.append(df)
        files.append((file, offset, len(df)))
        offset += len(df)
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    ids = np.concatenate([_parse_ids(p[ID_COLUMN], f) for p, (f, _, _) in zip(parts, files)])
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        where = [f"{f.name} row {i - o}" for i in np.flatnonzero(ids == ids[first])
                 for f, o, n in files if o <= i < o + n]
        raise InputError(f"{dest_dir}: duplicate {ID_COLUMN} {ids[first]} at {', '.join(where)} "
                         f"({int(pd.Series(ids[dup]).nunique())} duplicated id(s) in all)")

    rel = _relative_image_paths(df, ids)
    if image_root is None:
        candidates = [dest_dir / r for r in IMAGE_ROOTS]
        root = next((c for c in candidates if rel and (c / rel[0]).is_file()), candidates[0])
    else:
        root = (dest_dir / image_root).resolve()
    image_paths = [str(root / r) for r in rel]
    if check_images:
        missing = [p for p in image_paths if not Path(p).is_file()]
        if missing:
            raise InputError(
                f"{dest_dir}: {len(missing)} of {len(image_paths)} GZ2 images not found, e.g. "
                f"{', '.join(missing[:3])}; download them with download_gz2(..., include_images=True) "
                f"or point image_root at the folder holding <subfolder>/<dr7objid>.jpg")

    conditional = conditional_from_counts(df[list(ZOOBOT_COUNT_COLUMNS.values())], missing_answers)
    cumulative = GZ2_TREE.to_cumulative(conditional.fillna(0.0))
    for q in MISSING_QUESTIONS:
        for a in GZ2_TREE.question(q).answers:
            cumulative[a.kaggle] = missing_answers
    out = pd.DataFrame({"id": ids, "image_path": image_paths}, index=df.index)
    rest = df.drop(columns=[c for c in (ID_COLUMN, "file_loc") if c in df.columns])
    return pd.concat([out, cumulative, rest], axis=1)
