"""Report section of the distillation stage."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    import pandas as pd

    from gzmorph.distill import distill_section, load_synthetic, to_uint8
    from gzmorph.augment import BatchTransform
    from gzmorph.io import read_json
    from gzmorph.report import write_fragment

    evals = [read_json(p) for p in snakemake.input.evals]
    grids, histories, stages = {}, {}, {}
    for path in snakemake.input.synthetic:
        s = load_synthetic(path)
        key = f"{s['method']} ipc {s['ipc']}"
        t = BatchTransform(s["mean"], s["std"])
        grids[key] = (to_uint8(s["images"], t), [s["classes"][int(i)] for i in s["labels"]])
        histories[key] = s["history"]
        if s["method"] == "stm":
            stages[key] = s["stage_log"]
    experts = []
    for p in snakemake.input.experts:
        h = pd.read_csv(p, sep="\t")
        experts.append({"expert": p.rsplit("/", 1)[-1].removesuffix(".tsv"), "epochs": len(h),
                        "train_accuracy": round(float(h["train_accuracy"].iloc[-1]), 4),
                        "test_accuracy": round(float(h["test_accuracy"].iloc[-1]), 4)})
    write_fragment(distill_section(evals, grids, histories, stages, experts), snakemake.output[0])
