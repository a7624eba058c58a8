# Stage 4: expert trajectories and dataset distillation (MTT / STM), gzmorph.experts + gzmorph.distill.
#
# Both rules resume after a kill (a Slurm time-out, a pre-emption) from a work folder that is
# deliberately not a declared output (Snakemake deletes outputs before it reruns a job):
# train_expert from results/<dataset>/experts/<expert>.work/ (fit's last.pt + the trajectory saved
# after every epoch), distill from results/<dataset>/distill/<method>/ipc<ipc>.work/ (checkpoint.pt,
# written every five minutes: the images, α, optimiser and STM schedule states, the random generator
# and the history, so that the resumed run ends as the uninterrupted one; gzmorph.distill_checkpoint).
# A checkpoint of other settings, data, experts or code is set aside automatically (one warning in
# the log), and a finished job removes its folder.
#
# Settings: the defaults are gzmorph.distill_settings.DistillSettings (the "default" preset);
# distill.preset picks a preset (gzmorph.distill_settings.DISTILL_PRESETS: "laptop" for real data on a CPU,
# "paper" for Guan et al. 2023 on a GPU, each stating what it changes), and every other key under
# distill: overrides it.

from gzmorph.distill_settings import distill_method_options, distill_settings

DISTILL = distill_settings(config["distill"])  # checked by gzmorph.config_check (common.smk)
EXPERTS = [f"expert_{i:03d}" for i in range(int(DISTILL["n_experts"]))]
DISTILL_METHODS = list(DISTILL["methods"])
DISTILL_DATA = {k: DISTILL[k] for k in ("image_size", "zca")}
DISTILL_MODEL = {k: DISTILL[k] for k in ("width", "depth", "norm")}

if STAGE_PLAN["distill"]["runs"]:
    TARGETS.extend(
        expand(res("distill/{method}/ipc{ipc}/eval.json"), method=DISTILL_METHODS, ipc=DISTILL["ipc"])
    )
    REPORT_SECTIONS.append(res("report/sections/distillation.html"))


wildcard_constraints:
    expert=r"expert_\d+",
    method="mtt|stm",
    ipc=r"[1-9]\d*",  # as the config's ipc: no 0, no ipc01 beside ipc1
    baseline="random|mean",


rule train_expert:
    input:
        catalogue=res("curated/catalogue.parquet"),
        images=res("curated/images.parquet"),
        code=code_of("train_expert"),
    output:
        expert=res("experts/{expert}.pt"),
        history=res("experts/{expert}.tsv"),
    log:
        log_path("train_expert_{expert}"),
    benchmark:
        bench_path("train_expert_{expert}")
    conda:
        ENV
    threads: DISTILL["threads"]
    resources:
        gpu=job_gpus(DISTILL["device"]),
        mem_mb=DISTILL["gpu_mem_mb"],
        runtime=DISTILL["runtime"],
    params:
        **named(
            data=DISTILL_DATA,
            model=DISTILL_MODEL,
            expert=DISTILL["expert"],
            augment=DISTILL["augment"],
            cutout=DISTILL["cutout"],
            device=DISTILL["device"],
            seed=config["seed"],
        ),
        index=lambda wc: int(wc.expert.split("_")[1]),
        work_dir=work_beside_output,
    script:
        "../scripts/train_expert.py"


rule distill:
    input:
        experts=expand(res("experts/{expert}.pt"), expert=EXPERTS),
        catalogue=res("curated/catalogue.parquet"),
        images=res("curated/images.parquet"),
        code=code_of("distill"),
    output:
        synthetic=res("distill/{method}/ipc{ipc}/synthetic.pt"),
        grid=res("distill/{method}/ipc{ipc}/prototypes.png"),
        history=res("distill/{method}/ipc{ipc}/history.tsv"),
        stages=res("distill/{method}/ipc{ipc}/stages.tsv"),
    log:
        log_path("distill_{method}_ipc{ipc}"),
    benchmark:
        bench_path("distill_{method}_ipc{ipc}")
    conda:
        ENV
    threads: DISTILL["threads"]
    resources:
        gpu=job_gpus(DISTILL["device"]),
        mem_mb=DISTILL["gpu_mem_mb"],
        runtime=DISTILL["runtime"],
    params:
        **named(
            data=DISTILL_DATA,
            model=DISTILL_MODEL,
            augment=DISTILL["augment"],
            cutout=DISTILL["cutout"],
            memory=DISTILL["memory"],
            memory_budget_mb=DISTILL["memory_budget_mb"],
            leaf=DISTILL["leaf"],
            amp=DISTILL["amp"],
            channels_last=DISTILL["channels_last"],
            keep_freed_memory=DISTILL["keep_freed_memory"],
            device=DISTILL["device"],
            seed=config["seed"],
        ),
        method=lambda wc: wc.method,
        ipc=lambda wc: int(wc.ipc),
        options=lambda wc: distill_method_options(DISTILL, wc.method, wc.ipc),
        work_dir=lambda wc: res(f"distill/{wc.method}/ipc{wc.ipc}.work"),
    script:
        "../scripts/distill.py"


