# gzmorph: Galaxy Zoo catalogues and images -> curated data, classifiers,
# distilled prototypes, representations and an HTML report.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/source.smk"
include: "workflow/rules/curate.smk"
include: "workflow/rules/classify.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/represent.smk"
include: "workflow/rules/distill.smk"


check_code_inputs()


rule all:
    default_target: True
    input:
        all_targets(),
