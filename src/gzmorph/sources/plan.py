"""Which sources a configuration reads, and several sources merged into one table.

:func:`source_specs` turns the configuration into one entry per source, named: the single source
of ``source``/``data_dir``/``cut`` (named by its kind), or each entry of ``sources:``
(``{name: {source, data_dir, cut, table|gz2 options}}``; a source without ``cut`` takes the
top-level one; the top-level ``source`` and ``data_dir`` are not used then).  Each entry says what the source reads and whether it has vote fractions.

:func:`merge_sources` concatenates the sources' standard tables with a ``source`` column; ids must
be of one type (all integers or all strings) and unique across sources, each a clear error naming
the sources (and, for a clash, the id and both images).

Torch-free and quick: the workflow calls :func:`source_specs` when it builds the DAG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import InputError, portable_path

#: the kinds a ``sources:`` entry may be (the synthetic source lives under results/ of a single run)
MERGEABLE = ("kaggle", "gz2", "table")
SOURCE_COLUMN = "source"


def _options(kind: str, block: dict) -> dict:
    """The keyword arguments of :func:`gzmorph.sources.read_source` for a source of ``kind``."""
    if kind == "gz2":
        gz2 = block.get("gz2") or {}
        from .gz2 import DEFAULT_FRACTION_KIND

        return {"catalogue": gz2.get("catalogue") or None,
                "fraction_kind": gz2.get("fraction_kind", DEFAULT_FRACTION_KIND)}
    if kind == "table":
        from .table import TableSettings

        return TableSettings.from_config(block.get("table"), "table").as_dict()
    return {}


def _has_votes(kind: str, options: dict) -> bool:
    return kind != "table" or options.get("votes", "none") != "none"


def several(config: dict) -> bool:
    """Whether the configuration merges several sources (a non-empty ``sources:``)."""
    return bool(config.get("sources"))


def source_specs(config: dict) -> dict[str, dict]:
    """``{name: {source, data_dir, cut, options, fits, votes}}`` of every source the run reads, in
    config order; ``data_dir`` as given (the workflow resolves it)."""
    if not several(config):
        kind = config["source"]
        opts = _options(kind, config)
        return {kind: {"source": kind, "data_dir": config.get("data_dir", ""), "cut": config["cut"],
                       "options": opts, "fits": opts.get("fits", {}), "votes": _has_votes(kind, opts)}}
    out = {}
    for name, block in config["sources"].items():
        kind = block["source"]
        opts = _options(kind, block)
        out[str(name)] = {"source": kind, "data_dir": block.get("data_dir", ""),
                          "cut": block.get("cut") or config["cut"], "options": opts,
                          "fits": opts.get("fits", {}), "votes": _has_votes(kind, opts)}
    return out


def spec_errors(config: dict) -> list[str]:
    """Problems of the source configuration, one line each naming the key (gzmorph.config_check)."""
    out = []
    if several(config):  # the top-level source and data_dir are not used then
        items = [(f"sources.{n}", b) for n, b in config["sources"].items()]
    else:
        items = [("", config)]
    for key, block in items:
        kind = block.get("source")
        k = f"{key}." if key else ""
        if several(config) and kind not in MERGEABLE:
            out.append(f"config {k}source: {kind!r} cannot be one of several sources; choose one of "
                       f"{list(MERGEABLE)}")
            continue
        if kind == "table":
            from .table import TableSettings

            try:
                TableSettings.from_config(block.get("table"), f"config {k}table")
            except InputError as err:
                out.append(str(err) if str(err).startswith("config") else f"config {k}table: {err}")
        if kind in ("table", "kaggle") and not block.get("data_dir"):
            out.append(f"config {k}data_dir: source {kind} needs the folder of its catalogue and images")
        if several(config) and kind == "gz2" and not block.get("data_dir"):
            out.append(f"config {k}data_dir: a gz2 source among several needs its local folder (the download "
                       "is for a single gz2 source)")
    return out


def apply_specs(apply_to: dict) -> dict[str, dict]:
    """``classify.apply_to`` as source specs, ``{name: {source, data_dir (io.portable_path), options}}``: the
    other catalogues a trained classifier is applied to; options are the source reader's."""
    return {str(name): {"source": b["source"], "data_dir": portable_path(b["data_dir"]),
                        "options": {k: v for k, v in b.items() if k not in ("source", "data_dir")}}
            for name, b in apply_to.items()}


