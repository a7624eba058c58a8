"""Decode, crop and resize the selected galaxies' images into uint8 tensors."""
import pandas as pd

from gzmorph.imageset import write_images
from gzmorph.io import write_json
from gzmorph.preprocess import apply_bad_image_policy, preprocess_images
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    sel = pd.read_parquet(snakemake.input.selection, columns=["id", "image_path"])
    images, bad = preprocess_images(sel["image_path"], params["image_size"],
                                    params["crop_fraction"], workers=snakemake.threads,
                                    max_pixels=params["max_image_pixels"])
    apply_bad_image_policy(bad, len(sel), params["max_bad_fraction"])
    bad_idx = {i for i, _ in bad}
    keep = [i for i in range(len(sel)) if i not in bad_idx]
    for _, msg in bad:
        log.warning("skipped: %s", msg)
    write_images(snakemake.output.images, sel["id"].to_numpy()[keep], images[keep],
                 {"crop_fraction": params["crop_fraction"]})
    write_json(snakemake.output.qc, {
        "n_images": len(sel), "n_corrupt_images": len(bad),
        "corrupt_ids": [int(sel["id"].iloc[i]) for i, _ in bad],
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
