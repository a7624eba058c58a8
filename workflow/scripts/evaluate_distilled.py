"""Evaluate a synthetic set (rule evaluate_distilled) or a baseline (evaluate_baseline / evaluate_full):
fresh ConvNets trained on it by the paper's protocol, tested on the real test split; after a kill it
continues from the finished nets and the last epoch in its work folder."""
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    import pandas as pd

    from gzmorph.distill import load_synthetic
    from gzmorph.distill_eval import EvalConfig, eval_record, evaluate_baseline, evaluate_synthetic
    from gzmorph.experts import load_data
    from gzmorph.io import read_json, write_json
    from gzmorph.train import discard_checkpoints

    data = load_data(snakemake.input.catalogue, snakemake.input.images, **params["data"])
    cfg = EvalConfig(**params["eval"], device=params["device"])
    if params["kind"] == "distilled":
        syn = load_synthetic(snakemake.input.synthetic, data)
        acc = evaluate_synthetic(syn, data, cfg, params["seed"], params["augment"], params["cutout"],
                                 work_dir=params["work_dir"])
        baselines = {k: read_json(snakemake.input[k]) for k in ("random", "mean", "full")}
        tables = [pd.read_csv(p, sep="\t") for p in snakemake.input.experts]
        finals = [float(t["test_accuracy"].iloc[-1]) for t in tables]
        experts_final = {"mean": sum(finals) / len(finals), "runs": finals}
        if all("test_balanced_accuracy" in t for t in tables):  # experts written before it have no column
            bal = [float(t["test_balanced_accuracy"].iloc[-1]) for t in tables]
            experts_final.update(balanced_accuracy_mean=sum(bal) / len(bal), balanced_accuracy_runs=bal)
        rec = eval_record(syn, acc, baselines, len(data.y_test), experts_final)
        write_json(snakemake.output[0], rec)
        log.info("%s ipc %d: %.4f ± %.4f, balanced %.4f (random %.4f, mean %.4f, full %.4f)", syn["method"],
                 syn["ipc"], acc["mean"], acc["sd"], acc["balanced_accuracy_mean"], baselines["random"]["mean"],
                 baselines["mean"]["mean"], baselines["full"]["mean"])
    else:
        model_config = {"name": "convnet_d3", "num_classes": len(data.classes), "image_size": data.image_size,
                        **params["model"]}
        rec = evaluate_baseline(params["kind"], params["ipc"], data, model_config, cfg, params["seed"],
                                params["augment"], params["cutout"], work_dir=params["work_dir"])
        write_json(snakemake.output[0], rec)
        log.info("baseline %s ipc %s: %.4f ± %.4f", params["kind"], params["ipc"], rec["mean"], rec["sd"])
    discard_checkpoints(params["work_dir"])  # the output is written: only an unfinished evaluation is resumed
