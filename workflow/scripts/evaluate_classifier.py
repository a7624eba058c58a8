"""Test-split metrics + predictions of one classifier, or (rule report_classification) the report section."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph import classify

    if snakemake.rule == "report_classification":
        from gzmorph.io import read_json

        models = params["models"]
        classify.report_section(
            {m: read_json(p) for m, p in zip(models, snakemake.input.metrics)},
            dict(zip(models, snakemake.input.training)), dict(zip(models, snakemake.input.predictions)),
            snakemake.input.images, snakemake.output[0], n_mistakes=params["n_mistakes"])
    else:
        m = classify.evaluate(snakemake.input.model, snakemake.input.catalogue, snakemake.input.images,
                              split=params["split"], predictions_out=snakemake.output.predictions,
                              metrics_out=snakemake.output.metrics, device=params["device"])
        log.info("accuracy %.4f, macro F1 %.4f on %d %s galaxies", m["accuracy"], m["macro_f1"],
                 m["n_test"], params["split"])
