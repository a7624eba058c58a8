"""Assemble the section fragments into one self-contained report page."""
from gzmorph.report import assemble
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    assemble(snakemake.input.fragments, snakemake.output[0], title=params["title"],
             meta={"dataset": params["dataset"], "config": dict(params["config"])})
