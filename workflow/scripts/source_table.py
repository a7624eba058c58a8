"""Read the source catalogue into the standard table (validated)."""
from gzmorph.io import atomic_path
from gzmorph.manifest import write_manifest
from gzmorph.smk import rule_context
from gzmorph.sources import read_source

with rule_context(snakemake) as (params, log):
    options = {}
    if params["source"] == "gz2":
        options = {"catalogue": params["gz2"]["catalogue"] or None,
                   "fraction_kind": params["gz2"]["fraction_kind"]}
    table = read_source(params["source"], params["data_dir"], **options)
    log.info("%d galaxies, %d columns from %s", len(table), table.shape[1], params["data_dir"])
    with atomic_path(snakemake.output.catalogue) as tmp:
        table.to_parquet(tmp, index=False)
    write_manifest(snakemake.output.manifest, table["image_path"])
