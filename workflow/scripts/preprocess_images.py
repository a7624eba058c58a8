"""Decode, crop and resize the selected galaxies' images into the image store, a chunk at a time."""
import numpy as np
import pandas as pd

from gzmorph.imageset import ImageWriter
from gzmorph.io import write_json
from gzmorph.preprocess import apply_bad_image_policy, preprocess_stream
from gzmorph.smk import rule_context


def plain_id(value):
    """An id as JSON keeps it: an integer, or a string (its type as the catalogue has it)."""
    return value.item() if isinstance(value, np.generic) else value


with rule_context(snakemake) as (params, log):
    fits_by_source = params["fits"]  # name -> FITS options (gzmorph.fits); several sources: per row
    several = len(fits_by_source) > 1
    sel = pd.read_parquet(snakemake.input.selection, columns=["id", "image_path", *(["source"] if several else [])])
    ids = sel["id"].to_numpy()
    fits = [fits_by_source[s] for s in sel["source"]] if several else next(iter(fits_by_source.values()))
    size, bad = params["image_size"], []
    # written as decoded: memory holds a few chunks, not the catalogue; the store appears only complete
    # how the images were made, which model files keep for the console commands: the crop, and the
    # FITS options where every source has the same (several that differ: none recorded)
    record = {"crop_fraction": params["crop_fraction"]}
    if all(f == next(iter(fits_by_source.values())) for f in fits_by_source.values()):
        record["fits"] = next(iter(fits_by_source.values()))
    with ImageWriter(snakemake.output.images, (size, size, 3), record) as out:
        for start, block, block_bad in preprocess_stream(sel["image_path"], size, params["crop_fraction"],
                                                         workers=snakemake.threads,
                                                         max_pixels=params["max_image_pixels"], fits=fits):
            keep = np.ones(len(block), bool)
            keep[[i - start for i, _ in block_bad]] = False
            out.add(ids[start:start + len(block)][keep], block[keep])
            bad += block_bad
        apply_bad_image_policy(bad, len(sel), params["max_bad_fraction"])
    for _, msg in bad:
        log.warning("skipped: %s", msg)
    write_json(snakemake.output.qc, {
        "n_images": len(sel), "n_corrupt_images": len(bad),
        "corrupt_ids": [plain_id(sel["id"].iloc[i]) for i, _ in bad],
        "corrupt_messages": [msg for _, msg in bad],
        "max_bad_image_fraction": params["max_bad_fraction"],
        "max_image_pixels": params["max_image_pixels"],
        "corrupt_policy": (f"Missing or undecodable images (or larger than "
                           f"{params['max_image_pixels']:,} pixels) are skipped (left out of the curated "
                           f"catalogue and image table) while they are at most "
                           f"{params['max_bad_fraction']:.1%} of the selected galaxies; above "
                           f"that the run stops with an error naming them."),
        "image_size": params["image_size"], "crop_fraction": params["crop_fraction"],
    })
