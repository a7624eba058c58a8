"""Read the source catalogue(s) into the standard table (validated); several sources merge into one."""
from gzmorph.io import atomic_path, portable_path
from gzmorph.manifest import write_manifest
from gzmorph.smk import rule_context
from gzmorph.sources import read_source
from gzmorph.sources.plan import merge_sources

with rule_context(snakemake) as (params, log):
    tables = {}
    for name, spec in params["sources"].items():
        tables[name] = read_source(spec["source"], spec["data_dir"], **spec["options"])
        log.info("%s: %d galaxies, %d columns from %s", name, len(tables[name]), tables[name].shape[1],
                 spec["data_dir"])
    table = merge_sources(tables) if params["merge"] else next(iter(tables.values()))
    # images inside the project folder by their path relative to it: a folder moved as a whole
    # keeps its manifest and catalogues, and reruns nothing
    table["image_path"] = [portable_path(p) for p in table["image_path"]]
    with atomic_path(snakemake.output.catalogue) as tmp:
        table.to_parquet(tmp, index=False)
    write_manifest(snakemake.output.manifest, table["image_path"])
