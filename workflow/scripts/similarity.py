"""Similarity search: PCA -> ball-tree nearest neighbours; precision@k against curated labels."""
import pandas as pd

from gzmorph.io import atomic_path, write_json
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.curate import read_catalogue
    from gzmorph.represent import read_embeddings
    from gzmorph.similarity import SimilaritySettings, similarity_gallery, similarity_search

    ids, vec = read_embeddings(snakemake.input.embeddings)
    curated, classes = read_catalogue(snakemake.input.curated)
    source = pd.read_parquet(snakemake.input.source)
    seed = params.pop("seed")
    table, metrics = similarity_search(ids, vec, curated, source, SimilaritySettings(**params), seed)
    log.info("precision@%d %.3f (base rate %.3f) over %d labelled galaxies", metrics["k"],
             metrics["precision_at_k"], metrics["base_rate"], metrics["n_labelled"])
    with atomic_path(snakemake.output.neighbours) as tmp:
        table.to_parquet(tmp, index=False)
    write_json(snakemake.output.metrics, metrics)
    similarity_gallery(table, snakemake.input.images, snakemake.output.gallery)
