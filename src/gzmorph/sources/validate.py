"""Checks every source table passes before curation; errors name file, row and column.

Rows are named by their line in the file: data row ``i`` (0-based, as pandas reads it) of a CSV is
line ``i + 2``, the header being line 1 (``row_offset``; the catalogues have no blank lines or
quoted line breaks, which pandas would fold).  A Parquet file has no lines: its rows are named
``row i`` (0-based, as pandas and pyarrow count them, like :mod:`gzmorph.sources.gz2_remote`).
Values are shown as plain Python values (``nan``, ``1.5``), never numpy reprs.
"""

from __future__ import annotations

import difflib
import re
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
    return repr(plain(v))


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


# ----------------------------------------------------------------------------- ids


#: an integer as written (no sign +, no leading zeros: 007 stays the string "007"), and the int64 bound
INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_INTEGRAL = re.compile(r"(-?(?:0|[1-9][0-9]*))\.0*")
INT64_MAX = np.iinfo(np.int64).max


def plain(v):
    """A cell as a plain Python value (``1.5``, not ``np.float64(1.5)``)."""
    return v.item() if isinstance(v, np.generic) else v


def typed_ids(raw: pd.Series, id_type: str, name, where: str = "id", hints: bool = True) -> pd.Series:
    """Ids as int64 or string (one type for the column).  ``raw`` holds text (a CSV read as text,
    file stems) or a Parquet column's values; ``name(i)`` says where row ``i`` is.  Integers are
    parsed exactly (never through float); ``hints``: the errors suggest a table source's id_type."""
    if raw.isna().any():
        i = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise InputError(f"{name(i)}: empty {where}")
    if pd.api.types.is_integer_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        if id_type == "string":
            return raw.astype(str).astype("string")
        if raw.dtype == np.uint64 and len(raw) and int(raw.max()) > INT64_MAX:
            i = int(np.argmax(raw.to_numpy() > INT64_MAX))
            _too_large(name(i), where, raw.iloc[i], hints)
        return raw.astype("int64")
    if pd.api.types.is_float_dtype(raw.dtype):
        v = raw.to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(v) | (v != np.round(v)))
        if len(bad):
            what = ("not an integer" if id_type == "integer"
                    else "neither an integer nor text (store ids as integers or strings)")
            raise InputError(f"{name(int(bad[0]))}: {where} {plain(raw.iloc[int(bad[0])])!r} is {what}")
        big = np.flatnonzero(np.abs(v) >= 2.0 ** 53)  # a float no longer holds every integer: the id may have changed
        if len(big):
            raise InputError(f"{name(int(big[0]))}: {where} {plain(raw.iloc[int(big[0])])!r} is stored as a float, "
                             "too large to be an exact id (store ids as integers or text)")
        return raw.astype("int64") if id_type != "string" else raw.astype("int64").astype(str).astype("string")
    kinds = [type(plain(v)) for v in raw]
    if any(k not in (str, int) for k in kinds):
        i = next(i for i, k in enumerate(kinds) if k not in (str, int))
        raise InputError(f"{name(i)}: {where} {plain(raw.iloc[i])!r} is neither an integer nor text")
    text = [str(v).strip() if isinstance(v, str) else str(v) for v in raw]
    if any(t == "" for t in text):
        raise InputError(f"{name(text.index(''))}: empty {where}")
    is_int = np.array([isinstance(v, int) or bool(INTEGER.fullmatch(t)) for v, t in zip(raw, text)])
    if id_type == "string":
        return pd.Series(text, index=raw.index, dtype="string")
    if id_type == "integer":
        text = [m.group(1) if (m := _INTEGRAL.fullmatch(t)) else t for t in text]  # 817377.0: written by a float column
        is_int = np.array([bool(INTEGER.fullmatch(t)) for t in text])
        if not is_int.all():
            i = int(np.flatnonzero(~is_int)[0])
            hint = " (the source's id_type is integer; choose string)" if hints else ""
            raise InputError(f"{name(i)}: {where} {text[i]!r} is not an integer{hint}")
        return _int64(text, raw.index, name, where, hints)
    if is_int.all():
        return _int64(text, raw.index, name, where, hints)
    if not is_int.any():
        return pd.Series(text, index=raw.index, dtype="string")
    # a mixture: name the first id of the kind that differs from the first row's
    i = int(np.flatnonzero(is_int != is_int[0])[0])
    kinds = ("an integer", "text") if is_int[0] else ("text", "an integer")
    raise InputError(f"{name(i)}: mixed id types: {where} {text[i]!r} is {kinds[1]} while {text[0]!r} "
                     f"({name(0)}) is {kinds[0]}; set id_type: string to read every id as text")



def _too_large(row: str, where: str, value, hints: bool = True) -> None:
    hint = "; set id_type: string to keep every id as written" if hints else ""
    raise InputError(f"{row}: {where} {str(plain(value))!r} is too large for a 64-bit integer{hint}")


def _int64(text: list[str], index, name, where: str, hints: bool = True) -> pd.Series:
    values = [int(t) for t in text]
    for i, v in enumerate(values):
        if not -INT64_MAX - 1 <= v <= INT64_MAX:
            _too_large(name(i), where, text[i], hints)
    return pd.Series(values, index=index, dtype="int64")
