"""Apply the confidence cut and the per-class cap."""
import pandas as pd

from gzmorph.cuts import get_cut
from gzmorph.curate import select
from gzmorph.io import atomic_path, write_json
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    cut = get_cut(params["cut"], params["user_cuts"])
    source = pd.read_parquet(snakemake.input.source)
    selection, stats = select(source, cut, params["max_per_class"] or None,
                              where=snakemake.input.source)
    log.info("cut %s: %d of %d galaxies; per class %s", cut.name, len(selection), len(source),
             selection["label_name"].value_counts().to_dict())
    with atomic_path(snakemake.output.selection) as tmp:
        selection.to_parquet(tmp, index=False)
    write_json(snakemake.output.stats, stats)
