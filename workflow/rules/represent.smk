# Stage 5: Zoobot-style representation (gzmorph.represent) and its downstream uses: similarity
# search (gzmorph.similarity), personalised anomaly detection (gzmorph.anomalies) and fine-tuning
# from few labels (gzmorph.finetune).
#
# The representation is trained on EVERY galaxy of the source (source/catalogue.parquet), not only
# the curated cut.  train_representation resumes from results/<dataset>/represent/checkpoints/ after a
# kill (deliberately not a declared output, as in the classify stage); a checkpoint of other
# settings, data or code is set aside automatically, and a finished run removes it.
#
# With represent.model, a representation trained elsewhere is used as it is (import_representation
# copies it in place of train_representation), so embedding and similarity run on any images; the
# parts that need vote fractions run only where every source has them (gzmorph.stages, STAGE_PLAN).

from gzmorph.distributed import rule_resources
from gzmorph.represent_settings import representation_crop, representation_image_size, workflow_options

# the represent: block over its defaults (gzmorph.represent_settings, the one place they live)
REPRESENT, REPRESENT_TRAIN_OPTIONS = workflow_options(config["represent"], config["seed"])
# the side of its images: represent.image_size (224 with represent.preset: paper), else image_size
REPRESENT_IMAGE_SIZE = representation_image_size(config)
# their crop: represent.model's own (the images it was trained on), else crop_fraction
REPRESENT_CROP = representation_crop(config)
# represent.processes > 1: data-parallel training (gzmorph.distributed), as in classify.smk
try:
    REPRESENT_RESOURCES = rule_resources(
        REPRESENT["processes"], REPRESENT["nodes"], REPRESENT["device"], "config represent"
    )
except InputError as err:
    raise WorkflowError(str(err)) from None
REPRESENT_LAUNCH = {
    "processes": REPRESENT["processes"],
    "nodes": REPRESENT["nodes"],
    "device": REPRESENT["device"],
}
REPRESENT_PARTS = ["embeddings", "similarity", "anomalies", "finetune"]
REPRESENT_REPORT_INPUTS = {
    "embeddings": {
        "map": res("embed/map.parquet"),
        "training": res("represent/training.tsv"),
        "model": res("represent/model.pt"),
        "curated": res("curated/catalogue.parquet"),
        "source": res("source/catalogue.parquet"),
        "qc": res("represent/image_qc.json"),
    },
    "similarity": {
        "metrics": res("similarity/metrics.json"),
        "neighbours": res("similarity/neighbours.parquet"),
        "images": res("represent/images.parquet"),
    },
    "anomalies": {
        "metrics": res("anomalies/metrics.json"),
        "curves": res("anomalies/curves.tsv"),
        "ranking": res("anomalies/ranking.parquet"),
        "images": res("represent/images.parquet"),
    },
    "finetune": {"metrics": res("finetune/metrics.json"), "runs": res("finetune/runs.tsv")},
}

REPRESENT_TARGETS = {
    "embeddings": res("embed/embeddings.parquet"),
    "similarity": res("similarity/metrics.json"),
    "anomalies": res("anomalies/metrics.json"),
    "finetune": res("finetune/metrics.json"),
}
REPRESENT_RUNS = [p for p in REPRESENT_PARTS if STAGE_PLAN[p]["runs"]]
TARGETS.extend(REPRESENT_TARGETS[p] for p in REPRESENT_RUNS)
REPORT_SECTIONS.extend(res(f"report/sections/represent_{p}.html") for p in REPRESENT_RUNS)


rule represent_images:
    input:
        selection=res("source/catalogue.parquet"),  # every source galaxy (the curation script, reused)
        manifest=IMAGE_MANIFEST,
        code=code_of("preprocess_images"),
    output:
        images=res("represent/images.parquet"),
        qc=res("represent/image_qc.json"),
    log:
        log_path("represent_images"),
    benchmark:
        bench_path("represent_images")
    conda:
        ENV
    threads: 4  # decoding processes, as preprocess_images (it decodes every source galaxy)
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        **named(
            image_size=REPRESENT_IMAGE_SIZE,
            crop_fraction=REPRESENT_CROP,
            max_bad_fraction=config["max_bad_image_fraction"],
            max_image_pixels=config["max_image_pixels"],
            fits=SOURCE_FITS,
        ),
    script:
        "../scripts/preprocess_images.py"


if REPRESENT["model"]:

    rule import_representation:
        input:
            model=REPRESENT["model"],  # trained elsewhere (config represent.model)
            code=code_of("import_representation"),
        output:
            model=res("represent/model.pt"),
            training=res("represent/training.tsv"),
        log:
            log_path("import_representation"),
        benchmark:
            bench_path("import_representation")
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            **named(
                image_size=REPRESENT_IMAGE_SIZE,
            ),
            digest=data_digest([REPRESENT["model"]]),
        script:
            "../scripts/import_representation.py"

