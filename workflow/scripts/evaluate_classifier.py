"""Test-split metrics and predictions of one classifier."""
from gzmorph.classify import evaluate
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    m = evaluate(snakemake.input.model, snakemake.input.catalogue, snakemake.input.images,
                 split=params["split"], predictions_out=snakemake.output.predictions,
                 metrics_out=snakemake.output.metrics, device=params["device"])
    log.info("accuracy %.4f, macro F1 %.4f on %d %s galaxies", m["accuracy"], m["macro_f1"],
             m["n_test"], params["split"])
