"""Report section of one part of the representation stage (embeddings | similarity | anomalies | finetune),
and each of its figures and tables as a file, for Snakemake's --report."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.report import write_fragment
    from gzmorph.report.represent import represent_section

    section = represent_section(params["part"], dict(snakemake.input.items()), params["model_from"])
    write_fragment(section, snakemake.output.fragment,
                   figures=snakemake.output.figures, tables=snakemake.output.tables)
