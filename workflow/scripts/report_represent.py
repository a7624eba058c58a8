"""Report section of one part of the representation stage (embeddings | similarity | anomalies | finetune)."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.report import write_fragment
    from gzmorph.report.represent import represent_section

    write_fragment(represent_section(params["part"], dict(snakemake.input.items())), snakemake.output[0])
