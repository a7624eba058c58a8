"""Report section of the distillation stage (and each figure and table as a file, for Snakemake's --report)."""
from gzmorph.report.distill import report_section
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    report_section(snakemake.input.evals, snakemake.input.synthetic, snakemake.input.experts,
                   snakemake.output.fragment, figures_dir=snakemake.output.figures,
                   tables_dir=snakemake.output.tables)
