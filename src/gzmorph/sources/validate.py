"""Checks every source table passes before curation; errors name file, row and column.

Rows are named by their line in the file: data row ``i`` (0-based, as pandas reads it) of a CSV is
line ``i + 2``, the header being line 1 (``row_offset``; the catalogues have no blank lines or
quoted line breaks, which pandas would fold).  A Parquet file has no lines: its rows are named
``row i`` (0-based, as pandas and pyarrow count them, like :mod:`gzmorph.sources.gz2_remote`).
Values are shown as plain Python values (``nan``, ``1.5``), never numpy reprs.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import InputError
from ..tree import GZ2_TREE

#: decision-tree sums may be off by rounding in the published files (Kaggle: ~2e-6)
TREE_SUM_TOLERANCE = 0.01


def _parquet(file: str | Path) -> bool:
    return str(file).endswith(".parquet")


def _row(file: str | Path, i: int, row_offset: int = 2) -> str:
    """Where data row ``i`` (0-based) of ``file`` is: its line, or its row in a Parquet file."""
    return f"row {i}" if _parquet(file) else f"line {i + row_offset}"


def _value(v) -> str:
    """``repr`` of a cell as a plain Python value (``nan``, not ``np.float64(nan)``)."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def require_columns(df: pd.DataFrame, columns, file: str | Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if not missing:
        return
    hints = []
    unexpected = [str(x) for x in df.columns if x not in set(columns)]
    for c in missing[:3]:
        close = difflib.get_close_matches(c, unexpected, n=1)
        if close:
            hints.append(f"{c!r} (found {close[0]!r} — renamed?)")
    more = f"; {'; '.join(hints)}" if hints else ""
    raise InputError(f"{file}: missing column(s) {', '.join(map(repr, missing[:10]))}"
                     f"{' ...' if len(missing) > 10 else ''}{more}")


def check_ids(ids: pd.Series, file: str | Path, row_offset: int = 2) -> None:
    """Ids must be present and unique; ``row_offset`` maps index → line number (header = 1)."""
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise InputError(f"{file}: {_row(file, row, row_offset)}: missing id")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        rows = [int(i) + (0 if _parquet(file) else row_offset) for i in np.flatnonzero((ids == first).to_numpy())]
        raise InputError(f"{file}: duplicate id {first} on {'rows' if _parquet(file) else 'lines'} {rows} "
                         f"({dup.nunique()} duplicated id(s) in all)")


def check_fractions(df: pd.DataFrame, columns, file: str | Path, row_offset: int = 2) -> None:
    """Vote fractions must be numbers in [0, 1]; the first offender is named."""
    for c in columns:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(v) | (v < 0) | (v > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{file}: {_row(file, i, row_offset)}, column {c!r}: vote fraction "
                             f"{_value(df[c].iloc[i])} is not a number in [0, 1] "
                             f"({int(bad.sum())} bad value(s) in this column)")


def check_tree_sums(fractions: pd.DataFrame, file: str | Path, ids: pd.Series,
                    tol: float = TREE_SUM_TOLERANCE, conditional: bool = False) -> None:
    """Each question's fractions must add up: to its reach (cumulative) or to 1 or 0 (conditional)."""
    bad = GZ2_TREE.sum_violations(fractions, tol=tol, conditional=conditional)
    if len(bad):
        first = bad.iloc[0]
        pos = fractions.index.get_loc(first["row"])
        what = ("should be 1 (or 0 where nobody answered)" if conditional
                else f"but {first['expected']:.4f} of volunteers reached it")
        per_q = bad.groupby("question").size().to_dict()
        raise InputError(
            f"{file}: {_row(file, pos)} (galaxy {ids.iloc[pos]}): answers of question "
            f"{int(first['question'])} sum to {first['sum']:.4f} {what}; {len(bad)} violation(s) "
            f"in {bad['row'].nunique()} galaxies beyond tolerance {tol}, per question {per_q}")
