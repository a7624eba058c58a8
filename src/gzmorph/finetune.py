"""Fine-tuning the representation from few labels (Walmsley et al. 2022, §6), on any labels.

The task (``label``): ``rings`` (default) -- ring: ``Class6.1 >= min_odd`` and ring share of the
odd votes ``Class8.1 / Class6.1 > ring_min``; not ring: ``Class8.1 / Class6.1 < not_ring_max``
(0 where nobody answered question 8); both among featured, face-on galaxies (``Class2.2 >=
min_face_on``) --, ``class`` (the curated cut's classes) or any column of the source catalogue
(:func:`task_labels`).  Per seed a balanced test set is held out (``test_fraction`` of the rarest
class, as many of every other); the training sets are nested balanced sets of ``budget`` galaxies
per class.  Arms: ``frozen`` (fixed representation + a linear head), ``finetuned``
(representation + a new head, all weights trained), ``scratch`` (the same architecture from random
weights); all trained by :func:`gzmorph.train.fit` for a fixed number of optimiser steps
(:func:`train_arm`, which ``gzmorph finetune`` uses too).
"""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import pandas as pd

from .io import InputError
from .represent_settings import ARMS, FinetuneSettings

log = logging.getLogger(__name__)

RUN_COLUMNS = ["seed", "budget", "arm", "n_train", "n_test", "accuracy", "balanced_accuracy", "roc_auc"]




