"""Distil {ipc} synthetic galaxies per class with {method} (mtt | stm) from the expert trajectories."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.distill import DistillConfig, distill, write_outputs
    from gzmorph.experts import load_data

    data = load_data(snakemake.input.catalogue, snakemake.input.images, **params["data"])
    opts = dict(params["options"])
    stm_keys = ("check_every", "r_down", "r_up", "patience", "ft_every", "ft_factor", "lr_floor", "alpha_per_epoch")
    stm = {k: opts.pop(k) for k in stm_keys if k in opts}
    cfg = DistillConfig.from_dict({**opts, "stm": stm, "method": params["method"], "ipc": params["ipc"],
                                   "memory": params["memory"], "leaf": params["leaf"], "seed": params["seed"],
                                   "device": params["device"]})
    model_config = {"name": "convnet_d3", "num_classes": len(data.classes), "image_size": data.image_size,
                    **params["model"]}
    result = distill(data, list(snakemake.input.experts), cfg, model_config, augment=params["augment"],
                     cutout=params["cutout"], log=log)
    write_outputs(result, data, snakemake.output.synthetic, snakemake.output.grid, snakemake.output.history,
                  snakemake.output.stages, augment=params["augment"], cutout=params["cutout"])
    log.info("%s ipc %d: %d iterations in %.1f s, alpha %s, %d events", params["method"], params["ipc"],
             result["iterations"], result["seconds"], result["alpha"].tolist(), len(result["events"]))
