"""The ``gzmorph`` console command (the commands themselves are :mod:`gzmorph.commands`).

``gzmorph classify MODEL IMAGES... -o predictions.parquet``: classes of a trained classifier.
``gzmorph predict MODEL IMAGES... -o votes.parquet [--kaggle-csv FILE]``: expected vote fractions
of a representation model.  ``gzmorph embed MODEL IMAGES... -o embeddings.parquet``: its vectors.
``gzmorph finetune ENCODER LABELS.csv -o model.pt``: a classifier from an encoder and a few labels.

Images (JPEG, PNG or FITS files, or folders of them) are streamed in batches with parallel decoding,
preprocessed exactly like the curation stage (centre crop of ``--crop-fraction`` of the side, area
resize to the model's image size), and keep the ids of their file names.

Misuse is one line and an exit code, never a traceback: 2 for a usage error (argparse, checked
before anything is loaded: the output's folder must exist, ``--batch-size`` and
``--crop-fraction`` must be in range) or a bad input file (``InputError``), 1 when the system
refuses (a disk full, a folder that cannot be written).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .io import InputError


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


def output_folder(value: str) -> Path:
    """``-o`` of a folder: new or existing, in a folder that exists."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file: give a folder")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path.parent}: no such folder for the output folder")
    return path


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return n


def non_negative_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 0")
    return n


def _number_in(value: str, inside, interval: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not inside(x):
        raise argparse.ArgumentTypeError(f"{value!r} is not a fraction in {interval}")
    return x


def fraction(value: str) -> float:
    return _number_in(value, lambda x: 0 < x <= 1, "(0, 1]")


def share(value: str) -> float:
    return _number_in(value, lambda x: 0 <= x < 1, "[0, 1)")


def _images_command(sub, name: str, helptext: str, model_help: str, out_help: str, func):
    from .imagestream import default_workers

    c = sub.add_parser(name, help=helptext, description=helptext)
    c.add_argument("model", help=model_help)
    c.add_argument("images", nargs="+", help="image files, or folders of JPEG, PNG and FITS images")
    c.add_argument("-o", "--output", required=True, type=output_file, help=out_help + " (its folder must exist)")
    c.add_argument("--crop-fraction", type=fraction, default=None,
                   help="central fraction of the side kept before resizing (default: as in training, 0.5)")
    c.add_argument("--batch-size", type=positive_int, default=256)
    c.add_argument("--workers", type=non_negative_int, default=None,
                   help=f"image decoding processes (default here: {default_workers()}; 0: none)")
    c.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    c.add_argument("--max-bad-fraction", type=share, default=0.0,
                   help="leave out unreadable images up to this fraction of them, listed in the log "
                        "(default 0: the first one stops the command)")
    c.set_defaults(func=func)
    return c


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from . import commands as C
    from .represent_settings import FinetuneSettings  # torch-free: its defaults in the help

    ap = argparse.ArgumentParser(prog="gzmorph", description="Galaxy Zoo morphology tools")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    _images_command(sub, "classify", "classify your own galaxy images with a trained model.pt",
                    "trained classifier file (results/<dataset>/classify/<model>/model.pt)",
                    "predictions Parquet file to write", C.classify_command)
    p = _images_command(sub, "predict", "predict the Galaxy Zoo vote fractions of your own images",
                        "representation model file (results/<dataset>/represent/model.pt)",
                        "vote-fraction Parquet file to write", C.predict_command)
    p.add_argument("--kaggle-csv", type=output_file, default=None,
                   help="also write the Galaxy Zoo challenge submission CSV (GalaxyID,Class1.1,...,Class11.6)")
    _images_command(sub, "embed", "embed your own images with a representation model",
                    "representation model file (results/<dataset>/represent/model.pt)",
                    "embeddings Parquet file to write", C.embed_command)
    f = sub.add_parser("finetune", help="fine-tune an encoder on your own labels into a classifier",
                       description="fine-tune an encoder on your own labels into a classifier model file "
                                   "that gzmorph classify applies")
    f.add_argument("encoder", help="a gzmorph representation or flat classifier model file; a folder written "
                                   "by gzmorph export-encoder; or a local timm encoder whose config.json names "
                                   "its architecture (a folder of config.json + model.safetensors or "
                                   "pytorch_model.bin, or a .safetensors/.pth file with config.json beside it) or "
                                   "a timm training checkpoint (its arch). Not torchvision .pth weights, which "
                                   "name no architecture (the workflow's classify.pretrained takes them for its "
                                   "resnet18/efficientnet backbones), nor 1-channel encoders")
    f.add_argument("labels", help="CSV of image paths (relative to the CSV) and labels")
    f.add_argument("-o", "--output", required=True, type=output_file, help="classifier model file to write")
    f.add_argument("--image-column", default="path", help="the CSV's image path column (default: path)")
    f.add_argument("--label-column", default="label", help="the CSV's label column (default: label)")
    f.add_argument("--mode", choices=["frozen", "full", "scratch"], default="full",
                   help="frozen: a linear head on the fixed encoder; full: every weight trained (default); "
                        "scratch: the encoder's architecture from random weights")
    f.add_argument("--test", default=None, help="a labels CSV to score the result on (accuracy, balanced accuracy, ROC AUC)")
    f.add_argument("--steps", type=positive_int, default=None,
                   help=f"optimiser steps (default: as the finetune rule: {FinetuneSettings.steps}, or "
                        f"{FinetuneSettings.head_steps} for the frozen head)")
    f.add_argument("--image-size", type=positive_int, default=None,
                   help="image size for an encoder that does not record one (default: its config, else 224)")
    f.add_argument("--crop-fraction", type=fraction, default=None)
    f.add_argument("--no-augment", action="store_true", help="train without augmentation")
    f.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"training batch (default: as the finetune rule, {FinetuneSettings.batch_size})")
    f.add_argument("--workers", type=non_negative_int, default=None)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default="auto")
    f.set_defaults(func=C.finetune_command)
    e = sub.add_parser("export-encoder", help="write a model's timm backbone as a timm/Hugging Face encoder folder",
                       description="write the timm backbone of a gzmorph model file as a folder of config.json + "
                                   "model.safetensors, which timm, gzmorph finetune and the pretrained config "
                                   "key read")
    e.add_argument("model", help="a gzmorph representation or flat classifier model file with a timm backbone")
    e.add_argument("-o", "--output", required=True, type=output_folder, help="the encoder folder to write")
    e.set_defaults(func=C.export_command)
    return ap


