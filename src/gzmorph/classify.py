"""Morphology classifiers: the HIWL hierarchy and the flat baseline.

``hiwl`` (Ma et al. 2023), for the ``hiwl5`` cut: a 4-way *coarse* model over
{in-between, cigar|edge-on, round, spiral} and a binary *fine* model
(cigar vs edge-on) trained on the galaxies of those two classes.  Prediction
routes a galaxy whose coarse argmax is the merged class to the fine model; the
5-class probabilities are P4 for the three unmerged classes and
P4(merged) × P2(cigar | edge-on) for the two others.  Both levels use label
smoothing; a level whose smallest class has under ``rare_ratio`` of the
largest class's training examples is trained with weighted sampling
(weights 1 / class count, with replacement) and early-stopped on the
balanced accuracy (mean per-class recall) instead of the accuracy — on the
HIWL cut that is the fine level (cigar is rare).  The fine level starts from
the trained coarse level's backbone with a new head (``classify.fine_from_coarse``):
its ~12 % of the galaxies then build on features learned from all of them (HIWL
starts both levels from ImageNet weights, which gzmorph cannot download).  Its
decision threshold on P2(cigar) is the argmax (0.5), a number, or ``val``: the
threshold whose whole hierarchy is the most accurate on the validation split
(``classify.fine_threshold``); the model file keeps it.

Prediction may average each level's class probabilities over 4 or 8 views of a galaxy (its 90°
rotations and their mirror images, ``classify.tta``: :class:`ViewAverage`), as Dieleman et al.
(2015) did for the Kaggle challenge; the model file keeps the number of views.

``flat``: the same backbone as one K-way classifier with plain cross-entropy,
no weighted sampling and no smoothing.  Augmentation is the same for both, so
the comparison isolates hierarchy + sampling + smoothing.  ``flat`` works for
every cut.

A trained model is one file (``model.pt``) that holds everything needed to
predict: kind, cut, class names, image size, normalisation, and per level the
model name, its config and weights (see :func:`save_model` / :func:`load_model`).
It is a safetensors file (:func:`gzmorph.io.save_bundle`): the weights as its tensors,
everything else as a JSON header; loading it never runs code.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .classify_settings import ClassifySettings, check_tta
from .io import InputError, atomic_path, save_bundle, write_json

log = logging.getLogger(__name__)

MODEL_FORMAT = "gzmorph.classifier/1"
HIWL_CLASSES = ["round", "in-between", "cigar", "edge-on", "spiral"]
MERGED = "cigar|edge-on"
COARSE_CLASSES = ["in-between", MERGED, "round", "spiral"]
FINE_CLASSES = ["cigar", "edge-on"]
KINDS = ("hiwl", "flat")
MIN_TRAIN_PER_CLASS = 2


@dataclass
class TrainConfig(ClassifySettings):
    """The settings of one training run: the ``classify:`` settings plus its seed and progress bar."""

    seed: int = 0
    progress: bool = True

    @classmethod
    def from_params(cls, params: dict) -> "TrainConfig":
        from .augment import AugmentConfig

        cfg = cls.from_config(params)
        AugmentConfig.from_value(cfg.augment)  # InputError naming unknown augment options
        return cfg


# --------------------------------------------------------------------------- data


def read_catalogue(path: str | Path) -> tuple[pd.DataFrame, list[str], str | None]:
    """The curated catalogue checked for training: its classes and cut name come with it."""
    from .curate import catalogue_meta

    classes, cut = catalogue_meta(path)
    df = pd.read_parquet(path)
    missing = [c for c in ("id", "label", "split") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}")
    bad = sorted(set(df["label"].dropna().astype(int)) - set(range(len(classes))))
    if bad:
        raise InputError(f"{path}: labels {bad} outside the {len(classes)} classes {classes}")
    return df, classes, cut


def load_images(path: str | Path, ids, image_size: int | None = None) -> np.ndarray:
    """The images of ``ids`` in memory (a few galaxies: the report's grids)."""
    rows = image_rows(path, ids, image_size)
    return rows.store.read_rows(rows.rows)


def image_rows(path: str | Path, ids, image_size: int | None = None, window_mb: float | None = None):
    """The rows of ``ids`` in the image store ``path``, streamed (:class:`gzmorph.stream.StoreRows`);
    an InputError names missing ids or a size the model does not take."""
    from .imageset import ImageStore
    from .stream import DEFAULT_WINDOW_MB, StoreRows

    store = ImageStore(path)
    shape = store.shape
    if image_size is not None and tuple(shape[:2]) != (image_size, image_size):
        raise InputError(f"{path}: images are {shape[0]}×{shape[1]} px but the model expects "
                         f"{image_size}×{image_size} px")
    try:
        rows = store.rows_of(ids)
    except KeyError as err:
        raise InputError(str(err.args[0])) from None
    return StoreRows(store, rows, window_mb or DEFAULT_WINDOW_MB)


def check_counts(df: pd.DataFrame, classes: list[str], where: str, min_train: int = MIN_TRAIN_PER_CLASS) -> None:
    """Every class needs >= ``min_train`` training examples and >= 1 in val and in test."""
    counts = pd.crosstab(df["label"], df["split"]).reindex(index=range(len(classes)), fill_value=0)
    problems = []
    for k, name in enumerate(classes):
        c = {s: int(counts.loc[k, s]) if s in counts.columns else 0 for s in ("train", "val", "test")}
        if c["train"] < min_train or c["val"] < 1 or c["test"] < 1:
            problems.append(f"{name!r} (train {c['train']}, val {c['val']}, test {c['test']})")
    if problems:
        raise InputError(f"{where}: too few examples to train and evaluate (need >= {min_train} train, "
                         f">= 1 val and >= 1 test per class): {', '.join(problems)}")


@dataclass
class Level:
    """One model of a classifier: its classes and the map from catalogue label to its label (-1 = not used)."""
    name: str
    classes: list[str]
    target: np.ndarray  # catalogue label index -> level label, or -1
    label_smoothing: float = 0.0
    weighted: bool = False


def plan_levels(kind: str, classes: list[str], train_labels: np.ndarray, cfg: TrainConfig) -> list[Level]:
    """The models to train for ``kind``, with their targets, smoothing and sampling."""
    if kind == "flat":
        return [Level("flat", list(classes), np.arange(len(classes)))]
    if kind != "hiwl":
        raise InputError(f"classify model {kind!r}: choose one of {', '.join(KINDS)}")
    if sorted(classes) != sorted(HIWL_CLASSES):
        raise InputError(f"classify model 'hiwl' needs the hiwl5 classes {HIWL_CLASSES}; this catalogue has "
                         f"{classes}: use 'flat' for other cuts")
    pos = {c: i for i, c in enumerate(classes)}
    coarse = np.full(len(classes), -1)
    fine = np.full(len(classes), -1)
    for c in HIWL_CLASSES:
        coarse[pos[c]] = COARSE_CLASSES.index(MERGED if c in FINE_CLASSES else c)
    for j, c in enumerate(FINE_CLASSES):
        fine[pos[c]] = j
    levels = [Level("coarse", COARSE_CLASSES, coarse), Level("fine", FINE_CLASSES, fine)]
    for lv in levels:
        lv.label_smoothing = cfg.label_smoothing
        y = lv.target[train_labels]
        counts = np.bincount(y[y >= 0], minlength=len(lv.classes))
        lv.weighted = {"always": True, "never": False}.get(
            cfg.weighted_sampling, bool(counts.min() < cfg.rare_ratio * counts.max()))
    return levels


def sample_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Weight 1 / (count of the sample's class)."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    return torch.as_tensor(1.0 / counts[labels], dtype=torch.double)


def accuracy_metrics(out: torch.Tensor, y: torch.Tensor) -> dict:
    pred = out.argmax(1)
    y = y.to(pred.device)
    recalls = [(pred[y == k] == k).float().mean() for k in y.unique()]
    return {"accuracy": (pred == y).float().mean().item(),
            "balanced_accuracy": torch.stack(recalls).mean().item() if recalls else float("nan")}


# --------------------------------------------------------------------------- training


def train(catalogue: str | Path, images: str | Path, out: str | Path, *, kind: str = "hiwl",
          checkpoint_dir: str | Path | None = None, metrics_path: str | Path | None = None,
          **params) -> dict:
    """Train ``kind`` on the train split (early stopping on val); write ``out`` (model.pt).

    ``checkpoint_dir`` (one sub-directory per level) makes a rerun resume after a kill.
    ``metrics_path`` gets the per-epoch table of all levels (column ``level``).
    Returns a summary dict.
    """
    from . import augment as A
    from .distributed import is_main
    from .imageset import content_hash, preprocess_meta
    from .models import check_model_kwargs, create_model
    from .pretrained import encoder_hash
    from .stream import channel_stats_rows
    from .train import cosine_schedule, discard_checkpoints, fingerprint, fit, pick_device, write_table

    cfg = TrainConfig.from_params(params)
    check_model_kwargs(cfg.backbone, cfg.model_kwargs, "classify.model_kwargs")  # not a TypeError in training
    df, classes, cut = read_catalogue(catalogue)
    check_counts(df, classes, str(catalogue))
    df = df[df["split"].isin(["train", "val"])].reset_index(drop=True)
    levels = plan_levels(kind, classes, df.loc[df["split"] == "train", "label"].to_numpy(int), cfg)
    rows = image_rows(images, df["id"].to_numpy())  # streamed: memory bounded by its window
    shape = rows.store.shape
    if shape[0] != shape[1]:
        raise InputError(f"{images}: images must be square, got {shape[0]}×{shape[1]}")
    image_size = int(shape[0])
    if cfg.image_size and cfg.image_size != image_size:  # e.g. preset paper: EfficientNet-B1 at 240 px
        raise InputError(f"{images}: images are {image_size} px but classify.image_size is {cfg.image_size} "
                         "(rerun the curation at that size)")
    is_train = (df["split"] == "train").to_numpy()
    mean, std = channel_stats_rows(rows.subset(np.flatnonzero(is_train)))
    transform = A.BatchTransform(mean, std, A.AugmentConfig.from_value(cfg.augment))
    device = pick_device(cfg.device)
    labels = df["label"].to_numpy(int)
    pixels = content_hash(images)  # a checkpoint belongs to these images only
    encoder = encoder_hash(cfg.pretrained)  # ... and to these starting weights (an encoder replaced in place)

    saved_levels, tables, trained = [], [], {}
    for lv in levels:
        y = lv.target[labels]
        tr = np.flatnonzero(is_train & (y >= 0))
        va = np.flatnonzero(~is_train & (y >= 0))
        smoothing = lv.label_smoothing if kind == "hiwl" else 0.0
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.backbone, len(lv.classes), image_size, pretrained=cfg.pretrained or None,
                             **cfg.model_kwargs)
        init_from = None
        if kind == "hiwl" and lv.name == "fine" and cfg.fine_from_coarse:
            init_from = copy_backbone(trained["coarse"], model)
        loss = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
        # a level trained for its rare class keeps the epoch with the best mean per-class recall
        monitor = "val_balanced_accuracy" if lv.weighted else "val_accuracy"
        hyper = cfg.identity()
        meta = {"model": cfg.backbone, "model_config": model.config, "classes": lv.classes,
                "fingerprint": fingerprint(df["id"].to_numpy()[tr], y[tr], df["id"].to_numpy()[va], y[va],
                                           hyper, kind, lv.name, smoothing, lv.weighted, monitor, pixels, init_from,
                                           encoder)}
        log.info("%s/%s: %d train / %d val images, classes %s, label smoothing %s, weighted sampling %s%s",
                 kind, lv.name, len(tr), len(va), lv.classes, smoothing, lv.weighted,
                 ", from the coarse level's backbone" if init_from else "")
        ytr, yva = torch.as_tensor(y[tr]), torch.as_tensor(y[va])
        result = fit(
            model, loss, (rows.subset(tr), ytr), (rows.subset(va), yva),
            epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
            optimizer=lambda p: torch.optim.SGD(p, lr=cfg.lr, momentum=cfg.momentum,
                                                weight_decay=cfg.weight_decay,
                                                nesterov=cfg.nesterov and cfg.momentum > 0),
            scheduler=cosine_schedule(warmup_steps=cfg.warmup_epochs * max(1, len(tr) // cfg.batch_size)),
            transform=transform, metrics_fn=accuracy_metrics, monitor=monitor, mode="max",
            patience=cfg.patience or None, sample_weights=sample_weights(y[tr], len(lv.classes)) if lv.weighted else None,
            checkpoint_dir=Path(checkpoint_dir) / lv.name if checkpoint_dir else None, meta=meta,
            device=device, amp=cfg.amp, progress=cfg.progress)
        model.cpu()
        trained[lv.name] = model
        saved_levels.append({"name": lv.name, "classes": lv.classes, "model": cfg.backbone,
                             "model_config": model.config, "state_dict": model.state_dict(),
                             "label_smoothing": smoothing, "weighted_sampling": lv.weighted,
                             "init": "coarse" if init_from else (cfg.pretrained and "pretrained") or "random",
                             "best_epoch": result.best_epoch, "monitor": monitor, "best_val_metric": result.best_metric,
                             "epochs_run": len(result.history), "n_train": len(tr), "n_val": len(va)})
        tables += [{"level": lv.name, **row} for row in result.history]

    bundle = {"format": MODEL_FORMAT, "kind": kind, "cut": cut, "classes": classes, "image_size": image_size,
              "norm": {"mean": mean, "std": std}, "levels": saved_levels,
              "preprocess": preprocess_meta(images), "config": asdict(cfg), "tta": cfg.tta}
    if kind == "hiwl":
        bundle["fine_threshold"], bundle["fine_threshold_val"] = _fine_threshold(
            cfg, trained, rows.subset(np.flatnonzero(~is_train)), labels[~is_train], classes, bundle["norm"])
    if is_main():  # under data-parallel training, rank 0 alone writes (gzmorph.distributed)
        if metrics_path:
            write_table(Path(metrics_path), tables)
        save_model(bundle, out)
        discard_checkpoints(checkpoint_dir)
    return {k: v for k, v in bundle.items() if k != "levels"} | {
        "levels": [{k: v for k, v in lv.items() if k != "state_dict"} for lv in saved_levels]}


def copy_backbone(donor: torch.nn.Module, model: torch.nn.Module) -> str:
    """Load ``donor``'s weights, all but its ``head``, into ``model`` (of the same backbone); return
    a hash of what was copied (a resumed checkpoint must start from the same weights)."""
    from .train import fingerprint

    state = {k: v for k, v in donor.state_dict().items() if not k.startswith("head.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape
        raise InputError(f"the fine level's backbone differs from the coarse level's: "
                         f"{str(err).splitlines()[-1].strip()}") from None
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise InputError(f"the fine level's backbone differs from the coarse level's: missing {missing}, "
                         f"unexpected {unexpected}")
    return fingerprint(sorted(state), *(state[k].detach().cpu().numpy() for k in sorted(state)))


def _fine_threshold(cfg: TrainConfig, trained: dict, val_rows, val_labels: np.ndarray, classes: list[str],
                    norm: dict) -> tuple[float, dict]:
    """The fine level's threshold: ``cfg.fine_threshold``, or where that is "val" the one
    :func:`choose_fine_threshold` picks on the validation galaxies; with the validation accuracy
    of the hierarchy at each threshold tried (empty when the threshold was given)."""
    from .augment import input_transform
    from .train import predict_tensor

    if cfg.fine_threshold != "val":
        return float(cfg.fine_threshold), {}
    p4, p2 = (torch.softmax(predict_tensor(ViewAverage(trained[name], cfg.tta), val_rows, input_transform(norm)),
                            1).numpy() for name in ("coarse", "fine"))
    threshold, curve = choose_fine_threshold(p4, p2, val_labels, classes)
    log.info("hiwl/fine: threshold %.2f on P(cigar | cigar or edge-on), chosen on %d validation galaxies: "
             "accuracy %.4f (argmax: %.4f)", threshold, len(val_labels), curve[f"{threshold:.2f}"], curve["0.50"])
    return threshold, {"split": "val", "n": int(len(val_labels)), "accuracy": curve}


#: 0.01, 0.02, ..., 0.99: 1/count sampling of a rare cigar class moves the best threshold far from 0.5
#: (on hiwl5-all 0.95 was the top of a 0.05-step grid; the prior ratio alone gives 0.87)
FINE_THRESHOLDS = np.round(np.arange(0.01, 0.995, 0.01), 2)


def choose_fine_threshold(p4: np.ndarray, p2: np.ndarray, labels: np.ndarray, classes: list[str]
                          ) -> tuple[float, dict]:
    """The threshold of :data:`FINE_THRESHOLDS` whose hierarchy (:func:`compose_hiwl`) is the most
    accurate on these labelled galaxies; of equals, the one nearest 0.5 (the fine argmax).
    Returns it and the accuracy at every threshold (keys "0.01" ... "0.99")."""
    labels = np.asarray(labels, int)
    curve = {f"{t:.2f}": float((compose_hiwl(p4, p2, classes, t)[1] == labels).mean()) for t in FINE_THRESHOLDS}
    best = max(curve.values())
    threshold = min((t for t in FINE_THRESHOLDS if curve[f"{t:.2f}"] == best), key=lambda t: (abs(t - 0.5), t))
    return float(threshold), curve


# --------------------------------------------------------------------------- the model file


def save_model(bundle: dict, path: str | Path) -> None:
    """Write the model file: a safetensors file (weights + JSON header), see :func:`gzmorph.io.save_bundle`."""
    save_bundle(path, bundle, MODEL_FORMAT)


class ViewAverage(torch.nn.Module):
    """``model`` seen through ``views`` dihedral views of each image (:func:`gzmorph.augment.dihedral`):
    the log of its class probabilities averaged over the views, so that a softmax of the output is
    that average.  One view is the model itself."""

    def __init__(self, model: torch.nn.Module, views: int = 1):
        super().__init__()
        self.model, self.views = model, check_tta(views, "test-time views:")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .augment import dihedral

        if self.views == 1:
            return self.model(x)
        p = sum(torch.softmax(self.model(dihedral(x, v)).float(), 1) for v in range(self.views)) / self.views
        return torch.log(p.clamp_min(1e-30))


class TrainedClassifier:
    """A loaded ``model.pt``: ``predict_proba(uint8 N×S×S×3) -> (probs N×K, predicted label N)``."""

    def __init__(self, bundle: dict, path: str = "model", device=None):
        from .models import create_model
        from .train import pick_device

        self.path, self.bundle = path, bundle
        self.kind, self.classes, self.cut = bundle["kind"], list(bundle["classes"]), bundle.get("cut")
        self.fine_threshold = float(bundle.get("fine_threshold", 0.5))  # files before it: the fine argmax
        self.tta = check_tta(bundle.get("tta", 1), f"{path}: tta")  # files before it: one view
        self.image_size, self.norm = int(bundle["image_size"]), bundle["norm"]
        self.device = pick_device(device)
        self.models = {}
        for lv in bundle["levels"]:
            cfg = dict(lv["model_config"])
            name = cfg.pop("name")
            try:
                model = create_model(name, cfg.pop("num_classes"), cfg.pop("image_size"), **cfg)
            except InputError as err:
                raise InputError(f"{path}: {err}") from None
            try:
                model.load_state_dict(lv["state_dict"])
            except RuntimeError as err:
                first = str(err).splitlines()[0:2]
                raise InputError(f"{path}: the weights of level {lv['name']!r} do not fit model {name!r} "
                                 f"with {len(lv['classes'])} classes: {' '.join(first)}") from None
            if len(lv["classes"]) != lv["model_config"]["num_classes"]:
                raise InputError(f"{path}: level {lv['name']!r} has {len(lv['classes'])} class names for a "
                                 f"{lv['model_config']['num_classes']}-way model")
            self.models[lv["name"]] = model.to(self.device).eval()
        expected = ["flat"] if self.kind == "flat" else ["coarse", "fine"]
        if sorted(self.models) != sorted(expected):
            raise InputError(f"{path}: a {self.kind!r} model needs levels {expected}, found {sorted(self.models)}")

    def _probs(self, name: str, x: torch.Tensor, batch_size: int) -> np.ndarray:
        from .augment import input_transform
        from .train import predict_tensor

        # a classifier fine-tuned from a greyscale representation (gzmorph finetune) records greyscale
        out = predict_tensor(ViewAverage(self.models[name], self.tta), x, input_transform(self.norm),
                             batch_size=batch_size, device=self.device)
        return torch.softmax(out, 1).numpy() if len(x) else np.zeros((0, len(self.models[name].head[-1].bias)))

    def check_images(self, images: np.ndarray, where: str = "images") -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise InputError(f"{where}: expected uint8 N×H×W×3 images, got {images.dtype} {images.shape}")
        if images.shape[1:3] != (self.image_size, self.image_size):
            raise InputError(f"{where}: images are {images.shape[1]}×{images.shape[2]} px but model {self.path} "
                             f"expects {self.image_size}×{self.image_size} px")

    def predict_proba(self, images: np.ndarray, batch_size: int = 256, where: str = "images"):
        images = np.asarray(images)
        self.check_images(images, where)
        x = torch.from_numpy(np.ascontiguousarray(images))
        if self.kind == "flat":
            p = self._probs("flat", x, batch_size)
            return p, p.argmax(1)
        return compose_hiwl(self._probs("coarse", x, batch_size), self._probs("fine", x, batch_size), self.classes,
                            self.fine_threshold)


def compose_hiwl(p4: np.ndarray, p2: np.ndarray, classes: list[str], threshold: float = 0.5
                 ) -> tuple[np.ndarray, np.ndarray]:
    """5-class probabilities and hierarchical predictions from the coarse (P4) and fine (P2) models.

    P2 is first moved to the fine ``threshold``: its log-odds of cigar shifted by −logit(threshold),
    so that P2(cigar) >= threshold becomes P2(cigar) >= 0.5 (0.5 leaves it as it is).  Then
    P(c) = P4(c) for the unmerged classes and P4(merged) × P2(c) for cigar/edge-on; the prediction
    is the coarse argmax, replaced by the fine argmax where the coarse argmax is the merged class.
    """
    p4, p2 = np.asarray(p4, float), np.asarray(p2, float)
    if threshold != 0.5:
        c, e = FINE_CLASSES.index("cigar"), FINE_CLASSES.index("edge-on")
        cig, edge = p2[:, c] * (1 - threshold), p2[:, e] * threshold
        p2 = np.empty_like(p2)
        p2[:, c] = cig / np.maximum(cig + edge, 1e-300)
        p2[:, e] = 1 - p2[:, c]
    probs = np.zeros((len(p4), len(classes)))
    m = COARSE_CLASSES.index(MERGED)
    for k, c in enumerate(classes):
        probs[:, k] = p4[:, m] * p2[:, FINE_CLASSES.index(c)] if c in FINE_CLASSES else p4[:, COARSE_CLASSES.index(c)]
    coarse_pred = p4.argmax(1)
    names = np.array(COARSE_CLASSES, dtype=object)[coarse_pred]
    fine_names = np.array(FINE_CLASSES, dtype=object)[p2.argmax(1)]
    names = np.where(coarse_pred == m, fine_names, names)
    pos = {c: i for i, c in enumerate(classes)}
    return probs, np.array([pos[n] for n in names], dtype=int)


def load_model(path: str | Path, device=None, expect_classes: list[str] | None = None) -> TrainedClassifier:
    from .io import load_bundle

    bundle = load_bundle(path, MODEL_FORMAT, "classifier model file")
    if expect_classes is not None and list(expect_classes) != list(bundle["classes"]):
        raise InputError(f"{path}: model classes {bundle['classes']} differ from the expected {list(expect_classes)}")
    return TrainedClassifier(bundle, str(path), device)


# --------------------------------------------------------------------------- prediction and metrics


def as_classifier(model, device=None) -> TrainedClassifier:
    return model if isinstance(model, TrainedClassifier) else load_model(model, device)


def predict_images(model, images: np.ndarray, ids=None, batch_size: int = 256, device=None,
                   where: str = "images") -> pd.DataFrame:
    """Predictions for an image array: ``id``, ``pred_label``, ``pred_name``, ``p_<class>``."""
    clf = as_classifier(model, device)
    probs, pred = clf.predict_proba(images, batch_size, where)
    out = pd.DataFrame({"id": np.arange(len(pred)) if ids is None else np.asarray(ids),
                        "pred_label": pred.astype(np.int64),
                        "pred_name": np.array(clf.classes, dtype=object)[pred] if len(pred) else []})
    for k, c in enumerate(clf.classes):
        out[f"p_{c}"] = probs[:, k].astype(np.float32)
    return out


def predict(model, catalogue: str | Path, images: str | Path, split: str | None = "test",
            batch_size: int = 256, device=None) -> pd.DataFrame:
    """Predict the galaxies of ``split`` (None: all) of a curated catalogue; adds ``label``,
    ``label_name``, ``correct`` (labels in the model's class order) where the catalogue has labels."""
    clf = as_classifier(model, device)
    df, classes, _ = read_catalogue(catalogue)
    if split is not None:
        df = df[df["split"] == split].reset_index(drop=True)
    has_labels = "label" in df.columns and df["label"].notna().all()
    if has_labels:
        names = np.array(classes, dtype=object)[df["label"].to_numpy(int)]
        unknown = sorted(set(names) - set(clf.classes))
        if unknown:
            raise InputError(f"{catalogue}: labels {unknown} are not classes of model {clf.path} ({clf.classes})")
    rows = image_rows(images, df["id"].to_numpy(), clf.image_size)
    ids = df["id"].to_numpy()
    parts, start = [], 0
    for xb in rows.ordered_batches(max(batch_size, 4096)):  # streamed, a few thousand images at a time
        parts.append(predict_images(clf, xb.numpy(), ids[start:start + len(xb)], batch_size, where=str(images)))
        start += len(xb)
    out = pd.concat(parts, ignore_index=True) if parts else predict_images(
        clf, np.zeros((0, clf.image_size, clf.image_size, 3), np.uint8), ids, batch_size)
    if has_labels:
        pos = {c: i for i, c in enumerate(clf.classes)}
        out.insert(1, "label", np.array([pos[n] for n in names], dtype=np.int64))
        out.insert(2, "label_name", names)
        out["correct"] = out["label"] == out["pred_label"]
    if "split" in df.columns:
        out["split"] = df["split"].to_numpy()
    return out


def metrics_from_predictions(pred: pd.DataFrame, classes: list[str]) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y, p = pred["label"].to_numpy(int), pred["pred_label"].to_numpy(int)
    labels = list(range(len(classes)))
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    return {
        "accuracy": float((y == p).mean()) if len(y) else float("nan"),
        "macro_f1": float(np.mean(f1)),
        "per_class": {c: {"precision": float(prec[k]), "recall": float(rec[k]), "f1": float(f1[k]),
                          "support": int(sup[k])} for k, c in enumerate(classes)},
        "confusion": confusion_matrix(y, p, labels=labels).tolist(),
        "classes": list(classes),
        "n_test": int(len(y)),
    }


#: the settings a model file's config holds that say how it was trained (the report's table)
TRAINING_KEYS = ("backbone", "image_size", "pretrained", "epochs", "batch_size", "lr", "patience", "augment")


def training_record(bundle: dict) -> dict:
    """How a model file was trained, as resolved from its preset: :data:`TRAINING_KEYS` of its config
    (``image_size`` the size it trained at) and, per level, the epochs run and the best epoch."""
    cfg = bundle.get("config") or {}
    out = {k: cfg[k] for k in TRAINING_KEYS if k in cfg}
    out["image_size"] = int(bundle["image_size"])
    out["levels"] = {lv["name"]: {k: lv[k] for k in ("epochs_run", "best_epoch", "n_train") if k in lv}
                     for lv in bundle.get("levels", [])}
    return out


def evaluate(model, catalogue: str | Path, images: str | Path, split: str = "test",
             predictions_out: str | Path | None = None, metrics_out: str | Path | None = None,
             device=None) -> dict:
    """Metrics of ``model`` on ``split``: accuracy, macro_f1, per_class, confusion, classes, n_test."""
    clf = as_classifier(model, device)
    df, classes, _ = read_catalogue(catalogue)
    sub = df[df["split"] == split]
    if sub.empty:
        raise InputError(f"{catalogue}: no galaxies in split {split!r}")
    present = set(np.array(classes, dtype=object)[sub["label"].to_numpy(int)])
    empty = [c for c in classes if c not in present and c in clf.classes]
    if empty:  # a class too small for every split (curation fills train first): no recall to measure
        log.warning("%s: no %s galaxies of class(es) %s: their recall and F1 are undefined (0 in the table and "
                    "in macro F1)", catalogue, split, empty)
    pred = predict(clf, catalogue, images, split, device=device)
    result = metrics_from_predictions(pred, clf.classes)
    if empty:
        result["classes_without_test"] = empty
    result.update({"model": clf.kind, "cut": clf.cut, "split": split, "model_file": str(clf.path), "tta": clf.tta,
                   "training": training_record(clf.bundle)})
    if clf.kind == "hiwl":
        result["fine_threshold"] = clf.fine_threshold
        result["fine_init"] = next(lv.get("init", "random") for lv in clf.bundle["levels"] if lv["name"] == "fine")
    if predictions_out:
        with atomic_path(predictions_out) as tmp:
            pred.to_parquet(tmp, index=False)
    if metrics_out:
        write_json(metrics_out, result)
    return result
