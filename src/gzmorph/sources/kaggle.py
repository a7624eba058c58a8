"""The Kaggle Galaxy Zoo challenge layout (also written by the synthetic source).

``data_dir`` holds ``training_solutions_rev1`` as ``.csv``, ``.csv.gz``, ``.zip`` (one CSV inside,
as Kaggle distributes it) or ``.parquet`` (exactly one of them), and
``images_training_rev1/<GalaxyID>.jpg``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import InputError
from ..tree import KAGGLE_COLUMNS
from .validate import (CATALOGUE_SUFFIXES, check_fractions, check_ids, check_tree_sums, read_catalogue,
                       require_columns, row_name, typed_ids)

CATALOGUE = "training_solutions_rev1.csv"
IMAGES = "images_training_rev1"
#: the catalogue as distributed (Kaggle serves training_solutions_rev1.zip) or recompressed
CATALOGUE_NAMES = tuple(f"training_solutions_rev1{s}" for s in CATALOGUE_SUFFIXES)


def find_catalogue(data_dir: str | Path) -> Path:
    """The one ``training_solutions_rev1`` catalogue (.csv, .csv.gz, .zip or .parquet) in ``data_dir``."""
    data_dir = Path(data_dir)
    found = [data_dir / n for n in CATALOGUE_NAMES if (data_dir / n).is_file()]
    if not found:
        raise InputError(f"{data_dir / CATALOGUE}: Kaggle catalogue not found (data_dir must hold "
                         f"{CATALOGUE}, or it as .csv.gz, .zip or .parquet, and {IMAGES}/<GalaxyID>.jpg)")
    if len(found) > 1:
        raise InputError(f"{data_dir}: {len(found)} Kaggle catalogues, {' and '.join(p.name for p in found)}; "
                         f"keep one")
    return found[0]


def read_kaggle(data_dir: str | Path) -> pd.DataFrame:
    data_dir = Path(data_dir).resolve()
    file = find_catalogue(data_dir)
    df = read_catalogue(file, text_columns=["GalaxyID"])  # parsed exactly, never through float
    require_columns(df, ["GalaxyID", *KAGGLE_COLUMNS], file)
    ids = typed_ids(df["GalaxyID"], "integer", lambda i: f"{file}: {row_name(file, i)}", "GalaxyID", hints=False)
    check_ids(ids, file)
    check_fractions(df, KAGGLE_COLUMNS, file)
    votes = df[KAGGLE_COLUMNS].astype(float)
    check_tree_sums(votes, file, ids)
    out = pd.DataFrame({
        "id": ids.to_numpy(),
        "image_path": [str(data_dir / IMAGES / f"{i}.jpg") for i in ids.tolist()],
    })
    out = pd.concat([out, votes, df.drop(columns=["GalaxyID", *KAGGLE_COLUMNS])], axis=1)
    return out
