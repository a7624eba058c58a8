"""``gzmorph finetune ENCODER LABELS.csv -o model.pt``: a classifier from an encoder and a few labels.

The encoder is a gzmorph representation (or flat classifier) model file, or a pretrained encoder
from local files whose architecture is named (:func:`gzmorph.models.load_encoder`): a timm/Hugging
Face folder with ``config.json`` + ``model.safetensors`` (one that ``gzmorph export-encoder`` wrote
included, greyscale kept), a ``.safetensors`` or ``.pth`` file with such a ``config.json`` beside
it, or a timm training checkpoint (its ``arch``).  Torchvision weights, which name no architecture,
and 1-channel encoders are refused in one line.  The labels are
a CSV of image paths (relative to the CSV's folder) and a label column, binary or multiclass.
Modes are the arms of the ``finetune`` rule (:func:`gzmorph.finetune.train_arm`):

- ``frozen``: the encoder is fixed, a linear head learns on its standardised features;
- ``full``: the encoder with a new head, every weight trained (the encoder at a lower rate);
- ``scratch``: the encoder's architecture from random weights (the baseline).

The result is a gzmorph classifier file (safetensors + JSON header, ``kind: flat``) that
``gzmorph classify`` applies; ``--test`` scores it on labelled images it never saw, streamed a
batch at a time.  The training images are held in memory as uint8 (a label set is hundreds, not
millions, of galaxies): the one exception to the commands' flat memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .io import InputError

log = logging.getLogger(__name__)

MODES = {"frozen": "frozen", "full": "finetuned", "scratch": "scratch"}


def read_labels(path, image_column: str, label_column: str, classes: list[str] | None = None):
    """``(image paths, label codes, class names)`` of a labels CSV; paths relative to its folder.

    Every row needs an image path and a label: an empty cell is an InputError naming its line.
    With ``classes`` given (a test set), a label outside them is an error too.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"{path}: labels file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not a labels CSV") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    for col in (image_column, label_column):
        if col not in df.columns:
            raise InputError(f"{path}: no column {col!r} (columns: {', '.join(df.columns)}); "
                             f"name it with --image-column / --label-column")
    if df.empty:
        raise InputError(f"{path}: a header and no rows: no labelled image")
    for col in (image_column, label_column):
        empty = np.flatnonzero(df[col].str.strip() == "")
        if len(empty):
            raise InputError(f"{path} line {empty[0] + 2}: empty {col!r} cell ({len(empty)} row(s) without one)")
    labels = df[label_column].str.strip()
    names = classes or sorted(labels.unique())
    if len(names) < 2:
        raise InputError(f"{path}: column {label_column!r} has one class only ({names[0]!r}); need two or more")
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise InputError(f"{path}: labels {unknown[:5]} are not classes of the model ({names})")
    pos = {n: i for i, n in enumerate(names)}
    paths = [Path(p) if Path(p).is_absolute() else path.parent / p for p in df[image_column].str.strip()]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:  # before any training: a --test set's typo used to cost the whole run
        raise InputError(f"{path} line {missing[0] + 2}: image {paths[missing[0]]} not found "
                         f"({len(missing)} of {len(paths)} listed images missing)")
    return paths, np.array([pos[v] for v in labels], dtype=np.int64), list(names)


def load_encoder_file(path, image_size: int | None = None):
    """``(encoder Classifier, normalisation or None, image size, crop fraction or None, made)``;
    ``made``: how a gzmorph model's images were made and its precision (``fits``, ``amp``; {} for
    other encoders)."""
    from .io import load_bundle
    from .pretrained import gzmorph_format

    fmt = gzmorph_format(path)
    if fmt is not None and fmt.startswith("gzmorph.representation"):
        from .represent import MODEL_FORMAT, Representation

        rep = Representation(load_bundle(path, MODEL_FORMAT, "representation model file"), str(path), "cpu")
        crop = rep.bundle.get("preprocess", {}).get("crop_fraction")
        return rep.model, rep.norm, rep.image_size, crop, _made(rep.bundle)
    if fmt is not None and fmt.startswith("gzmorph.classifier"):
        from .classify import load_model

        clf = load_model(path, "cpu")
        if clf.kind != "flat":
            raise InputError(f"{path}: a {clf.kind!r} classifier has several models; fine-tune a flat one "
                             f"or a representation")
        return (clf.models["flat"], clf.norm, clf.image_size, clf.bundle.get("preprocess", {}).get("crop_fraction"),
                _made(clf.bundle))
    from .models import load_encoder

    model = load_encoder(path, num_classes=0, image_size=image_size)
    norm = _folder_norm(path)
    return model, norm, int(image_size or model.config.get("image_size") or 224), _exported_crop(path), {}


def _made(bundle: dict) -> dict:
    """The FITS options of a gzmorph model file's images and its training precision, where recorded."""
    from .imageset import recorded_fits
    from .train import recorded_amp

    fits = recorded_fits(bundle)
    return {"amp": recorded_amp(bundle)} | ({"fits": fits} if fits is not None else {})


