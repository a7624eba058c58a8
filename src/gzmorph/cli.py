"""The ``gzmorph`` console command.

``gzmorph classify MODEL IMAGE_OR_FOLDER... -o predictions.parquet`` applies a
trained ``model.pt`` to the user's own JPEG/PNG images, preprocessed exactly
like the curation stage (``gzmorph.preprocess.load_image``: centre crop of
``--crop-fraction`` of the side, area resize to the model's image size).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .io import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_images(items) -> list[Path]:
    """Files as given, folders expanded to their ``*.jpg``/``*.jpeg``/``*.png`` (sorted)."""
    paths = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{item}: folder has no .jpg/.jpeg/.png images")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise InputError(f"{item}: no such image file or folder")
    return paths


def image_id(path: Path):
    return int(path.stem) if path.stem.isdigit() else path.name


def classify_command(args) -> int:
    import numpy as np
    import pandas as pd

    from .classify import load_model, predict_images
    from .io import atomic_path
    from .preprocess import load_image

    clf = load_model(args.model, device=args.device)
    crop = args.crop_fraction if args.crop_fraction is not None else \
        clf.bundle.get("preprocess", {}).get("crop_fraction", 0.5)
    paths = find_images(args.images)
    images = np.stack([load_image(p, clf.image_size, crop) for p in paths])  # InputError names a bad file
    ids = [image_id(p) for p in paths]
    if len(set(map(str, ids))) != len(ids):
        dup = sorted({str(i) for i in ids if list(map(str, ids)).count(str(i)) > 1})
        raise InputError(f"two images share the id(s) {dup[:5]}: give them distinct file names")
    pred = predict_images(clf, images, np.arange(len(paths)), args.batch_size)
    numeric = all(isinstance(i, int) for i in ids)
    pred["id"] = pd.array(ids, dtype="int64") if numeric else [str(i) for i in ids]
    pred.insert(1, "path", [str(p.resolve()) for p in paths])
    with atomic_path(args.output) as tmp:
        pred.to_parquet(tmp, index=False)
    counts = pred["pred_name"].value_counts().to_dict()
    print(f"{len(pred)} images -> {args.output}: {counts}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gzmorph", description="Galaxy Zoo morphology tools")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="classify your own galaxy images with a trained model.pt",
                       description=__doc__.split("\n\n")[1])
    c.add_argument("model", help="trained model file (results/<dataset>/classify/<model>/model.pt)")
    c.add_argument("images", nargs="+", help="image files or folders of .jpg/.jpeg/.png")
    c.add_argument("-o", "--output", required=True, help="predictions Parquet file to write")
    c.add_argument("--crop-fraction", type=float, default=None,
                   help="central fraction of the side kept before resizing (default: as in training, 0.5)")
    c.add_argument("--batch-size", type=int, default=256)
    c.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    c.set_defaults(func=classify_command)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        print(f"gzmorph {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