def ring_labels(df: pd.DataFrame, settings: FinetuneSettings | None = None) -> np.ndarray:
    """1 = ring, 0 = clearly not a ring, -1 = neither (left out)."""
    settings = settings or FinetuneSettings()
    need = ["Class2.2", "Class6.1", "Class8.1"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(f"ring labels need the vote-fraction columns {missing}")
    odd = df["Class6.1"].to_numpy(float)
    ring = df["Class8.1"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(odd > 0, ring / np.where(odd > 0, odd, 1), 0.0)
    face_on = df["Class2.2"].to_numpy(float) >= settings.min_face_on
    known = np.isfinite(share)
    out = np.full(len(df), -1, dtype=np.int64)
    out[face_on & known & (share < settings.not_ring_max)] = 0
    out[face_on & known & (odd >= settings.min_odd) & (share > settings.ring_min)] = 1
    return out


def plan_budgets(budgets, n_available: int, min_budget: int = FinetuneSettings.min_budget,
                 max_budget: int = FinetuneSettings.max_budget,
                 factor: float = FinetuneSettings.budget_factor, what: str = "rings") -> tuple[list[int], list[str]]:
    """Label budgets (galaxies of each class per training set) and notes on the ones skipped.

    ``budgets="auto"``: ``min_budget x factor^i`` up to ``max_budget``; those above the available
    ``what`` are skipped with a note.  An explicit list is taken as asked: a budget above the
    available ``what`` is an ``InputError``.
    """
    if budgets in ("auto", None):
        cand, b = [], float(min_budget)
        while b <= max_budget + 1e-9:
            cand.append(int(round(b)))
            b *= factor
        keep = [b for b in cand if b <= n_available]
        notes = [f"budget {b} skipped: only {n_available} {what} available for training" for b in cand if b > n_available]
        return keep, notes
    budgets = sorted(int(b) for b in budgets)
    too_big = [b for b in budgets if b > n_available]
    if too_big:
        raise InputError(f"fine-tuning label budget(s) {too_big} exceed the {n_available} {what} available for "
                         "training (after holding out the test set); lower represent.finetune.budgets")
    if any(b < 1 for b in budgets):
        raise InputError(f"fine-tuning label budgets must be >= 1, got {budgets}")
    return budgets, []


def label_metrics(logits, y: np.ndarray, n_classes: int) -> dict:
    """Accuracy, balanced accuracy and ROC AUC (binary; one-vs-rest macro average for more classes)
    of ``logits`` against labels ``y``; the AUC is NaN when the test labels lack a class."""
    import torch
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    p = torch.softmax(torch.as_tensor(logits).float(), 1).numpy()
    pred = p.argmax(1)
    out = {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(balanced_accuracy_score(y, pred))}
    if len(np.unique(y)) < n_classes:
        out["roc_auc"] = float("nan")
    elif n_classes == 2:
        out["roc_auc"] = float(roc_auc_score(y, p[:, 1]))
    else:
        out["roc_auc"] = float(roc_auc_score(y, p / p.sum(1, keepdims=True), multi_class="ovr",
                                             labels=list(range(n_classes))))
    return out


def _epochs(steps: int, n: int, batch_size: int) -> tuple[int, int]:
    """``(batch size, epochs)`` that give at least ``steps`` optimiser steps over ``n`` examples."""
    bs = max(2, min(batch_size, n))
    return bs, max(1, math.ceil(steps / max(1, n // bs)))


class StandardisedHead:
    """A linear head trained on standardised frozen features: ``logits = W (f - mu) / sd + b``."""

    def __init__(self, linear, mu, sd):
        self.linear, self.mu, self.sd = linear, mu, sd

    def __call__(self, features):
        import torch

        with torch.no_grad():
            return self.linear((torch.as_tensor(features) - self.mu) / self.sd)

    def folded(self):
        """The same map as one ``nn.Linear`` on the raw features (for a model file)."""
        import torch

        lin = torch.nn.Linear(self.linear.in_features, self.linear.out_features)
        with torch.no_grad():
            lin.weight.copy_(self.linear.weight / self.sd)
            lin.bias.copy_(self.linear.bias - (self.linear.weight * (self.mu / self.sd)).sum(1))
        return lin


def train_head(features: np.ndarray, y: np.ndarray, n_classes: int, settings: FinetuneSettings, seed: int,
               device) -> StandardisedHead:
    """The frozen arm: a linear head on standardised frozen features, ``settings.head_steps`` AdamW steps."""
    import torch

    from .train import fit

    f = torch.as_tensor(features).float()
    mu, sd = f.mean(0), f.std(0).clamp_min(1e-6)
    head = torch.nn.Linear(f.shape[1], n_classes)
    bs, epochs = _epochs(settings.head_steps, len(f), settings.batch_size)
    fit(head, torch.nn.CrossEntropyLoss(), ((f - mu) / sd, torch.as_tensor(y)), None,
        epochs=epochs, batch_size=bs, seed=seed,
        optimizer=lambda p: torch.optim.AdamW(p, lr=settings.lr_head, weight_decay=1e-2),
        device=device, progress=False)
    return StandardisedHead(head.cpu().eval(), mu, sd)


def with_new_head(encoder, n_classes: int, dropout: float = 0.2):
    """A copy of ``encoder`` (a :class:`gzmorph.models.Classifier`) with a fresh ``n_classes`` head."""
    import torch

    model = copy.deepcopy(encoder).cpu()
    model.head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(model.num_features, n_classes))
    model.config = {**getattr(encoder, "config", {}), "num_classes": n_classes}
    return model


def from_scratch(encoder, n_classes: int):
    """The encoder's architecture with random weights and an ``n_classes`` head."""
    from .models import create_model

    c = dict(encoder.config)
    return create_model(c.pop("name"), n_classes, c.pop("image_size"),
                        **{k: v for k, v in c.items() if k != "num_classes"})


def train_images(model, images: np.ndarray, y: np.ndarray, settings: FinetuneSettings, norm: dict, lr_groups,
                 seed: int, device, amp: str = "auto"):
    """Train ``model`` on uint8 ``images`` for ``settings.steps`` AdamW steps (parameter groups
    ``lr_groups(model)``), with the representation's normalisation and augmentation."""
    import torch

    from . import augment as A
    from .train import fit

    bs, epochs = _epochs(settings.steps, len(images), settings.batch_size)
    transform = A.input_transform(norm, A.AugmentConfig.from_value(settings.augment))
    fit(model, torch.nn.CrossEntropyLoss(), (torch.from_numpy(np.ascontiguousarray(images)), torch.as_tensor(y)),
        None, epochs=epochs, batch_size=bs, seed=seed, optimizer=lambda p: torch.optim.AdamW(lr_groups(model)),
        transform=transform, device=device, amp=amp, progress=False)
    return model.cpu().eval()


def train_arm(arm: str, encoder, norm: dict, images: np.ndarray, y: np.ndarray, n_classes: int,
              settings: FinetuneSettings, seed: int, device, features: np.ndarray | None = None,
              amp: str = "auto"):
    """One arm trained on ``images``/labels ``y``: a :class:`StandardisedHead` for ``frozen`` (on
    ``features``, the frozen encoder's, computed here when not given), else a whole model, whose
    steps run at the precision ``amp`` (the representation's ``represent.amp``)."""
    import torch

    torch.manual_seed(seed)
    if arm == "frozen":
        if features is None:
            features = _features(encoder, norm, images, device, amp)
        return train_head(features, y, n_classes, settings, seed, device)
    if arm == "finetuned":
        model = with_new_head(encoder, n_classes)
        return train_images(model, images, y, settings, norm,
                            lambda m: [{"params": m.backbone.parameters(), "lr": settings.lr_finetune},
                                       {"params": m.head.parameters(), "lr": settings.lr}], seed, device, amp)
    return train_images(from_scratch(encoder, n_classes), images, y, settings, norm,
                        lambda m: [{"params": m.parameters(), "lr": settings.lr}], seed, device, amp)


def _features(encoder, norm, images, device, amp: str = "auto") -> np.ndarray:
    """The frozen encoder's features (``Classifier.features`` = its backbone) of uint8 ``images``."""
    import torch

    from .augment import input_transform
    from .train import predict_tensor

    body = torch.nn.Sequential(encoder.backbone).eval()
    return predict_tensor(body, torch.from_numpy(np.ascontiguousarray(images)), input_transform(norm),
                          device=device, amp=amp).numpy()


def _arm_logits(arm: str, rep, images, embeddings, tr, test, y_tr, n_classes, settings: FinetuneSettings, seed,
                device):
    """Train one arm on the galaxies ``tr``; its logits on ``test``."""
    import torch

    from .augment import input_transform
    from .train import predict_tensor

    if arm == "frozen":  # on the embeddings alone: no image is read
        return train_arm(arm, rep.model, rep.norm, None, y_tr, n_classes, settings, seed, device,
                         features=embeddings[tr])(embeddings[test])
    out = train_arm(arm, rep.model, rep.norm, images[tr], y_tr, n_classes, settings, seed, device, amp=rep.amp)
    x_test = images.stream(test) if isinstance(images, LabelledImages) else torch.from_numpy(images[test])
    return predict_tensor(out, x_test, input_transform(rep.norm), device=device, amp=rep.amp)


class LabelledImages:
    """The labelled galaxies' images, left in the image store: ``images[positions]`` reads those
    (a training budget), ``stream(positions)`` streams them (a test set), so that no more than a
    budget's images are ever in memory, whatever the number of labelled galaxies."""

    def __init__(self, store, rows):
        self.store, self.rows = store, np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions) -> np.ndarray:
        return self.store.read_rows(self.rows[np.asarray(positions, dtype=np.int64)])

    def stream(self, positions):
        from .stream import StoreRows

        return StoreRows(self.store, self.rows[np.asarray(positions, dtype=np.int64)])


def _summarise(runs: pd.DataFrame) -> dict:
    """Per arm and budget, mean and sd over seeds of the test accuracy and ROC AUC, and over how many
    seeds each is defined (``<metric>_n``: ROC AUC is undefined where a test set lacks a class)."""
    summary = {}
    for arm, g in runs.groupby("arm", sort=False):
        summary[arm] = {}
        for b, gb in g.groupby("budget"):
            summary[arm][str(b)] = {}
            for k in ("accuracy", "balanced_accuracy", "roc_auc"):
                defined = gb[k].dropna()
                summary[arm][str(b)][f"{k}_mean"] = float(defined.mean()) if len(defined) else float("nan")
                summary[arm][str(b)][f"{k}_sd"] = float(defined.std(ddof=1)) if len(defined) > 1 else 0.0
                summary[arm][str(b)][f"{k}_n"] = int(len(defined))
            summary[arm][str(b)]["n_seeds"] = int(len(gb))
    return summary


def finetune_experiment(rep, images: np.ndarray | LabelledImages, embeddings: np.ndarray, labels: np.ndarray,
                        budgets, settings: FinetuneSettings, seed: int = 0, device: str = "auto", class_order=None):
    """All arms x budgets x ``settings.seeds`` seeds from ``seed``.  ``images``, ``embeddings`` and
    ``labels`` (class 0..K-1, -1 = unlabelled) are aligned.

    Per seed each class is shuffled (in ``class_order``, default: fewest galaxies first); a balanced
    test set of ``test_fraction`` of the first class's galaxies per class is held out, and a budget
    ``b`` trains on the next ``b`` galaxies of every class (nested sets).  ``rep`` is a
    :class:`gzmorph.represent.Representation`.  Returns ``(runs table, summary dict)``.
    """
    from .represent import flush_denormal
    from .train import pick_device

    unknown = set(settings.arms) - set(ARMS)
    if unknown:
        raise InputError(f"fine-tuning arms {sorted(unknown)} unknown; choose from {', '.join(ARMS)}")
    dev = pick_device(device)
    n_classes = int(labels.max()) + 1
    if class_order is None:
        class_order = sorted(range(n_classes), key=lambda k: int((labels == k).sum()))
    members = [np.flatnonzero(labels == k) for k in class_order]
    runs = []
    with flush_denormal():
        for s in range(seed, seed + settings.seeds):
            rng = np.random.default_rng(s)
            perms = [rng.permutation(m) for m in members]
            n_test = max(2, int(round(settings.test_fraction * len(perms[0]))))
            test = np.concatenate([p[:n_test] for p in perms])
            for b in budgets:
                tr = np.concatenate([p[n_test:][:b] for p in perms])
                for arm in settings.arms:
                    out = _arm_logits(arm, rep, images, embeddings, tr, test, labels[tr], n_classes, settings, s,
                                      dev)
                    m = label_metrics(out, labels[test], n_classes)
                    runs.append({"seed": int(s), "budget": int(b), "arm": arm, "n_train": int(len(tr)),
                                 "n_test": int(len(test)), **m})
                    log.info("seed %d budget %d %s: accuracy %.3f, balanced %.3f, AUC %.3f", s, b, arm,
                             m["accuracy"], m["balanced_accuracy"], m["roc_auc"])
    runs = pd.DataFrame(runs, columns=RUN_COLUMNS)
    return runs, _summarise(runs)


def task_labels(settings: FinetuneSettings, source: pd.DataFrame, curated: pd.DataFrame | None = None,
                curated_classes: list[str] | None = None) -> tuple[np.ndarray, list[str], str]:
    """``(labels aligned with source rows: 0..K-1 or -1, class names, the task in words)`` for
    ``settings.label``: ``rings`` (the ring rule on the votes), ``class`` (the curated cut's classes),
    or any column of the source catalogue (categories as they are; a fractional column split at
    ``settings.threshold`` into below/at-or-above)."""
    if settings.label == "rings":
        return ring_labels(source, settings), ["not ring", "ring"], "ring vs not ring"
    if settings.label == "class":
        if curated is None:
            raise InputError("represent.finetune.label: class needs the curated catalogue")
        codes = curated.set_index("id")["label"].reindex(source["id"].to_numpy())
        return codes.fillna(-1).to_numpy(np.int64), list(curated_classes), "the curated cut's classes"
    from .cuts import source_column

    name, col = settings.label, source_column(source, settings.label)
    if col not in source.columns:
        raise InputError(f"represent.finetune.label: no column {name!r} in the source catalogue "
                         f"(choose rings, class or one of {', '.join(map(str, source.columns[:12]))} ...)")
    values = source[col]
    known = values.notna() & (values.astype(str).str.strip() != "")
    if settings.threshold is not None:
        x = pd.to_numeric(values, errors="coerce")
        if x[known].isna().any():
            raise InputError(f"represent.finetune: column {name!r} has non-numeric values "
                             f"(e.g. {values[known & x.isna()].iloc[0]!r}) but threshold is set")
        labels = np.where(x.notna(), (x >= settings.threshold).astype(np.int64), -1)
        t = f"{settings.threshold:g}"
        return labels, [f"{name} < {t}", f"{name} >= {t}"], f"{name} below vs at or above {t}"
    x = pd.to_numeric(values, errors="coerce")
    if known.any() and x[known].notna().all() and (x[known] % 1 != 0).any():
        raise InputError(f"represent.finetune: column {name!r} holds fractions: set "
                         f"represent.finetune.threshold to split it into two classes")
    names = sorted(values[known].astype(str).unique())
    pos = {n: i for i, n in enumerate(names)}
    labels = np.array([pos[str(v)] if k else -1 for v, k in zip(values, known)], dtype=np.int64)
    return labels, names, f"the classes of column {name!r}"


def _task_data(images_path, embeddings_path, source_path, curated_path, settings: FinetuneSettings):
    """Images (:class:`LabelledImages`, read when used), embeddings, labels (0..K-1) and class
    names of the galaxies the task labels."""
    from .imageset import ImageStore
    from .represent import embedding_ids, read_embeddings

    source = pd.read_parquet(source_path)
    ids = embedding_ids(embeddings_path)
    curated, classes = None, None
    if settings.label == "class":
        from .classify import read_catalogue

        curated, classes, _ = read_catalogue(curated_path)
    labels, names, task = task_labels(settings, source.set_index("id").reindex(ids).reset_index(), curated, classes)
    sel = np.flatnonzero(labels >= 0)
    _, emb = read_embeddings(embeddings_path, rows=sel)  # the labelled galaxies' vectors only
    store = ImageStore(images_path)
    return LabelledImages(store, store.rows_of(ids[sel])), emb, labels[sel], names, task


def run_finetune(model_path, images_path, embeddings_path, source_path, settings: FinetuneSettings,
                 seed: int = 0, device: str = "auto", curated_path=None):
    """The ``finetune`` rule: labels (``settings.label``), budgets, all arms.  Returns
    ``(metrics dict, runs table)``."""
    from .represent import load_representation

    images, emb, labels, names, task = _task_data(images_path, embeddings_path, source_path, curated_path, settings)
    counts = [int((labels == k).sum()) for k in range(len(names))]
    present = [k for k in range(len(names)) if counts[k]]
    if len(present) < 2:
        raise InputError(f"fine-tuning ({task}): labelled galaxies of {len(present)} class(es) only: "
                         f"{dict(zip(names, counts))}")
    rings = settings.label == "rings"
    order = [1, 0] if rings else sorted(range(len(names)), key=lambda k: counts[k])
    n_test = max(2, int(round(settings.test_fraction * counts[order[0]])))
    available = max(0, min(counts) - n_test)
    what = "rings" if rings else "labels per class"
    if available < 1 and settings.budgets not in ("auto", None):
        raise InputError(f"fine-tuning ({task}): {dict(zip(names, counts))}: too few to hold out a test set of "
                         f"{n_test} per class and train on budgets {settings.budgets}")
    budgets, notes = plan_budgets(settings.budgets, available, settings.min_budget, settings.max_budget,
                                  settings.budget_factor, what)
    metrics = {"task": task, "label": settings.label, "classes": names, "class_counts": counts,
               "n_test_per_class": n_test, "available_for_training": int(available), "budgets": budgets,
               "notes": notes}
    if rings:
        metrics.update(rule=settings.describe_rings(), n_rings=counts[1], n_not_rings=counts[0])
    if not budgets:
        why = (f"no fine-tuning run: {available} {what} left for training after the test set, fewer than the "
               f"smallest budget {settings.min_budget}")
        metrics["notes"] = [*notes, why]
        metrics.update(seeds=[], steps=settings.steps, head_steps=settings.head_steps, arms={})
        return metrics, pd.DataFrame(columns=RUN_COLUMNS)
    rep = load_representation(model_path, "cpu")
    runs, summary = finetune_experiment(rep, images, emb, labels, budgets, settings, seed, device, order)
    metrics.update(seeds=list(range(seed, seed + settings.seeds)), steps=settings.steps,
                   head_steps=settings.head_steps, arms=summary)
    return metrics, runs
