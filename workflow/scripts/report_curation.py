"""Report section of the curation stage: counts, confidences, example grids, truth (and each figure and
table as a file, for Snakemake's --report)."""
from gzmorph.curate import read_catalogue
from gzmorph.io import read_json
from gzmorph.report import curation_section, write_fragment
from gzmorph.report.curation import COLUMNS
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    catalogue, classes = read_catalogue(snakemake.input.catalogue, columns=COLUMNS)
    section = curation_section(catalogue, snakemake.input.images, classes,
                               read_json(snakemake.input.stats),
                               n_confident=params["examples"], n_random=params["examples"],
                               seed=params["seed"])
    write_fragment(section, snakemake.output.fragment, figures=snakemake.output.figures,
                   tables=snakemake.output.tables)
