"""Catalogue sources.  Every source becomes one *standard table*:

``id`` (int64, unique), ``image_path`` (absolute path of the JPEG), the 37
Kaggle-layout **cumulative** vote-fraction columns ``Class1.1 … Class11.6``
(see :mod:`gzmorph.tree`), and whatever else the source carries (the GZ2
columns, the true parameters of synthetic galaxies).

* ``kaggle`` – ``training_solutions_rev1.csv`` (or ``.csv.gz``, ``.zip`` holding one CSV as
  Kaggle serves it, ``.parquet``) + ``images_training_rev1/<GalaxyID>.jpg``.
* ``synthetic`` – the built-in simulator writes exactly the Kaggle layout
  (plus ``true_*`` columns), then it is read like ``kaggle``.
* ``gz2`` – a ``gz2_hart16``-style catalogue (``.csv``, ``.csv.gz``, ``.zip``, ``.parquet``)
  + ``images/<asset_id>.jpg``
  (:mod:`gzmorph.sources.gz2`), or, in a folder holding
  ``gz2_train_catalog.parquet``, the downloaded Zoobot release
  (:mod:`gzmorph.sources.gz2_remote`; it has no question-8 counts, so
  ``Class8.*`` are NaN there).
* ``table`` – users' own galaxies (:mod:`gzmorph.sources.table`): a CSV or Parquet catalogue with an
  id column (integers or strings, kept), image paths or a folder + file-name pattern (JPEG, PNG or
  FITS), label columns and optional declared vote columns; or the ``folder`` layout,
  ``<data_dir>/<class>/<image>``.  Without votes it has no ``Class*`` columns.

Several sources merge into one table by :func:`merge_sources` (a ``source`` column; ids unique).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import InputError

SOURCES = ("synthetic", "kaggle", "gz2", "table")


def read_source(source: str, data_dir: str | Path, **options) -> pd.DataFrame:
    """Read the catalogue of ``source`` in ``data_dir`` into the standard table."""
    if source in ("kaggle", "synthetic"):
        from .kaggle import read_kaggle

        return read_kaggle(data_dir)
    if source == "gz2":
        from .gz2 import read_gz2
        from .gz2_remote import is_release, read_gz2_remote

        if is_release(data_dir, options.get("catalogue")):
            return read_gz2_remote(data_dir)  # the downloaded Zoobot release
        return read_gz2(data_dir, **options)
    if source == "table":
        from .table import read_table_source

        return read_table_source(data_dir, **options)
    raise InputError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
