"""Checks every source table passes before curation; errors name file, row and column."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import InputError
from ..tree import GZ2_TREE

#: decision-tree sums may be off by rounding in the published files (Kaggle: ~2e-6)
TREE_SUM_TOLERANCE = 0.01


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
        raise InputError(f"{file}: line {row + row_offset}: missing id")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        lines = [int(i) + row_offset for i in np.flatnonzero((ids == first).to_numpy())]
        raise InputError(f"{file}: duplicate id {first} on lines {lines} "
                         f"({dup.nunique()} duplicated id(s) in all)")


def check_fractions(df: pd.DataFrame, columns, file: str | Path, row_offset: int = 2) -> None:
    """Vote fractions must be numbers in [0, 1]; the first offender is named."""
    for c in columns:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(v) | (v < 0) | (v > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{file}: line {i + row_offset}, column {c!r}: vote fraction "
                             f"{df[c].iloc[i]!r} is not a number in [0, 1] "
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
            f"{file}: line {pos + 2} (galaxy {ids.iloc[pos]}): answers of question "
            f"{int(first['question'])} sum to {first['sum']:.4f} {what}; {len(bad)} violation(s) "
            f"in {bad['row'].nunique()} galaxies beyond tolerance {tol}, per question {per_q}")
