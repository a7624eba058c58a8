# Stage 6: the HTML report. Every stage writes a section fragment; `report` assembles them.
# Each fragment's rule also writes the section's figures (report/figures/<section>/*.png) and
# tables (report/tables/<section>/*.tsv) as files, marked for Snakemake's own report
# (`snakemake --report report.zip`) by stage: report_figures / report_tables (common.smk).

REPORT_SECTIONS.append(res("report/sections/curation.html"))


rule report_curation:
    input:
        catalogue=res("curated/catalogue.parquet"),
        images=res("curated/images.parquet"),
        stats=res("curated/stats.json"),
        code=code_of("report_curation"),
    output:
        fragment=res("report/sections/curation.html"),
        figures=report_figures("curation", "Curation", "../report/curation.rst"),
        tables=report_tables("curation", "Curation", "../report/curation.rst"),
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
        **named(
            examples=config["report"]["examples_per_class"],
            seed=config["seed"],
        ),
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
        **named(
            title=config["report"]["title"],
            dataset=DATASET,
            config=config,
            stages=STAGE_PLAN,  # which stages ran, and why the others did not (gzmorph.stages)
        ),
    script:
        "../scripts/report.py"
