"""Embed every galaxy with the trained representation; a 2-D map (UMAP if installed, else PCA)."""
import pandas as pd

from gzmorph.io import atomic_path
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.represent import embed_table, embedding_map

    ids, vec = embed_table(snakemake.input.model, snakemake.input.images, snakemake.output.embeddings,
                           batch_size=params["batch_size"], device=params["device"], progress=True)
    xy, method = embedding_map(vec, params["map_method"], seed=params["seed"])
    log.info("embedded %d galaxies into %d dimensions; map by %s", len(ids), vec.shape[1], method)
    with atomic_path(snakemake.output.map) as tmp:
        pd.DataFrame({"id": ids, "x": xy[:, 0], "y": xy[:, 1], "method": method}).to_parquet(tmp, index=False)
