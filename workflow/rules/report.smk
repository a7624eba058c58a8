# Stage 6: the HTML report. Every stage writes a section fragment; `report` assembles them.

REPORT_SECTIONS.append(res("report/sections/curation.html"))


rule report_curation:
    input:
        catalogue=res("curated/catalogue.parquet"),
        images=res("curated/images.parquet"),
        stats=res("curated/stats.json"),
        code=code_of("report_curation"),
    output:
        res("report/sections/curation.html"),
    log:
        log_path("report_curation"),
    benchmark:
        bench_path("report_curation")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        examples=config["report"]["examples_per_class"],
        seed=config["seed"],
    script:
        "../scripts/report_curation.py"


rule report:
    input:
        fragments=report_fragments,
        code=code_of("report"),
    output:
        report(
            res("report/index.html"),
            caption="../report/index.rst",
            category="Report",
        ),
    log:
        log_path("report"),
    benchmark:
        bench_path("report")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        title=config["report"]["title"],
        dataset=DATASET,
        config=config,
    script:
        "../scripts/report.py"
