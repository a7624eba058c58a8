# Stage 1: catalogue sources -> one standard table (id, image_path, 37 Kaggle-layout columns, extras);
# several sources (config sources:) merge into it with a `source` column.


rule simulate_galaxies:
    input:
        code=code_of("simulate_galaxies"),
    output:
        directory(res("source/synthetic")),
    log:
        log_path("simulate_galaxies"),
    benchmark:
        bench_path("simulate_galaxies")
    conda:
        ENV
    threads: 4
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        **named(
            n=config["synthetic"]["n_galaxies"],
            stamp_size=config["synthetic"]["stamp_size"],
            n_volunteers=config["synthetic"]["n_volunteers"],
            seed=config["seed"],
        ),
    script:
        "../scripts/simulate_galaxies.py"


rule source_table:
    input:
        catalogue=source_catalogue_input,
        code=code_of("source_table"),
    output:
        catalogue=res("source/catalogue.parquet"),
        manifest=IMAGE_MANIFEST,
    log:
        log_path("source_table"),
    benchmark:
        bench_path("source_table")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        **named(
            # name -> {source, data_dir, options}: one source, or several merged (a `source` column)
            sources={n: {k: s[k] for k in ("source", "data_dir", "options")} for n, s in SOURCES.items()},
            merge=SEVERAL_SOURCES,
        ),
        digest=lambda wc: data_digest(source_catalogue_input(wc)),
    script:
        "../scripts/source_table.py"


rule download_gz2:
    input:
        code=code_of("download_gz2"),
    output:
        touch("resources/gz2/download.done"),
    log:
        "resources/gz2/download_gz2.log",
    benchmark:
        "resources/gz2/download_gz2.benchmark.tsv"
    # no Snakemake retries: the downloader retries each mirror with back-off itself, and a wrong
    # checksum is not transient (a retry fetched the 3 GB archive again)
    retries: 0
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=600,
    script:
        "../scripts/download_gz2.py"
