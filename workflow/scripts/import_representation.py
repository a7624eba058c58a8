"""Use a representation trained elsewhere (config represent.model): checked, copied in place of
train_representation's model, with its training curve."""
import shutil
from pathlib import Path

from gzmorph.config_check import representation_size_error
from gzmorph.io import InputError, atomic_path, load_bundle
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.represent import MODEL_FORMAT
    from gzmorph.train import write_table

    src = snakemake.input.model
    bundle = load_bundle(src, MODEL_FORMAT, "representation model file (config represent.model)")
    if int(bundle["image_size"]) != int(params["image_size"]):  # the DAG-build check, if the file changed since
        raise InputError(representation_size_error(src, int(bundle["image_size"]), int(params["image_size"])))
    with atomic_path(snakemake.output.model) as tmp:
        shutil.copyfile(src, tmp)
    write_table(Path(snakemake.output.training), list(bundle.get("history") or []))
    log.info("representation %s (%s, %d px, trained on %s galaxies elsewhere) used as it is", src,
             bundle["model_config"]["name"], bundle["image_size"], bundle.get("n_galaxies", "?"))
