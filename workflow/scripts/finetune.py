"""Fine-tuning from few labels (rings by default, or any label column): frozen representation +
head, fine-tuned, from scratch."""
from gzmorph.io import atomic_path, write_json
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.finetune import FinetuneSettings, run_finetune

    seed, device = params.pop("seed"), params.pop("device")
    metrics, runs = run_finetune(snakemake.input.model, snakemake.input.images, snakemake.input.embeddings,
                                 snakemake.input.source, FinetuneSettings(**params), seed, device=device,
                                 curated_path=snakemake.input.get("curated") or None)
    write_json(snakemake.output.metrics, metrics)
    with atomic_path(snakemake.output.runs) as tmp:
        runs.to_csv(tmp, sep="\t", index=False)
    for note in metrics["notes"]:
        log.info(note)
