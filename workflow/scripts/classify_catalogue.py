"""Apply a trained classifier to every galaxy of another catalogue (config classify.apply_to)."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.apply import classify_source

    pred = classify_source(snakemake.input.model, params["source"], params["data_dir"], snakemake.output[0],
                           crop_fraction=params["crop_fraction"], workers=snakemake.threads,
                           max_bad_image_fraction=params["max_bad_image_fraction"], device=params["device"],
                           **params["options"])
    log.info("%d galaxies classified: %s", len(pred), pred["pred_name"].value_counts().to_dict())
