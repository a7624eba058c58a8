"""Users' own galaxies: the ``table`` source, a catalogue of their own or a folder of class folders.

Two layouts (config ``table.layout``):

``table``
    A catalogue file (``table.catalogue``, inside ``data_dir`` or absolute: ``.csv``, ``.csv.gz``,
    ``.zip`` holding one CSV, or ``.parquet``) with an id column (``id_column``), the images either
    in a column of paths (``image_column``, relative to ``data_dir`` or absolute) or as a folder
    (``image_dir``, relative to ``data_dir``) plus a file-name pattern (``image_pattern``, e.g.
    ``"{id}.fits"``; any column may be named in braces), optional label columns
    (``label_columns``: categories, every cell filled) and optional Galaxy Zoo vote columns,
    declared by ``votes``: ``kaggle`` (the 37 cumulative ``Class1.1 … Class11.6``) or ``gz2``
    (conditional fractions named by GZ2 answer, ``t01_smooth_or_features_a01_smooth`` …, each with
    ``vote_suffix`` appended, e.g. ``_weighted_fraction``), which become the standard table's
    cumulative Kaggle columns as the other sources' do.
``folder``
    ``data_dir/<class>/<image>``: one sub-folder per class; the class (the folder's name) is the
    label column ``class`` and the id is the file name without its suffix.

Ids are integers or strings and keep their type in every output: ``id_type: auto`` makes them
integers when every id is one (written as Python writes an integer, without leading zeros or a
plus sign: ``7`` and ``-7``, not ``007`` or ``+7``) and strings when none is; a mixture is an error naming the first id of the other kind (choose
``id_type: string``).  A CSV's id and label cells are read as text, so ``007`` stays ``007`` and
``None`` or ``NA`` is a value, not a missing cell; only the spaces around a cell are dropped.

Images are JPEG, PNG or FITS (:mod:`gzmorph.fits`, options ``fits:``); a file of any other kind is
an error here, as are ``fits`` options that do not fit the first FITS file (its HDUs or bands), while
a file that cannot be decoded is left to the bad-image policy of :mod:`gzmorph.preprocess`.  Every
other problem (absent columns, empty ids or labels, duplicate ids, an id too large for 64 bits, a
sub-folder inside a class folder, a class folder without images) is one
:class:`~gzmorph.io.InputError` naming the file, row (line) or key.
"""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..fits import FitsLayoutError, FitsOptions, is_fits, read_bands
from ..io import InputError
from ..manifest import path_error
from ..preprocess import DEFAULT_MAX_IMAGE_PIXELS, IMAGE_SUFFIXES, image_stem, image_suffix
from ..tree import GZ2_TREE, KAGGLE_COLUMNS
from .validate import (check_fractions, check_ids, check_tree_sums, plain, read_catalogue, require_columns,
                       row_name, typed_ids)

LAYOUTS = ("table", "folder")
ID_TYPES = ("auto", "integer", "string")
VOTE_KINDS = ("none", "kaggle", "gz2")
#: the label column of the folder layout: the name of the class folder
FOLDER_LABEL = "class"
#: names a curated catalogue gives its own columns; a catalogue's own column of that name is renamed
RESERVED = ("label", "label_name", "confidence", "split", "true_label", "source")