else:

    rule train_representation:
        input:
            images=res("represent/images.parquet"),
            source=res("source/catalogue.parquet"),
            encoder=encoder_files(config["represent"]["pretrained"]),  # a local pretrained encoder, if any
            code=code_of("train_representation"),
        output:
            model=res("represent/model.pt"),
            training=res("represent/training.tsv"),
        log:
            log_path("train_representation"),
        benchmark:
            bench_path("train_representation")
        conda:
            ENV
        threads: REPRESENT["threads"]
        resources:
            gpu=REPRESENT_RESOURCES["gpu"],
            tasks=REPRESENT_RESOURCES["tasks"],
            tasks_per_gpu=REPRESENT_RESOURCES["tasks_per_gpu"],
            nodes=REPRESENT_RESOURCES["nodes"],
            mpi=REPRESENT_RESOURCES["mpi"],
            mem_mb=REPRESENT["gpu_mem_mb"] * -(-REPRESENT["processes"] // REPRESENT["nodes"]),
            runtime=REPRESENT["runtime"],
        params:
            **named(
                checkpoint_dir=res("represent/checkpoints"),
                options=REPRESENT_TRAIN_OPTIONS,
                launch=REPRESENT_LAUNCH,
            ),
            digest=data_digest(encoder_files(config["represent"]["pretrained"])),
        script:
            "../scripts/train_representation.py"


rule embed:
    input:
        model=res("represent/model.pt"),
        images=res("represent/images.parquet"),
        code=code_of("embed"),
    output:
        embeddings=res("embed/embeddings.parquet"),
        map=res("embed/map.parquet"),
    log:
        log_path("embed"),
    benchmark:
        bench_path("embed")
    conda:
        ENV
    threads: REPRESENT["threads"]
    resources:
        gpu=job_gpus(REPRESENT["device"]),
        mem_mb=8000,
        runtime=60,
    params:
        **named(
            batch_size=REPRESENT["embed_batch_size"],
            device=REPRESENT["device"],
            map_method=REPRESENT["map_method"],
            seed=config["seed"],
        ),
    script:
        "../scripts/embed.py"


rule similarity:
    input:
        embeddings=res("embed/embeddings.parquet"),
        curated=res("curated/catalogue.parquet"),
        source=res("source/catalogue.parquet"),
        images=res("represent/images.parquet"),
        code=code_of("similarity"),
    output:
        neighbours=res("similarity/neighbours.parquet"),
        metrics=res("similarity/metrics.json"),
        gallery=res("similarity/gallery.png"),
    log:
        log_path("similarity"),
    benchmark:
        bench_path("similarity")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        **named(
            **REPRESENT["similarity"],
            seed=config["seed"],
        ),
    script:
        "../scripts/similarity.py"


rule anomalies:
    input:
        embeddings=res("embed/embeddings.parquet"),
        source=res("source/catalogue.parquet"),
        code=code_of("anomalies"),
    output:
        metrics=res("anomalies/metrics.json"),
        curves=res("anomalies/curves.tsv"),
        ranking=res("anomalies/ranking.parquet"),
    log:
        log_path("anomalies"),
    benchmark:
        bench_path("anomalies")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        **named(
            **REPRESENT["anomalies"],
            seed=config["seed"],
        ),
    script:
        "../scripts/anomalies.py"


rule finetune:
    input:
        model=res("represent/model.pt"),
        embeddings=res("embed/embeddings.parquet"),
        images=res("represent/images.parquet"),
        source=res("source/catalogue.parquet"),
        # the curated cut's classes, only when they are the labels (represent.finetune.label: class)
        curated=res("curated/catalogue.parquet") if REPRESENT["finetune"]["label"] == "class" else [],
        code=code_of("finetune"),
    output:
        metrics=res("finetune/metrics.json"),
        runs=res("finetune/runs.tsv"),
    log:
        log_path("finetune"),
    benchmark:
        bench_path("finetune")
    conda:
        ENV
    threads: REPRESENT["threads"]
    resources:
        gpu=job_gpus(REPRESENT["device"]),
        mem_mb=8000,
        runtime=60,
    params:
        **named(
            **REPRESENT["finetune"],
            seed=config["seed"],
            device=REPRESENT["device"],
        ),
    script:
        "../scripts/finetune.py"


rule report_represent:
    input:
        unpack(lambda wc: REPRESENT_REPORT_INPUTS[wc.part]),
        code=code_of("report_represent"),
    output:
        fragment=res("report/sections/represent_{part}.html"),
        figures=report_figures(
            "represent_{part}", "Representation", "../report/representation.rst", subcategory="{part}"
        ),
        tables=report_tables(
            "represent_{part}", "Representation", "../report/representation.rst", subcategory="{part}"
        ),
    log:
        log_path("report_represent_{part}"),
    benchmark:
        bench_path("report_represent_{part}")
    wildcard_constraints:
        part="|".join(REPRESENT_PARTS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        **named(
            model_from=REPRESENT["model"],  # a representation trained elsewhere, if any
        ),
        part=lambda wc: wc.part,
    script:
        "../scripts/report_represent.py"
