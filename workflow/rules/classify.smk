# Stage 3: morphology classifiers — the HIWL hierarchy vs the flat baseline (gzmorph.classify).
#
# train_classifier resumes from results/<dataset>/classify/<model>/checkpoints/ after a kill:
# that folder is deliberately not a declared output (Snakemake deletes outputs before it reruns a
# job, which would throw the checkpoints away).  A checkpoint of other settings, images or code is
# set aside automatically (gzmorph.train), and a finished run removes it.

from gzmorph.distributed import rule_resources

# the classify: block over its defaults (gzmorph.classify_settings, the one place they live);
# gzmorph.config_check has already checked it (common.smk)
_CLASSIFY = ClassifySettings.from_config(config["classify"])
CLASSIFY = asdict(_CLASSIFY)
# the hierarchy needs the five hiwl5 classes; any other cut gets the flat classifier only (also
# as the {model} a target may name: a hiwl path of another cut has no rule, not a job that fails)
CLASSIFY_KINDS = [m for m in ("hiwl", "flat") if m != "hiwl" or config["cut"] == "hiwl5"]
CLASSIFY_MODELS = [m for m in CLASSIFY["models"] if m in CLASSIFY_KINDS]
# what the training script gets: the settings that determine the weights, and the device to use
CLASSIFY_TRAIN = {
    **_CLASSIFY.identity(),
    "device": CLASSIFY["device"],
    "amp": CLASSIFY["amp"],
    "seed": config["seed"],
}

# classify.processes > 1: data-parallel training (gzmorph.distributed), one process per GPU, as one
# job -- locally with torchrun, under Slurm as one sbatch of N tasks whose script starts them with srun
try:
    CLASSIFY_RESOURCES = rule_resources(
        CLASSIFY["processes"], CLASSIFY["nodes"], CLASSIFY["device"], "config classify"
    )
except InputError as err:
    raise WorkflowError(str(err)) from None
CLASSIFY_LAUNCH = {
    "processes": CLASSIFY["processes"],
    "nodes": CLASSIFY["nodes"],
    "device": CLASSIFY["device"],
}

if STAGE_PLAN["classify"]["runs"]:
    TARGETS.extend(expand(res("classify/{model}/metrics.json"), model=CLASSIFY_MODELS))
    TARGETS.extend(
        expand(
            res("classify/{model}/apply/{name}.parquet"),
            model=CLASSIFY_MODELS,
            name=list(APPLY_SOURCES),
        )
    )
    REPORT_SECTIONS.append(res("report/sections/classification.html"))