@dataclass
class TableSettings:
    """The ``table:`` config block (and a table entry of ``sources:``): where the catalogue, ids,
    images, labels and votes are."""

    layout: str = "table"  # table | folder
    catalogue: str = ""  # table layout: CSV / Parquet file, relative to data_dir or absolute
    id_column: str = "id"
    id_type: str = "auto"  # auto | integer | string
    image_column: str = ""  # a column of image paths, relative to data_dir or absolute
    image_dir: str = ""  # or: the images' folder (relative to data_dir) ...
    image_pattern: str = ""  # ... and their file names, e.g. "{id}.fits"
    label_columns: list[str] = field(default_factory=list)
    votes: str = "none"  # none | kaggle | gz2
    vote_suffix: str = ""  # gz2 votes: the column suffix, e.g. _weighted_fraction
    fits: FitsOptions = field(default_factory=FitsOptions)

    @classmethod
    def from_config(cls, given: dict | None, where: str = "table") -> TableSettings:
        from ..settings import options

        given = dict(given or {})
        fits = FitsOptions.from_config(given.pop("fits", None), f"{where}.fits")
        out = options(cls, {**given, "fits": fits}, where)
        out.check(where)
        return out

    def check(self, where: str = "table") -> None:
        for key, allowed in (("layout", LAYOUTS), ("id_type", ID_TYPES), ("votes", VOTE_KINDS)):
            if getattr(self, key) not in allowed:
                raise InputError(f"{where}.{key}: {getattr(self, key)!r} is not one of {list(allowed)}")
        if self.layout == "folder":
            given = [k for k in ("catalogue", "image_column", "image_dir", "image_pattern") if getattr(self, k)]
            if given or self.votes != "none":
                raise InputError(f"{where}: the folder layout (<data_dir>/<class>/<image>) has no catalogue, "
                                 f"image column or votes; remove {', '.join(given) or 'votes'}")
            return
        if not self.catalogue:
            raise InputError(f"{where}.catalogue: the table layout needs its catalogue file (CSV or Parquet)")
        if bool(self.image_column) == bool(self.image_pattern):
            raise InputError(f"{where}: give either image_column (a column of paths) or image_pattern "
                             "(file names in image_dir, e.g. '{id}.fits'), not both or neither")
        if self.image_dir and not self.image_pattern:
            raise InputError(f"{where}.image_dir: goes with image_pattern")
        if self.image_pattern:
            try:
                parsed = list(string.Formatter().parse(self.image_pattern))
            except ValueError as err:
                raise InputError(f"{where}.image_pattern: cannot read {self.image_pattern!r} ({err}); write e.g. "
                                 "'{id}.fits'") from None
            wide = [spec for _, _, spec, _ in parsed if spec and any(int(n) > 64 for n in re.findall(r"\d+", spec))]
            if wide:
                raise InputError(f"{where}.image_pattern: the format {wide[0]!r} in {self.image_pattern!r} asks for "
                                 "more than 64 characters; file names use e.g. '{id:08d}.fits'")
            fields_ = [f for _, f, _, _ in parsed if f is not None]
            if not fields_:
                raise InputError(f"{where}.image_pattern: {self.image_pattern!r} names no column; "
                                 "write e.g. '{id}.fits'")
        if self.vote_suffix and self.votes != "gz2":
            raise InputError(f"{where}.vote_suffix: only gz2 votes have a suffix")

    def as_dict(self) -> dict:
        return asdict(self)


def catalogue_path(data_dir: str | Path, settings: TableSettings) -> Path:
    """The catalogue file (table layout) or the class folder (folder layout) the source is read from."""
    data_dir = Path(data_dir)
    if settings.layout == "folder":
        return data_dir
    path = Path(settings.catalogue)
    return path if path.is_absolute() else data_dir / path


# ----------------------------------------------------------------------------- layouts


def read_table_source(data_dir: str | Path, settings: TableSettings | dict | None = None, **options) -> pd.DataFrame:
    """Read a table source into the standard table: ``id`` (int64 or string), ``image_path``, the 37
    cumulative Kaggle columns when votes are declared, the label columns and the catalogue's
    other columns."""
    if not isinstance(settings, TableSettings):
        settings = TableSettings.from_config({**(settings or {}), **options})
    data_dir = Path(data_dir).resolve()
    table = read_folder(data_dir, settings) if settings.layout == "folder" else read_catalogue_table(data_dir, settings)
    check_first_fits(table["image_path"], settings.fits)
    return table


