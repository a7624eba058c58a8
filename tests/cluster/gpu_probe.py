"""Script of the test rule gpu_probe: what a GPU job sees inside Slurm."""
import os

from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):  # noqa: F821 (set by Snakemake)
    with open(snakemake.output[0], "w") as out:  # noqa: F821
        out.write(f"SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID')}\n"
                  f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}\n")
