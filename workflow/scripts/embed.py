"""Embed every galaxy with the trained representation; a 2-D map (UMAP if installed, else PCA),
fitted on at most gzmorph.represent.MAP_FIT_ROWS galaxies, into which the others are projected."""
import pandas as pd

from gzmorph.io import atomic_path
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.represent import MAP_FIT_ROWS, embed_table, map_table

    ids, dim = embed_table(snakemake.input.model, snakemake.input.images, snakemake.output.embeddings,
                           batch_size=params["batch_size"], device=params["device"], progress=True)
    map_ids, xy, method = map_table(snakemake.output.embeddings, params["map_method"], seed=params["seed"])
    log.info("embedded %d galaxies into %d dimensions; map by %s%s", len(ids), dim, method,
             f", fitted on {MAP_FIT_ROWS} of them" if len(ids) > MAP_FIT_ROWS else "")
    with atomic_path(snakemake.output.map) as tmp:
        pd.DataFrame({"id": map_ids, "x": xy[:, 0], "y": xy[:, 1], "method": method}).to_parquet(tmp, index=False)