def check_first_fits(paths, fits: FitsOptions) -> None:
    """Read the first FITS file that exists, so that ``fits`` options that do not fit the survey's
    files (:class:`~gzmorph.fits.FitsLayoutError`) stop the run before any image is decoded; any
    other problem of that one file is left to the bad-image policy."""
    first = next((p for p in paths if is_fits(p) and Path(p).is_file()), None)
    if first is None:
        return
    try:
        read_bands(first, fits, DEFAULT_MAX_IMAGE_PIXELS)
    except FitsLayoutError:
        raise
    except InputError:
        pass


def catalogue_column(name: str) -> str:
    """The name a catalogue's own column named like one of the standard table's takes."""
    return f"catalogue_{name}"


def _rename_reserved(df: pd.DataFrame, file: Path) -> pd.DataFrame:
    """The catalogue's own columns named like the standard or curated table's (``id``, ``label`` ...)
    become ``catalogue_<name>`` (a label cut or a fine-tuning label still names them as written)."""
    clash = {c: catalogue_column(c) for c in ("id", "image_path", *RESERVED) if c in df.columns}
    taken = [(c, new) for c, new in clash.items() if new in df.columns]
    if taken:
        c, new = taken[0]
        raise InputError(f"{file}: column {c!r} is renamed {new!r} (the standard table has its own {c!r}), but the "
                         f"catalogue also has a column {new!r}; rename one of them")
    return df.rename(columns=clash)


def read_catalogue_table(data_dir: Path, s: TableSettings) -> pd.DataFrame:
    file = catalogue_path(data_dir, s)
    if not file.is_file():
        raise InputError(f"{file}: table catalogue not found (config table.catalogue, relative to data_dir "
                         f"{data_dir})")
    as_text = [s.id_column, *s.label_columns]
    df = read_catalogue(file, text_columns=as_text)
    pattern_cols = [f for _, f, _, _ in string.Formatter().parse(s.image_pattern or "") if f]
    needed = [s.id_column, *([s.image_column] if s.image_column else []),
              *[c for c in pattern_cols if c != "id" or s.id_column == "id"], *s.label_columns]
    require_columns(df, list(dict.fromkeys(needed)), file)

    def name(i: int) -> str:
        return f"{file}: {row_name(file, i)}"

    ids = typed_ids(df[s.id_column], s.id_type, name, f"id ({s.id_column!r})")
    check_ids(ids, file)
    for col in s.label_columns:
        empty = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if empty.any():
            i = int(np.flatnonzero(empty.to_numpy())[0])
            raise InputError(f"{name(i)}, column {col!r}: empty label (id {plain(ids.iloc[i])!r}); "
                             f"{int(empty.sum())} empty cell(s) in this label column")
    if s.image_column:
        paths = []
        for i, v in enumerate(df[s.image_column]):
            if pd.isna(v) or not str(v).strip():
                raise InputError(f"{name(i)}, column {s.image_column!r}: empty image path")
            p = Path(str(v).strip())
            paths.append(p if p.is_absolute() else data_dir / p)
    else:
        folder = data_dir / s.image_dir
        paths = []
        for i, row in enumerate(df.to_dict("records")):
            try:
                paths.append(folder / s.image_pattern.format_map({**row, "id": plain(ids.iloc[i])}))
            except (KeyError, ValueError, IndexError) as err:
                raise InputError(f"config table.image_pattern: {s.image_pattern!r} cannot name the image of "
                                 f"{row_name(file, i)} ({err})") from None
    for i, p in enumerate(paths):
        if why := path_error(str(p)):
            raise InputError(f"{name(i)}: {why}")
        if not image_suffix(p):
            raise InputError(f"{name(i)}: {p} is not an image file (JPEG, PNG or FITS: "
                             f"{', '.join(IMAGE_SUFFIXES)})")
    out = pd.DataFrame({"id": ids.to_numpy(), "image_path": [str(p) for p in paths]}, index=df.index)
    out["id"] = out["id"].astype(ids.dtype)
    votes = _votes(df, s, file, ids)
    rest = df.drop(columns=[s.id_column, *(["image_path"] if s.image_column == "image_path" else [])])
    rest = rest.drop(columns=[c for c in rest.columns if votes is not None and c in votes.columns])
    parts = [out, *([votes] if votes is not None else []), _rename_reserved(rest, file)]
    return pd.concat(parts, axis=1).reset_index(drop=True)