rule evaluate_baseline:
    input:
        catalogue=res("curated/catalogue.parquet"),
        images=res("curated/images.parquet"),
        code=code_of("evaluate_distilled"),
    output:
        res("distill/baselines/{baseline}_ipc{ipc}.json"),
    log:
        log_path("evaluate_baseline_{baseline}_ipc{ipc}"),
    benchmark:
        bench_path("evaluate_baseline_{baseline}_ipc{ipc}")
    conda:
        ENV
    threads: DISTILL["threads"]
    resources:
        gpu=job_gpus(DISTILL["device"]),
        mem_mb=DISTILL["gpu_mem_mb"],
        runtime=DISTILL["runtime"],
    params:
        **named(
            data=DISTILL_DATA,
            model=DISTILL_MODEL,
            eval=DISTILL["eval"],
            augment=DISTILL["augment"],
            cutout=DISTILL["cutout"],
            device=DISTILL["device"],
            seed=config["seed"],
        ),
        kind=lambda wc: wc.baseline,
        ipc=lambda wc: int(wc.ipc),
        work_dir=work_beside_output,
    script:
        "../scripts/evaluate_distilled.py"


use rule evaluate_baseline as evaluate_full with:
    output:
        res("distill/baselines/full.json"),
    log:
        log_path("evaluate_full"),
    benchmark:
        bench_path("evaluate_full")
    params:  # the wildcard lambdas' replacements; the settings (named) and work folder are evaluate_baseline's
        kind="full",
        ipc=0,


rule evaluate_distilled:
    input:
        synthetic=res("distill/{method}/ipc{ipc}/synthetic.pt"),
        random=res("distill/baselines/random_ipc{ipc}.json"),
        mean=res("distill/baselines/mean_ipc{ipc}.json"),
        full=res("distill/baselines/full.json"),
        experts=expand(res("experts/{expert}.tsv"), expert=EXPERTS),
        catalogue=res("curated/catalogue.parquet"),
        images=res("curated/images.parquet"),
        code=code_of("evaluate_distilled"),
    output:
        res("distill/{method}/ipc{ipc}/eval.json"),
    log:
        log_path("evaluate_distilled_{method}_ipc{ipc}"),
    benchmark:
        bench_path("evaluate_distilled_{method}_ipc{ipc}")
    conda:
        ENV
    threads: DISTILL["threads"]
    resources:
        gpu=job_gpus(DISTILL["device"]),
        mem_mb=DISTILL["gpu_mem_mb"],
        runtime=DISTILL["runtime"],
    params:
        **named(
            kind="distilled",
            data=DISTILL_DATA,
            eval=DISTILL["eval"],
            augment=DISTILL["augment"],
            cutout=DISTILL["cutout"],
            device=DISTILL["device"],
            seed=config["seed"],
        ),
        work_dir=work_beside_output,
    script:
        "../scripts/evaluate_distilled.py"


rule report_distill:
    input:
        evals=expand(res("distill/{method}/ipc{ipc}/eval.json"), method=DISTILL_METHODS, ipc=DISTILL["ipc"]),
        synthetic=expand(
            res("distill/{method}/ipc{ipc}/synthetic.pt"), method=DISTILL_METHODS, ipc=DISTILL["ipc"]
        ),
        experts=expand(res("experts/{expert}.tsv"), expert=EXPERTS),
        code=code_of("report_distill"),
    output:
        fragment=res("report/sections/distillation.html"),
        figures=report_figures("distillation", "Distillation", "../report/distillation.rst"),
        tables=report_tables("distillation", "Distillation", "../report/distillation.rst"),
    log:
        log_path("report_distill"),
    benchmark:
        bench_path("report_distill")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/report_distill.py"
