"""Train the Zoobot-style representation (Dirichlet-multinomial loss over the decision tree)
on every galaxy of the source."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.represent import train_representation

    summary = train_representation(snakemake.input.images, snakemake.input.source, snakemake.output.model,
                                   checkpoint_dir=params["checkpoint_dir"], metrics_path=snakemake.output.training,
                                   progress=True, **params["options"])
    last = summary["history"][-1] if summary["history"] else {}
    log.info("trained on %d galaxies (votes from %s): %d epochs, last val loss %s",
             summary["n_galaxies"], summary["count_source"], len(summary["history"]), last.get("val_loss"))