def _votes(df: pd.DataFrame, s: TableSettings, file: Path, ids: pd.Series) -> pd.DataFrame | None:
    if s.votes == "none":
        return None
    if s.votes == "kaggle":
        require_columns(df, KAGGLE_COLUMNS, file)
        check_fractions(df, KAGGLE_COLUMNS, file)
        votes = df[KAGGLE_COLUMNS].apply(pd.to_numeric).astype(float)
        check_tree_sums(votes, file, ids)
        return votes
    cols = [f"{a.gz2}{s.vote_suffix}" for a in GZ2_TREE.answers]
    require_columns(df, cols, file)
    check_fractions(df, cols, file)
    conditional = pd.DataFrame({a.kaggle: pd.to_numeric(df[c]).astype(float).to_numpy()
                                for a, c in zip(GZ2_TREE.answers, cols)}, index=df.index)
    check_tree_sums(conditional, file, ids, conditional=True)
    return GZ2_TREE.to_cumulative(conditional)


def _hidden(p: Path) -> bool:
    return p.name.startswith(".")


def read_folder(data_dir: Path, s: TableSettings) -> pd.DataFrame:
    """``data_dir/<class>/<image>``: one row per image, the class in column ``class``."""
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: image folder not found (the folder layout is <data_dir>/<class>/<image>)")
    classes = sorted(p for p in data_dir.iterdir() if p.is_dir() and not _hidden(p))
    if not classes:
        raise InputError(f"{data_dir}: no class sub-folders (the folder layout is <data_dir>/<class>/<image>, "
                         "one sub-folder per class)")
    loose = sorted(p for p in data_dir.iterdir() if p.is_file() and image_suffix(p) and not _hidden(p))
    if loose:  # it would be left out of every class without a word (other files, e.g. a README, may lie there)
        raise InputError(f"{loose[0]}: an image in the folder layout's top folder, outside every class folder "
                         f"({len(loose)} such image(s)); move it into its class's folder (<data_dir>/<class>/<image>)")
    rows = []
    for folder in classes:
        entries = sorted(p for p in folder.iterdir() if not _hidden(p))
        images = [p for p in entries if not p.is_dir() and image_suffix(p)]
        if not images:
            held = ", ".join(p.name for p in entries[:3]) + (" ..." if len(entries) > 3 else "")
            raise InputError(f"{folder}: sub-folder with no images, so it is not a class (the folder layout is "
                             f"<data_dir>/<class>/<image>; it holds {held or 'nothing'}); remove it or add its "
                             "images")
        for p in entries:
            if why := path_error(str(p)):
                raise InputError(f"{folder}: {why}")
            if p.is_dir():
                raise InputError(f"{p}: a folder inside the class folder {folder.name!r}; the folder layout is "
                                 "<data_dir>/<class>/<image>, one level of class folders, so this is not a "
                                 "class (move its images up, or remove it)")
            if not image_suffix(p):
                raise InputError(f"{p}: not an image file (JPEG, PNG or FITS: {', '.join(IMAGE_SUFFIXES)}) "
                                 f"in the class folder {folder.name!r}")
        rows += [(image_stem(p), str(p), folder.name) for p in images]
    stems = pd.Series([r[0] for r in rows], dtype=object)
    ids = typed_ids(stems, s.id_type, lambda i: rows[i][1], "id (file name)")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        files = [rows[i][1] for i in np.flatnonzero((ids == first).to_numpy())]
        raise InputError(f"{' and '.join(files)} share the id {plain(first)!r} (ids are file names without "
                         f"their suffix; {dup.nunique()} shared id(s) in all): give them distinct file names")
    out = pd.DataFrame({"id": ids.to_numpy(), "image_path": [r[1] for r in rows],
                        FOLDER_LABEL: [r[2] for r in rows]})
    out["id"] = out["id"].astype(ids.dtype)
    return out
