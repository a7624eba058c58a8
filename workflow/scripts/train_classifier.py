"""Train the {model} classifier (hiwl | flat) on the curated train/val splits: in this process, or
as classify.processes data-parallel processes (gzmorph.distributed: torchrun here, srun in Slurm)."""
from pathlib import Path

from gzmorph.smk import rule_context, rule_gpus

with rule_context(snakemake) as (params, log):
    from gzmorph.classify import train
    from gzmorph.distributed import launch

    summary = launch(
        train,
        dict(catalogue=str(snakemake.input.catalogue), images=str(snakemake.input.images),
             out=str(snakemake.output.model), kind=params["kind"], checkpoint_dir=params["checkpoint_dir"],
             metrics_path=str(snakemake.output.training), progress=True, **params["options"]),
        **params["launch"], gpus=rule_gpus(snakemake), spool=Path(snakemake.output.model).parent)
    for level in summary["levels"]:
        log.info("%s/%s: best %s %.4f at epoch %s of %s", params["kind"], level["name"], level["monitor"],
                 level["best_val_metric"] or float("nan"), level["best_epoch"], level["epochs_run"])
