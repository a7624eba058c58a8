"""Checks every source table passes before curation; errors name file, row and column.

Rows are named by their line in the file: data row ``i`` (0-based, as pandas reads it) of a CSV is
line ``i + 2``, the header being line 1 (``row_offset``; the catalogues have no blank lines or
quoted line breaks, which pandas would fold).  A Parquet file has no lines: its rows are named
``row i`` (0-based, as pandas and pyarrow count them, like :mod:`gzmorph.sources.gz2_remote`).
Values are shown as plain Python values (``nan``, ``1.5``), never numpy reprs.
"""

from __future__ import annotations

import difflib
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import InputError
from ..tree import GZ2_TREE

#: decision-tree sums may be off by rounding in the published files (Kaggle: ~2e-6)
TREE_SUM_TOLERANCE = 0.01


def _parquet(file: str | Path) -> bool:
    return str(file).endswith(".parquet")


def row_name(file: str | Path, i: int, row_offset: int = 2) -> str:
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
        raise InputError(f"{file}: {row_name(file, row, row_offset)}: missing id")
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
            raise InputError(f"{file}: {row_name(file, i, row_offset)}, column {c!r}: vote fraction "
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
            f"{file}: {row_name(file, pos)} (galaxy {ids.iloc[pos]}): answers of question "
            f"{int(first['question'])} sum to {first['sum']:.4f} {what}; {len(bad)} violation(s) "
            f"in {bad['row'].nunique()} galaxies beyond tolerance {tol}, per question {per_q}")


# ----------------------------------------------------------------- reading a catalogue
#: the forms a catalogue may take: CSV, gzipped CSV, a zip holding one CSV, Parquet
CATALOGUE_SUFFIXES = (".csv", ".csv.gz", ".zip", ".parquet")
#: the words pandas reads as missing by default (``pandas.read_csv``'s ``na_values``)
_MISSING_WORDS = sorted(pd._libs.parsers.STR_NA_VALUES)
#: entries of a zip that are not data (macOS resource forks)
_ZIP_JUNK = ("__MACOSX/", "._")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def read_catalogue(file: str | Path, text_columns=()) -> pd.DataFrame:
    """Read a catalogue: ``.csv``, ``.csv.gz``, ``.zip`` holding exactly one CSV, or ``.parquet``.

    ``text_columns`` of a CSV are read as text (ids such as ``007`` stay as written).  Every problem is one :class:`InputError` naming the file: unreadable, empty (no header),
    a header without rows, a zip holding no CSV or several (its entries are listed).
    """
    file = Path(file)
    name = file.name.lower()
    if file.stat().st_size == 0:
        raise InputError(f"{file}: empty file (0 bytes): no header line and no rows")
    where: str | Path = file
    if name.endswith(".parquet"):
        try:
            df = pd.read_parquet(file)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds
            raise InputError(f"{file}: not a readable Parquet file ({_one_line(err)})") from None
        if len(df.columns) == 0:
            raise InputError(f"{file}: empty Parquet file: no columns and no rows")
    elif name.endswith(".zip"):
        df, where = _read_zipped_csv(file, text_columns)
    else:
        df = _read_csv(file, file, "gzipped CSV" if name.endswith(".gz") else "CSV", text_columns)
    if len(df) == 0:
        raise InputError(f"{where}: header only, no rows (columns {', '.join(map(str, df.columns[:5]))}"
                         f"{' ...' if len(df.columns) > 5 else ''})")
    return df


def _read_csv(source, where, what: str = "CSV", text_columns=()) -> pd.DataFrame:
    """``source``: a path, or a function opening the file (read twice where ``text_columns`` are
    given: the header first, so that only the other columns take pandas' missing-value words)."""
    def read(**kw) -> pd.DataFrame:
        if not callable(source):
            return pd.read_csv(source, **kw)
        with source() as fh:
            return pd.read_csv(fh, **kw)

    try:
        if not text_columns:
            return read(low_memory=False)
        header = read(nrows=0).columns
        # "None", "NA", "null" ... are text in an id or label column, and missing elsewhere; an empty
        # cell is empty everywhere (an empty id or label is an error naming its line)
        na = {c: ([""] if c in text_columns else _MISSING_WORDS) for c in header}
        return read(low_memory=False, keep_default_na=False, na_values=na,
                    dtype={c: str for c in text_columns if c in header})
    except pd.errors.EmptyDataError:
        raise InputError(f"{where}: empty file: no header line and no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, ValueError,
            zipfile.BadZipFile, zlib.error) as err:
        raise InputError(f"{where}: not a readable {what} ({_one_line(err)})") from None


def _read_zipped_csv(file: Path, text_columns=()) -> tuple[pd.DataFrame, str]:
    try:
        zf = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{file}: not a readable zip archive ({_one_line(err)})") from None
    with zf:
        entries = [i.filename for i in zf.infolist() if not i.is_dir()]
        csvs = [n for n in entries if n.lower().endswith(".csv")
                and not any(n.startswith(j) or n.rsplit("/", 1)[-1].startswith(j) for j in _ZIP_JUNK)]
        if len(csvs) != 1:
            inside = ", ".join(entries[:10]) + (" ..." if len(entries) > 10 else "") if entries else "nothing"
            raise InputError(f"{file}: a zipped catalogue must hold exactly one .csv file; it holds "
                             f"{len(csvs)} ({len(entries)} entries: {inside})")
        where = f"{file} ({csvs[0]} inside)"
        if zf.getinfo(csvs[0]).file_size == 0:
            raise InputError(f"{where}: empty file (0 bytes): no header line and no rows")
        return _read_csv(lambda: zf.open(csvs[0]), where, "CSV", text_columns), where
