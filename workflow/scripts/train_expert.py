"""Train one expert ConvNet ({expert}); save its parameters after every epoch (resumable)."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.experts import ExpertConfig, load_data, train_expert

    data = load_data(snakemake.input.catalogue, snakemake.input.images, **params["data"])
    cfg = ExpertConfig(**params["expert"], **params["model"], augment=params["augment"],
                       cutout=params["cutout"], seed=params["seed"], device=params["device"])
    out = train_expert(data, snakemake.output.expert, cfg, index=params["index"], work_dir=params["work_dir"],
                       history_path=snakemake.output.history, progress=True)
    last = out["history"][-1]
    log.info("expert %d: %d epochs, train accuracy %.4f, test accuracy %.4f", params["index"],
             len(out["history"]), last["train_accuracy"], last["test_accuracy"])
