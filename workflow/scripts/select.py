"""Apply the confidence cut (or each source's cut, for several sources) and the per-class cap."""
import pandas as pd

from gzmorph.curate import select, select_sources
from gzmorph.cuts import get_cut
from gzmorph.io import atomic_path, write_json
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    source = pd.read_parquet(snakemake.input.source)
    if params["source_cuts"]:  # several sources: name -> its cut
        cuts = {name: get_cut(c, params["user_cuts"]) for name, c in params["source_cuts"].items()}
        selection, stats = select_sources(source, cuts, params["max_per_class"] or None,
                                          where=snakemake.input.source, name=params["cut"])
    else:
        cut = get_cut(params["cut"], params["user_cuts"])
        selection, stats = select(source, cut, params["max_per_class"] or None, where=snakemake.input.source)
    log.info("cut %s: %d of %d galaxies; per class %s", stats["cut"], len(selection), len(source),
             selection["label_name"].value_counts().to_dict())
    with atomic_path(snakemake.output.selection) as tmp:
        selection.to_parquet(tmp, index=False)
    write_json(snakemake.output.stats, stats)
