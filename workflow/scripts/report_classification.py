"""Report section of the classification stage: accuracy table, confusion matrices, mistakes, curves
(and each of them as a file, for Snakemake's --report)."""
from gzmorph.io import read_json
from gzmorph.report.classify import report_section
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    models, names = params["models"], params["applied"]
    # expand() order: model-major, then catalogue
    applied = {(n, m): p for (m, n), p in zip([(m, n) for m in models for n in names], snakemake.input.applied)}
    report_section({m: read_json(p) for m, p in zip(models, snakemake.input.metrics)},
                   dict(zip(models, snakemake.input.training)),
                   dict(zip(models, snakemake.input.predictions)),
                   snakemake.input.images, snakemake.output.fragment, n_mistakes=params["n_mistakes"],
                   figures_dir=snakemake.output.figures, tables_dir=snakemake.output.tables,
                   applied=applied, applied_tables=dict(zip(names, snakemake.input.applied_tables)),
                   hiwl_skipped=params["hiwl_skipped"])