def _exported_crop(path) -> float | None:
    """The crop fraction of the galaxy images a gzmorph model was trained on, which export-encoder
    records as ``crop_pct`` (an ImageNet encoder's own crop_pct says nothing about galaxy images)."""
    from .pretrained import encoder_config

    pc = (encoder_config(path) or {}).get("pretrained_cfg") or {}
    if str(pc.get("source", "")).startswith("gzmorph ") and isinstance(pc.get("crop_pct"), (int, float)):
        return float(pc["crop_pct"])
    return None


def _folder_norm(path) -> dict | None:
    """The mean/std a timm encoder's ``config.json`` declares (``pretrained_cfg``), in [0, 1] units, and
    ``greyscale: true`` for the export of a greyscale gzmorph model (whose mean/std are the grey image's)."""
    from .pretrained import encoder_config, exported_greyscale

    pc = (encoder_config(path) or {}).get("pretrained_cfg") or {}
    if "mean" in pc and "std" in pc:
        return {"mean": [float(v) for v in pc["mean"]], "std": [float(v) for v in pc["std"]],
                **({"greyscale": True} if exported_greyscale(path) else {})}
    return None


def decode_all(paths, image_size: int, crop: float, batch_size: int, workers, fits=None) -> np.ndarray:
    """The labelled images as one uint8 N×S×S×3 array (streamed in, one array allocated)."""
    from .imagestream import image_batches

    out = np.empty((len(paths), image_size, image_size, 3), np.uint8)
    for pos, images in image_batches(paths, image_size, crop, batch_size, workers, fits=fits):
        out[pos] = images
    return out


def finetune_from_csv(args) -> str:
    """Run ``gzmorph finetune`` (parsed ``args``); write the model file; return a one-line summary."""
    import torch

    from .augment import channel_stats
    from .classify import MODEL_FORMAT
    from .finetune import label_metrics, train_arm, with_new_head
    from .io import save_bundle
    from .preprocess import DEFAULT_CROP_FRACTION
    from .represent import flush_denormal
    from .represent_settings import FinetuneSettings
    from .train import pick_device, predict_tensor

    paths, y, classes = read_labels(args.labels, args.image_column, args.label_column)
    test = read_labels(args.test, args.image_column, args.label_column, classes) if args.test else None
    encoder, norm, size, crop, made = load_encoder_file(args.encoder, args.image_size)
    fits, amp = made.get("fits"), made.get("amp", "auto")  # as the encoder's own images and training
    crop = args.crop_fraction or crop or DEFAULT_CROP_FRACTION
    defaults = FinetuneSettings()
    batch_size = args.batch_size or defaults.batch_size
    images = decode_all(paths, size, crop, batch_size, args.workers, fits)
    if norm is None:  # an encoder without its own normalisation: the labelled images' statistics
        mean, std = channel_stats(images)
        norm = {"mean": mean, "std": std}
    settings = FinetuneSettings(steps=args.steps or defaults.steps, head_steps=args.steps or defaults.head_steps,
                                batch_size=batch_size, augment=not args.no_augment)
    device = pick_device(args.device)
    arm = MODES[args.mode]
    log.info("%s: %d labelled images of %d classes %s, %s fine-tuning", args.encoder, len(y), len(classes), classes,
             args.mode)
    with flush_denormal():
        trained = train_arm(arm, encoder, norm, images, y, len(classes), settings, args.seed, device, amp=amp)
    if arm == "frozen":  # the fixed encoder + the standardised head folded into one linear layer
        model = with_new_head(encoder, len(classes), dropout=0.0)
        model.head[-1] = trained.folded()
    else:
        model = trained
    model = model.cpu().eval()
    record = {"encoder": str(args.encoder), "mode": args.mode, "labels": str(args.labels),
              "label_column": args.label_column, "n_labels": int(len(y)),
              "class_counts": {c: int((y == k).sum()) for k, c in enumerate(classes)},
              "steps": settings.steps if arm != "frozen" else settings.head_steps, "seed": args.seed}
    if test is not None:
        from .augment import input_transform
        from .imagestream import image_batches

        transform = input_transform(norm)  # the test images are streamed: only their logits are kept
        logits = torch.cat([predict_tensor(model, torch.from_numpy(images), transform, device=device, amp=amp)
                            for _, images in image_batches(test[0], size, crop, batch_size, args.workers,
                                                           fits=fits)])
        record["test"] = {"labels": str(args.test), "n": int(len(test[1])),
                          **label_metrics(logits, test[1], len(classes))}
    bundle = {"format": MODEL_FORMAT, "kind": "flat", "cut": None, "classes": classes, "image_size": size,
              "norm": {"mean": list(map(float, norm["mean"])), "std": list(map(float, norm["std"])),
                       **({"greyscale": True} if norm.get("greyscale") else {})},  # a greyscale encoder's
              "levels": [{"name": "flat", "classes": classes, "model": model.config["name"],
                          "model_config": model.config, "state_dict": model.state_dict()}],
              "preprocess": {"crop_fraction": crop, **({"fits": fits} if fits is not None else {})},
              "finetune": record}
    save_bundle(args.output, bundle, MODEL_FORMAT)
    summary = f"{len(y)} labels, {len(classes)} classes, {args.mode} -> {args.output}"
    if test is not None:
        t = record["test"]
        summary += (f"; test ({t['n']}): accuracy {t['accuracy']:.3f}, balanced accuracy "
                    f"{t['balanced_accuracy']:.3f}, ROC AUC {t['roc_auc']:.3f}")
    return summary
