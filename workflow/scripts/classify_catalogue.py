"""Apply a trained classifier to every galaxy of another catalogue (config classify.apply_to), its
table read by apply_source_table."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.apply import classify_table

    done = classify_table(snakemake.input.model, snakemake.input.catalogue, snakemake.output[0],
                          crop_fraction=params["crop_fraction"], workers=snakemake.threads,
                          max_bad_image_fraction=params["max_bad_image_fraction"],
                          max_pixels=params["max_image_pixels"], device=params["device"],
                          where=params["data_dir"])
    log.info("%d galaxies classified: %s", done["galaxies"], done["predicted"])
