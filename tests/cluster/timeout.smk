# A two-rule workflow for the scheduler-kill test of tests/test_cluster.py: `slow` sleeps past
# its 1-minute Slurm time limit (config sleep=...); a rerun with a short sleep runs only `slow`.
rule all:
    input:
        "slow.txt",


rule first:
    output:
        "first.txt",
    resources:
        runtime=5,
    shell:
        "echo done > {output}"


rule slow:
    input:
        "first.txt",
    output:
        "slow.txt",
    params:
        sleep=config.get("sleep", 180),
    resources:
        runtime=1,
    shell:
        "sleep {params.sleep} && echo done > {output}"