rule train_classifier:
    input:
        catalogue=res("curated/catalogue.parquet"),
        images=res("curated/images.parquet"),
        encoder=encoder_files(config["classify"]["pretrained"]),  # a local pretrained encoder, if any
        code=code_of("train_classifier"),
    output:
        model=res("classify/{model}/model.pt"),
        training=res("classify/{model}/training.tsv"),
    log:
        log_path("train_classifier_{model}"),
    benchmark:
        bench_path("train_classifier_{model}")
    wildcard_constraints:
        model="|".join(CLASSIFY_KINDS),
    conda:
        ENV
    threads: CLASSIFY["threads"]
    resources:
        gpu=CLASSIFY_RESOURCES["gpu"],
        tasks=CLASSIFY_RESOURCES["tasks"],
        tasks_per_gpu=CLASSIFY_RESOURCES["tasks_per_gpu"],
        nodes=CLASSIFY_RESOURCES["nodes"],
        mpi=CLASSIFY_RESOURCES["mpi"],
        mem_mb=CLASSIFY["gpu_mem_mb"] * -(-CLASSIFY["processes"] // CLASSIFY["nodes"]),
        runtime=CLASSIFY["runtime"],
    params:
        **named(
            options=CLASSIFY_TRAIN,
            launch=CLASSIFY_LAUNCH,
        ),
        digest=data_digest(encoder_files(config["classify"]["pretrained"])),
        kind=lambda wc: wc.model,
        checkpoint_dir=lambda wc: res(f"classify/{wc.model}/checkpoints"),
    script:
        "../scripts/train_classifier.py"


rule evaluate_classifier:
    input:
        model=res("classify/{model}/model.pt"),
        catalogue=res("curated/catalogue.parquet"),
        images=res("curated/images.parquet"),
        code=code_of("evaluate_classifier"),
    output:
        metrics=res("classify/{model}/metrics.json"),
        predictions=res("classify/{model}/predictions.parquet"),
    log:
        log_path("evaluate_classifier_{model}"),
    benchmark:
        bench_path("evaluate_classifier_{model}")
    wildcard_constraints:
        model="|".join(CLASSIFY_KINDS),
    conda:
        ENV
    threads: 2
    resources:
        gpu=job_gpus(CLASSIFY["device"]),  # inference on classify.device, as classify_catalogue
        mem_mb=4000,
        runtime=20,
    params:
        **named(
            split="test",
            device=CLASSIFY["device"],
        ),
    script:
        "../scripts/evaluate_classifier.py"


rule report_classification:
    input:
        metrics=expand(res("classify/{model}/metrics.json"), model=CLASSIFY_MODELS),
        predictions=expand(res("classify/{model}/predictions.parquet"), model=CLASSIFY_MODELS),
        training=expand(res("classify/{model}/training.tsv"), model=CLASSIFY_MODELS),
        images=res("curated/images.parquet"),
        # classify.apply_to: each model's predictions on each other catalogue, and that catalogue
        applied=expand(
            res("classify/{model}/apply/{name}.parquet"),
            model=CLASSIFY_MODELS,
            name=list(APPLY_SOURCES),
        ),
        applied_tables=expand(res("classify/apply/{name}/catalogue.parquet"), name=list(APPLY_SOURCES)),
        code=code_of("report_classification"),
    output:
        fragment=res("report/sections/classification.html"),
        figures=report_figures("classification", "Classification", "../report/classification.rst"),
        tables=report_tables("classification", "Classification", "../report/classification.rst"),
    log:
        log_path("report_classification"),
    benchmark:
        bench_path("report_classification")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        **named(
            models=CLASSIFY_MODELS,
            # why hiwl did not run, if it did not: the cut is not hiwl5, or classify.models leaves it out
            hiwl_skipped=(
                "" if "hiwl" in CLASSIFY_MODELS else "cut" if "hiwl" in CLASSIFY["models"] else "models"
            ),
            applied=list(APPLY_SOURCES),
            n_mistakes=16,
        ),
    script:
        "../scripts/report_classification.py"


# each other catalogue's image manifest, re-stat at every DAG build like the source's (IMAGE_MANIFEST)
for _name in APPLY_SOURCES:
    refresh_images(res(f"classify/apply/{_name}/images.manifest.tsv"))


rule apply_source_table:
    input:
        catalogue=apply_source_inputs,
        code=code_of("source_table"),
    output:
        catalogue=res("classify/apply/{name}/catalogue.parquet"),
        manifest=res("classify/apply/{name}/images.manifest.tsv"),
    log:
        log_path("apply_source_table_{name}"),
    benchmark:
        bench_path("apply_source_table_{name}")
    wildcard_constraints:
        name=APPLY_NAMES,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        **named(merge=False),
        digest=lambda wc: data_digest(apply_source_inputs(wc)),
        sources=lambda wc: {wc.name: APPLY_SOURCES[wc.name]},
    script:
        "../scripts/source_table.py"


rule classify_catalogue:
    input:
        model=res("classify/{model}/model.pt"),
        catalogue=res("classify/apply/{name}/catalogue.parquet"),
        manifest=res("classify/apply/{name}/images.manifest.tsv"),
        code=code_of("classify_catalogue"),
    output:
        res("classify/{model}/apply/{name}.parquet"),
    log:
        log_path("classify_catalogue_{model}_{name}"),
    benchmark:
        bench_path("classify_catalogue_{model}_{name}")
    wildcard_constraints:
        model="|".join(CLASSIFY_KINDS),
        name=APPLY_NAMES,
    conda:
        ENV
    threads: 4
    resources:
        gpu=job_gpus(CLASSIFY["device"]),
        mem_mb=8000,
        runtime=60,
    params:
        **named(
            crop_fraction=config["crop_fraction"],
            max_bad_image_fraction=config["max_bad_image_fraction"],
            max_image_pixels=config["max_image_pixels"],
            device=CLASSIFY["device"],
        ),
        data_dir=lambda wc: APPLY_SOURCES[wc.name]["data_dir"],
    script:
        "../scripts/classify_catalogue.py"
