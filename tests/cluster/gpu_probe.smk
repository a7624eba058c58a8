# Added to the test copy of the workflow by tests/test_cluster.py: two instances of a GPU rule
# (like train_expert's one job per expert) that record what GPU setup a Slurm job gives them.
rule gpu_probe:
    output:
        "results/gpu_probe/{i}.txt",
    log:
        "results/gpu_probe/{i}.log",
    threads: 1
    resources:
        gpu=1,
        runtime=5,
        mem_mb=500,
    script:
        "gpu_probe.py"


rule gpu_probes:
    input:
        expand("results/gpu_probe/{i}.txt", i=(1, 2)),
