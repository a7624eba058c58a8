"""Train the Zoobot-style representation (Dirichlet-multinomial loss over the decision tree)
on every galaxy of the source: in this process, or as represent.processes data-parallel
processes (gzmorph.distributed: torchrun here, srun in Slurm)."""
from pathlib import Path

from gzmorph.smk import rule_context, rule_gpus

with rule_context(snakemake) as (params, log):
    from gzmorph.distributed import launch
    from gzmorph.represent import train_representation

    summary = launch(
        train_representation,
        dict(images=str(snakemake.input.images), catalogue=str(snakemake.input.source),
             out=str(snakemake.output.model), checkpoint_dir=params["checkpoint_dir"],
             metrics_path=str(snakemake.output.training), progress=True, **params["options"]),
        **params.get("launch", {}), gpus=rule_gpus(snakemake), spool=Path(snakemake.output.model).parent)
    last = summary["history"][-1] if summary["history"] else {}
    log.info("trained on %d galaxies (votes from %s): %d epochs, last val loss %s",
             summary["n_galaxies"], summary["count_source"], len(summary["history"]), last.get("val_loss"))
