"""Report section of the distillation stage."""
from gzmorph.report.distill import report_section
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    report_section(snakemake.input.evals, snakemake.input.synthetic, snakemake.input.experts, snakemake.output[0])
