"""Drop unreadable images, make the seeded stratified splits, write the curated catalogue."""
import pandas as pd

from gzmorph.curate import split, write_catalogue
from gzmorph.io import read_json, write_json
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    selection = pd.read_parquet(snakemake.input.selection)
    select_stats = read_json(snakemake.input.select_stats)
    qc = read_json(snakemake.input.qc)
    catalogue, stats = split(selection, qc["corrupt_ids"], params["fractions"], params["seed"],
                             select_stats, qc)
    for w in stats["warnings"]:
        log.warning(w)
    write_catalogue(catalogue, snakemake.output.catalogue, stats["classes"], stats["cut"])
    write_json(snakemake.output.stats, stats)
