"""Train the {model} classifier (hiwl | flat) on the curated train/val splits."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.classify import train

    summary = train(snakemake.input.catalogue, snakemake.input.images, snakemake.output.model,
                    kind=params["kind"], checkpoint_dir=params["checkpoint_dir"],
                    metrics_path=snakemake.output.training, progress=True, **params["options"])
    for level in summary["levels"]:
        log.info("%s/%s: best %s %.4f at epoch %s of %s", params["kind"], level["name"], level["monitor"],
                 level["best_val_metric"] or float("nan"), level["best_epoch"], level["epochs_run"])
