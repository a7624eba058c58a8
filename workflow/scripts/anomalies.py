"""Personalised anomaly detection: GP + expected improvement vs isolation-forest baselines."""
import pandas as pd

from gzmorph.io import atomic_path, write_json
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.anomalies import AnomalySettings, anomaly_experiment
    from gzmorph.represent import read_embeddings

    ids, vec = read_embeddings(snakemake.input.embeddings)
    source = pd.read_parquet(snakemake.input.source, columns=["id", "Class6.1"]).set_index("id")
    odd = source["Class6.1"].reindex(ids).to_numpy()
    seed = params.pop("seed")
    metrics, curves, first = anomaly_experiment(vec, odd, AnomalySettings(**params), seed)
    log.info("%d anomalies (odd > %s); average precision %s", metrics["n_anomalies"], metrics["threshold"],
             ", ".join(f"{k} {v['average_precision']['mean']:.3f}" for k, v in metrics["methods"].items()))
    write_json(snakemake.output.metrics, metrics)
    with atomic_path(snakemake.output.curves) as tmp:
        curves.to_csv(tmp, sep="\t", index=False)
    with atomic_path(snakemake.output.ranking) as tmp:
        pd.DataFrame({"id": ids, "odd_fraction": odd, **{f"score_{k}": v for k, v in first.items()}}
                     ).to_parquet(tmp, index=False)
