"""Render synthetic galaxies with known truth, written in the Kaggle layout."""
from gzmorph.smk import rule_context
from gzmorph.sources.synthetic import generate

with rule_context(snakemake) as (params, log):
    generate(snakemake.output[0], n=params["n"], seed=params["seed"],
             stamp_size=params["stamp_size"], n_volunteers=params["n_volunteers"],
             workers=snakemake.threads)
