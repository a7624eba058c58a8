"""The Kaggle Galaxy Zoo challenge layout (also written by the synthetic source)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import InputError
from ..tree import KAGGLE_COLUMNS
from .validate import check_fractions, check_ids, check_tree_sums, require_columns

CATALOGUE = "training_solutions_rev1.csv"
IMAGES = "images_training_rev1"


def read_kaggle(data_dir: str | Path) -> pd.DataFrame:
    data_dir = Path(data_dir).resolve()
    file = data_dir / CATALOGUE
    if not file.is_file():
        raise InputError(f"{file}: Kaggle catalogue not found (data_dir must hold {CATALOGUE} "
                         f"and {IMAGES}/<GalaxyID>.jpg)")
    try:
        df = pd.read_csv(file, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"{file}: not a readable CSV: {err}") from err
    require_columns(df, ["GalaxyID", *KAGGLE_COLUMNS], file)
    check_ids(df["GalaxyID"], file)
    check_fractions(df, KAGGLE_COLUMNS, file)
    ids = pd.to_numeric(df["GalaxyID"], errors="coerce")
    not_int = (ids.isna() | (ids != ids.round())).to_numpy()
    if not_int.any():
        row = int(not_int.nonzero()[0][0])  # data row i is line i + 2 of the file (header = line 1)
        value = df["GalaxyID"].iloc[row:row + 1].tolist()[0]  # plain: 1.5, not np.float64(1.5)
        raise InputError(f"{file}: line {row + 2}: GalaxyID {value!r} is not an integer")
    votes = df[KAGGLE_COLUMNS].astype(float)
    check_tree_sums(votes, file, df["GalaxyID"])
    out = pd.DataFrame({
        "id": ids.astype("int64"),
        "image_path": [str(data_dir / IMAGES / f"{int(i)}.jpg") for i in ids],
    })
    out = pd.concat([out, votes, df.drop(columns=["GalaxyID", *KAGGLE_COLUMNS])], axis=1)
    return out
