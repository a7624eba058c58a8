"""The ``gzmorph`` console command.

``gzmorph classify MODEL IMAGE_OR_FOLDER... -o predictions.parquet`` applies a
trained ``model.pt`` to the user's own JPEG/PNG images, preprocessed exactly
like the curation stage (``gzmorph.preprocess.load_image``: centre crop of
``--crop-fraction`` of the side, area resize to the model's image size).

Misuse is one line and an exit code, never a traceback: 2 for a usage error (argparse, checked
before anything is loaded: the output's folder must exist, ``--batch-size`` and
``--crop-fraction`` must be in range) or a bad input file (``InputError``), 1 when the system
refuses (a disk full, a folder that cannot be written).
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

    check_device(args.device)
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
    try:
        with atomic_path(args.output) as tmp:
            pred.to_parquet(tmp, index=False)
    except OSError as err:  # name the output, not its temporary file
        raise OSError(err.errno, err.strerror or str(err), str(args.output)) from None
    counts = pred["pred_name"].value_counts().to_dict()
    print(f"{len(pred)} images -> {args.output}: {counts}", file=sys.stderr)
    return 0


def check_device(name: str) -> None:
    """``--device``: auto, or a torch device that exists here (an InputError naming it otherwise)."""
    if name in (None, "", "auto"):
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {name}: not a device (auto, cpu, cuda, cuda:1 ...)") from None
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise InputError(f"--device {name}: no such CUDA device here "
                         f"({torch.cuda.device_count()} visible); use --device cpu or auto")


def output_file(value: str) -> Path:
    """``-o``: a file name in a folder that exists (checked before the model and images are read)."""
    path = Path(value)
    if path.is_dir():
        example = path / "predictions.parquet"
        raise argparse.ArgumentTypeError(f"{value} is a folder: give a file name, e.g. {example}")
    if path.parent.exists() and not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path.parent} is not a folder")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path.parent}: no such folder for the output file")
    return path


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return n


def fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a fraction in (0, 1]")
    return x


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="gzmorph", description="Galaxy Zoo morphology tools")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="classify your own galaxy images with a trained model.pt",
                       description=__doc__.split("\n\n")[1])
    c.add_argument("model", help="trained model file (results/<dataset>/classify/<model>/model.pt)")
    c.add_argument("images", nargs="+", help="image files or folders of .jpg/.jpeg/.png")
    c.add_argument("-o", "--output", required=True, type=output_file,
                   help="predictions Parquet file to write (its folder must exist)")
    c.add_argument("--crop-fraction", type=fraction, default=None,
                   help="central fraction of the side kept before resizing (default: as in training, 0.5)")
    c.add_argument("--batch-size", type=positive_int, default=256)
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
    except OSError as err:  # the system refused: a full disk, a folder that cannot be written
        where = f"{err.filename}: " if err.filename else ""
        print(f"gzmorph {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