def data_errors(specs: dict[str, dict]) -> list[str]:
    """The folder and catalogue of each source (``{config key: spec}``, specs as :func:`source_specs`
    gives them) as the rules will look for them (:func:`source_inputs`), one line naming the key each:
    the workflow checks them when it builds the DAG, before an input function fails inside Snakemake.
    A synthetic source, or a gz2 one to download (no data_dir), has nothing to check yet."""
    out = []
    for key, spec in specs.items():
        data_dir = spec.get("data_dir")
        if spec["source"] not in ("table", "kaggle", "gz2") or not data_dir:
            continue
        if not Path(data_dir).is_dir():
            out.append(f"config {key}: {data_dir}: no such folder")
            continue
        try:
            source_inputs(spec, data_dir)
        except InputError as err:
            out.append(f"config {key}: {err}")
            continue
        images = image_folder(spec, data_dir)
        if images and not any(p.is_dir() for p in images):  # found now, not after the source table and selection
            out.append(f"config {key}: {images[0]}: no such image folder (the {spec['source']} source reads its "
                       "images from it)")
    return out


def image_folder(spec: dict, data_dir: str | Path) -> list[Path]:
    """The folders a built-in source may read its images from, one of which must exist (empty: a
    table source names its own, row by row)."""
    data_dir = Path(data_dir)
    if spec["source"] == "kaggle":
        from .kaggle import IMAGES

        return [data_dir / IMAGES]
    if spec["source"] == "gz2":
        from .gz2_remote import IMAGE_ROOTS, is_release

        if is_release(data_dir, spec["options"].get("catalogue")):
            return [data_dir / r for r in IMAGE_ROOTS]  # the Zoobot release, where read_gz2_remote looks
        return [data_dir / "images"]
    return []


# ----------------------------------------------------------------------------- merging


def _id_kind(ids: pd.Series) -> str:
    return "integer" if pd.api.types.is_integer_dtype(ids.dtype) else "string"


def merge_sources(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The standard tables of several sources as one, with a ``source`` column after ``image_path``.

    Ids must have one type across sources (an error names each source's) and be unique across
    sources (an error names the id, both sources and both images, and how many ids clash)."""
    kinds = {name: _id_kind(t["id"]) for name, t in tables.items()}
    if len(set(kinds.values())) > 1:
        listed = ", ".join(f"source {n!r} has {k} ids (e.g. {t['id'].tolist()[0]!r})"
                           for (n, k), t in zip(kinds.items(), tables.values()))
        raise InputError(f"sources: mixed id types: {listed}; one dataset keeps one id type (set the table "
                         "sources' id_type so that they agree)")
    seen: dict = {}
    for name, t in tables.items():
        for i, path in zip(t["id"].tolist(), t["image_path"].tolist()):
            if i in seen:
                first, first_path = seen[i]
                n_clash = _count_clashes(tables)
                raise InputError(f"sources {first!r} and {name!r} both have the id {i!r} ({first_path} and "
                                 f"{path}); ids must be unique across sources ({n_clash} shared id(s) in all): "
                                 "rename them in one source")
            seen[i] = (name, path)
    from .table import catalogue_column

    parts = []
    for name, t in tables.items():
        t = t.rename(columns={SOURCE_COLUMN: catalogue_column(SOURCE_COLUMN)}) if SOURCE_COLUMN in t.columns else t
        t = t.copy()
        t.insert(2, SOURCE_COLUMN, name)
        parts.append(t)
    out = pd.concat(parts, ignore_index=True, sort=False)
    out["id"] = out["id"].astype("int64" if next(iter(kinds.values())) == "integer" else "string")
    return out


def _count_clashes(tables: dict[str, pd.DataFrame]) -> int:
    ids = np.concatenate([t["id"].astype(object).to_numpy() for t in tables.values()])
    return int(pd.Series(ids).duplicated().sum())


def source_inputs(spec: dict, data_dir: str | Path) -> list[str]:
    """The files a source's table is read from, so that changing one reruns the source rule: the
    catalogue, or for the folder layout the folder and its class folders (their times change
    when an image is added or removed)."""
    data_dir = Path(data_dir)
    kind = spec["source"]
    if kind == "kaggle":
        from .kaggle import find_catalogue

        return [str(find_catalogue(data_dir))]
    if kind == "gz2":
        from .gz2 import find_catalogue
        from .gz2_remote import CATALOGUES, is_release

        if is_release(data_dir, spec["options"].get("catalogue")):  # what read_source reads then
            return [str(data_dir / name) for name in CATALOGUES.values() if (data_dir / name).is_file()]
        return [str(find_catalogue(data_dir, spec["options"].get("catalogue") or None))]
    if kind == "table":
        from .table import TableSettings, catalogue_path

        settings = TableSettings.from_config(spec["options"])
        path = catalogue_path(data_dir, settings)
        if settings.layout == "folder":
            if not path.is_dir():
                raise InputError(f"{path}: image folder not found (the folder layout is <data_dir>/<class>/<image>)")
            return [str(path), *sorted(str(p) for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))]
        if not path.is_file():
            raise InputError(f"{path}: table catalogue not found (config table.catalogue)")
        return [str(path)]
    return []
