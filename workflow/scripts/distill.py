"""Distil {ipc} synthetic galaxies per class with {method} (mtt | stm) from the expert trajectories;
resumes after a kill from its work folder (checkpoints every five minutes, or
$GZMORPH_DISTILL_CHECKPOINT_SECONDS)."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.distill import DistillConfig, distill, write_outputs
    from gzmorph.distill_checkpoint import checkpoint_interval
    from gzmorph.experts import load_data
    from gzmorph.train import discard_checkpoints

    data = load_data(snakemake.input.catalogue, snakemake.input.images, **params["data"])
    # the method's block (distill.mtt / distill.stm with its per-IPC overrides; from_dict sorts the STM
    # schedule's keys out by STMConfig's fields) and the run's keys
    cfg = DistillConfig.from_dict({**params["options"], "method": params["method"], "ipc": params["ipc"],
                                   "memory": params["memory"],
                                   "memory_budget_mb": params["memory_budget_mb"], "leaf": params["leaf"],
                                   "amp": params["amp"], "channels_last": params["channels_last"],
                                   "seed": params["seed"], "device": params["device"]})
    model_config = {"name": "convnet_d3", "num_classes": len(data.classes), "image_size": data.image_size,
                    **params["model"]}
    result = distill(data, list(snakemake.input.experts), cfg, model_config, augment=params["augment"],
                     cutout=params["cutout"], work_dir=params["work_dir"], checkpoint_every=checkpoint_interval())
    write_outputs(result, data, snakemake.output.synthetic, snakemake.output.grid, snakemake.output.history,
                  snakemake.output.stages)
    discard_checkpoints(params["work_dir"])  # the outputs are written: only an unfinished run is ever resumed
    log.info("%s ipc %d: %d iterations in %.1f s, alpha %s, %d events", params["method"], params["ipc"],
             result["iterations"], result["seconds"], result["alpha"].tolist(), len(result["events"]))
