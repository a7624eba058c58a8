"""What the ``gzmorph`` console commands do (the parser is :mod:`gzmorph.cli`).

Each command streams the user's images (:func:`gzmorph.imagestream.image_batches`: parallel
decoding, bounded memory, the curation stage's preprocessing), applies a model a batch at a
time and writes its Parquet output a batch at a time (:func:`gzmorph.io.parquet_stream`), so
that memory holds a few batches whatever the number of images.  Ids come from the file names.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .imageset import recorded_fits
from .imagestream import find_images, image_batches, image_ids
from .io import InputError, atomic_path, parquet_stream

log = logging.getLogger(__name__)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, mininterval=2, disable=None)


@contextlib.contextmanager
def _named(output):
    """Report an OSError (a full disk, a folder that cannot be written) under the output's own
    name, not its temporary file's."""
    try:
        yield
    except InputError:
        raise
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(output)) from None


def _id_column(ids: list):
    return pd.array(ids, dtype="int64") if ids and isinstance(ids[0], int) else pd.array(ids, dtype="string")


def _crop(args, bundle: dict) -> float:
    if args.crop_fraction is not None:
        return args.crop_fraction
    from .preprocess import DEFAULT_CROP_FRACTION

    return float(bundle.get("preprocess", {}).get("crop_fraction", DEFAULT_CROP_FRACTION))


def stream_apply(paths, image_size: int, crop: float, args, fn, desc: str, fits=None):
    """Yield ``(DataFrame of id + path, fn(images))`` per batch of ``paths``; FITS files are read with
    ``fits``, the options the model's images were made with (its file's ``preprocess``)."""
    ids = image_ids(paths)
    with _progress(len(paths), desc) as bar:
        for pos, images in image_batches(paths, image_size, crop, args.batch_size, args.workers,
                                         max_bad_fraction=args.max_bad_fraction, fits=fits):
            frame = pd.DataFrame({"id": _id_column([ids[i] for i in pos]),
                                  "path": [str(Path(paths[i]).resolve()) for i in pos]})
            yield frame, fn(images)
            bar.update(len(pos))


def classify_command(args) -> int:
    """``gzmorph classify MODEL IMAGES... -o predictions.parquet``."""
    from .classify import load_model, predict_images

    check_device(args.device)
    clf = load_model(args.model, device=args.device)
    paths = find_images(args.images)
    counts: dict[str, int] = {}
    with _named(args.output), parquet_stream(args.output, metadata={"model": str(args.model)}) as write:
        for frame, pred in stream_apply(paths, clf.image_size, _crop(args, clf.bundle), args,
                                        lambda x: predict_images(clf, x, None, args.batch_size), "classify",
                                        fits=recorded_fits(clf.bundle)):
            pred = pred.drop(columns="id")
            out = pd.concat([frame, pred], axis=1)
            for name, n in out["pred_name"].value_counts().items():
                counts[name] = counts.get(name, 0) + int(n)
            write(out)
    log.info("%d images -> %s: %s", sum(counts.values()), args.output, counts)
    return 0


def predict_command(args) -> int:
    """``gzmorph predict MODEL IMAGES... -o votes.parquet [--kaggle-csv FILE]``: the expected vote
    fractions of a representation model, as Kaggle cumulative columns (``Class1.1`` ...) and GZ2
    conditional ones (``<answer>_fraction``)."""
    from .represent import load_representation
    from .tree import GZ2_TREE

    check_device(args.device)
    if args.kaggle_csv and Path(args.kaggle_csv).resolve() == Path(args.output).resolve():
        raise InputError(f"--kaggle-csv {args.kaggle_csv}: the same file as -o; give the CSV its own name")
    rep = load_representation(args.model, device=args.device)
    cols, answers = GZ2_TREE.kaggle_columns, GZ2_TREE.answers
    paths = find_images(args.images)

    def votes(images):
        cond = pd.DataFrame(rep.predict(images, args.batch_size), columns=cols)
        cum = GZ2_TREE.to_cumulative(cond).astype(np.float32)
        cum[[f"{a.gz2}_fraction" for a in answers]] = cond[[a.kaggle for a in answers]].to_numpy(np.float32)
        return cum

    with _named(args.kaggle_csv or args.output), contextlib.ExitStack() as stack:
        csv = stack.enter_context(atomic_path(args.kaggle_csv)) if args.kaggle_csv else None
        with parquet_stream(args.output, metadata={"model": str(args.model)}) as write:
            n = 0
            for i, (frame, v) in enumerate(stream_apply(paths, rep.image_size, _crop(args, rep.bundle), args,
                                                        votes, "predict", fits=recorded_fits(rep.bundle))):
                write(pd.concat([frame, v], axis=1))
                n += len(frame)
                if csv:  # the challenge's submission format: GalaxyID + the 37 cumulative fractions
                    sub = pd.concat([frame["id"].rename("GalaxyID"), v[cols]], axis=1)
                    sub.to_csv(csv, mode="a", header=i == 0, index=False, float_format="%.6f")
    log.info("%d images -> %s%s", n, args.output, f", {args.kaggle_csv}" if args.kaggle_csv else "")
    return 0


def embed_command(args) -> int:
    """``gzmorph embed MODEL IMAGES... -o embeddings.parquet``: ``id``, ``path`` and ``embedding``
    (a fixed-size list of float32) per image."""
    import pyarrow as pa

    from .represent import embedding_table, load_representation

    check_device(args.device)
    rep = load_representation(args.model, device=args.device)
    paths = find_images(args.images)
    with _named(args.output), parquet_stream(args.output, metadata={"model": str(args.model),
                                                                    "embedding_dim": rep.dim}) as write:
        n = 0
        for frame, vec in stream_apply(paths, rep.image_size, _crop(args, rep.bundle), args,
                                       lambda x: rep.embed(x, args.batch_size), "embed",
                                       fits=recorded_fits(rep.bundle)):
            table = embedding_table(np.asarray(frame["id"]), vec)
            write(table.add_column(1, "path", pa.array(frame["path"], pa.string())))
            n += len(frame)
    log.info("%d images -> %s (%d-d)", n, args.output, rep.dim)
    return 0


def finetune_command(args) -> int:
    """``gzmorph finetune ENCODER LABELS.csv -o model.pt``: a classifier model file for ``gzmorph classify``."""
    from .finetune_cli import finetune_from_csv

    check_device(args.device)
    log.info("%s", finetune_from_csv(args))
    return 0


def export_command(args) -> int:
    """``gzmorph export-encoder MODEL -o FOLDER``."""
    from .pretrained import export_encoder

    with _named(args.output):
        folder = export_encoder(args.model, args.output)
    log.info("%s -> %s (config.json + model.safetensors)", args.model, folder)
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
    if device.type not in ("cpu", "cuda"):  # mps, meta, xpu ...: not a device these commands run on
        raise InputError(f"--device {name}: the commands run on cpu or cuda (auto picks one)")
