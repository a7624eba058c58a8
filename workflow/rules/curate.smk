# Stage 2: confidence-threshold curation into Parquet (select -> image tensors -> splits).

TARGETS.extend([res("curated/catalogue.parquet"), res("curated/images.parquet")])


rule select:
    input:
        source=res("source/catalogue.parquet"),
        code=code_of("select"),
    output:
        selection=res("curated/selection.parquet"),
        stats=res("curated/selection.json"),
    log:
        log_path("select"),
    benchmark:
        bench_path("select")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        **named(
            cut=config["cut"],
            # the cuts: definitions this run uses (editing another cut reruns nothing)
            user_cuts={n: c for n, c in config["cuts"].items() if n in USED_CUTS},
            source_cuts=SOURCE_CUTS,
            max_per_class=config["max_per_class"],
        ),
    script:
        "../scripts/select.py"


rule preprocess_images:
    input:
        selection=res("curated/selection.parquet"),
        manifest=IMAGE_MANIFEST,
        code=code_of("preprocess_images"),
    output:
        images=res("curated/images.parquet"),
        qc=res("curated/image_qc.json"),
    log:
        log_path("preprocess_images"),
    benchmark:
        bench_path("preprocess_images")
    conda:
        ENV
    threads: 4
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        **named(
            image_size=CURATED_IMAGE_SIZE,  # classify.image_size, or image_size
            crop_fraction=config["crop_fraction"],
            max_bad_fraction=config["max_bad_image_fraction"],
            max_image_pixels=config["max_image_pixels"],
            fits=SOURCE_FITS,
        ),
    script:
        "../scripts/preprocess_images.py"


rule split:
    input:
        selection=res("curated/selection.parquet"),
        select_stats=res("curated/selection.json"),
        qc=res("curated/image_qc.json"),
        code=code_of("split"),
    output:
        catalogue=res("curated/catalogue.parquet"),
        stats=res("curated/stats.json"),
    log:
        log_path("split"),
    benchmark:
        bench_path("split")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **named(
            fractions=config["split"],
            seed=config["seed"],
        ),
    script:
        "../scripts/split.py"