def check_outputs(args) -> None:
    """Refuse an output that is one of the command's inputs (``-o model.pt`` typed for the model, an
    image of a folder being read, the labels CSV), or an export folder holding other files: an
    atomic write would replace them cleanly, and silently."""
    import json

    from .io import is_temporary
    from .preprocess import image_suffix

    def same(a, b) -> bool:
        return Path(a).resolve() == Path(b).resolve()

    inputs = [getattr(args, k) for k in ("model", "encoder", "labels", "test") if getattr(args, k, None)]
    outputs = [o for o in (args.output, getattr(args, "kaggle_csv", None)) if o is not None]
    for out in outputs:
        for given in inputs + list(getattr(args, "images", None) or []):
            if same(out, given) or (Path(given).is_dir() and same(Path(out).parent, given) and image_suffix(out)):
                raise InputError(f"-o {out}: the output would replace {given}, an input of this command; "
                                 "give another file name")
    formats = {"output": ("Parquet", (".csv", ".tsv", ".txt", ".json", ".xlsx", ".fits", ".fit")),
               "kaggle_csv": ("CSV", (".parquet", ".pq"))}
    if args.command in ("classify", "predict", "embed"):
        for key, (kind, wrong) in formats.items():
            out = getattr(args, key, None)
            if out is not None and Path(out).suffix.lower() in wrong:
                hint = " (predict --kaggle-csv writes CSV)" if kind == "Parquet" else ""
                raise InputError(f"{out}: this file is written as {kind}, not {Path(out).suffix}; give it a "
                                 f"matching name{hint}")
    if args.command == "export-encoder" and Path(args.output).is_dir():
        others = sorted(p.name for p in Path(args.output).iterdir()
                        if p.name not in ("config.json", "model.safetensors") and not is_temporary(p))
        config = Path(args.output) / "config.json"
        try:
            foreign = config.is_file() and "architecture" not in json.loads(config.read_text())
        except (ValueError, TypeError, OSError):  # not JSON, or not an object
            foreign = True
        if others or foreign:
            held = ", ".join(others[:3]) or "a config.json of no encoder"
            raise InputError(f"-o {args.output}: the folder holds other files ({held}); an encoder is written "
                             "into a new folder or an encoder's")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:  # what the commands report goes to stderr, as plain lines
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        check_outputs(args)
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
