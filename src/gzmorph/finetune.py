"""Fine-tuning the representation from few labels: rings (Walmsley et al. 2022, §6).

Ring: ``Class6.1 >= min_odd`` and ring share of the odd votes ``Class8.1 / Class6.1 >
ring_min``; not ring: ``Class8.1 / Class6.1 < not_ring_max`` (0 where nobody answered
question 8); both among featured, face-on galaxies (``Class2.2 >= min_face_on``).  Per seed a
balanced test set of ``test_fraction`` of the rings (and as many non-rings) is held out; the
training sets are nested balanced sets of ``budget`` rings + ``budget`` non-rings.  Arms:
``frozen`` (fixed representation + a linear head), ``finetuned`` (representation + a new head,
all weights trained), ``scratch`` (the same architecture from random weights); all trained by
:func:`gzmorph.train.fit` for a fixed number of optimiser steps.
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

RUN_COLUMNS = ["seed", "budget", "arm", "n_train", "n_test", "accuracy", "roc_auc"]




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
                 factor: float = FinetuneSettings.budget_factor) -> tuple[list[int], list[str]]:
    """Label budgets (positives per training set) and notes on the ones skipped.

    ``budgets="auto"``: ``min_budget x factor^i`` up to ``max_budget``; those above the available
    positives are skipped with a note.  An explicit list is taken as asked: a budget above the
    available positives is an ``InputError``.
    """
    if budgets in ("auto", None):
        cand, b = [], float(min_budget)
        while b <= max_budget + 1e-9:
            cand.append(int(round(b)))
            b *= factor
        keep = [b for b in cand if b <= n_available]
        notes = [f"budget {b} skipped: only {n_available} rings available for training" for b in cand if b > n_available]
        return keep, notes
    budgets = sorted(int(b) for b in budgets)
    too_big = [b for b in budgets if b > n_available]
    if too_big:
        raise InputError(f"fine-tuning label budget(s) {too_big} exceed the {n_available} rings available for "
                         "training (after holding out the test set); lower represent.finetune.budgets")
    if any(b < 1 for b in budgets):
        raise InputError(f"fine-tuning label budgets must be >= 1, got {budgets}")
    return budgets, []


def _binary_metrics(logits, y: np.ndarray) -> dict:
    """Accuracy and ROC AUC of two-class logits against labels ``y`` (AUC NaN with one class)."""
    import torch
    from sklearn.metrics import roc_auc_score

    p = torch.softmax(logits.float(), 1)[:, 1].numpy()
    acc = float(((p > 0.5).astype(int) == y).mean())
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    return {"accuracy": acc, "roc_auc": auc}


def _epochs(steps: int, n: int, batch_size: int) -> tuple[int, int]:
    """``(batch size, epochs)`` that give at least ``steps`` optimiser steps over ``n`` examples."""
    bs = max(2, min(batch_size, n))
    return bs, max(1, math.ceil(steps / max(1, n // bs)))


def _frozen_arm(embeddings, tr, test, y_tr, settings: FinetuneSettings, seed, device):
    """A linear head on the standardised frozen embeddings; its logits on the test set."""
    import torch

    from .train import fit, predict_tensor

    e_tr = torch.from_numpy(embeddings[tr])
    mu, sd = e_tr.mean(0), e_tr.std(0).clamp_min(1e-6)
    head = torch.nn.Linear(embeddings.shape[1], 2)
    bs, epochs = _epochs(settings.head_steps, len(tr), settings.batch_size)
    fit(head, torch.nn.CrossEntropyLoss(), ((e_tr - mu) / sd, torch.as_tensor(y_tr)), None,
        epochs=epochs, batch_size=bs, seed=seed,
        optimizer=lambda p: torch.optim.AdamW(p, lr=settings.lr_head, weight_decay=1e-2),
        device=device, progress=False)
    return predict_tensor(head, (torch.from_numpy(embeddings[test]) - mu) / sd, device=device)


def _image_arm(model, images, tr, test, y_tr, settings: FinetuneSettings, norm, lr_groups, seed, device):
    """Train ``model`` on the training images (parameter groups ``lr_groups(model)``); its logits
    on the test images."""
    import torch

    from . import augment as A
    from .train import fit, predict_tensor

    bs, epochs = _epochs(settings.steps, len(tr), settings.batch_size)
    transform = A.BatchTransform(norm["mean"], norm["std"], A.AugmentConfig.from_value(settings.augment))
    fit(model, torch.nn.CrossEntropyLoss(), (torch.from_numpy(images[tr]), torch.as_tensor(y_tr)), None,
        epochs=epochs, batch_size=bs, seed=seed, optimizer=lambda p: torch.optim.AdamW(lr_groups(model)),
        transform=transform, device=device, progress=False)
    return predict_tensor(model, torch.from_numpy(images[test]), transform, device=device)


def _arm_logits(arm: str, rep, images, embeddings, tr, test, y_tr, settings: FinetuneSettings, seed, device):
    """Train one arm on the galaxies ``tr``; its logits on ``test``."""
    import torch

    from .models import create_model

    torch.manual_seed(seed)
    if arm == "frozen":
        return _frozen_arm(embeddings, tr, test, y_tr, settings, seed, device)
    if arm == "finetuned":
        model = copy.deepcopy(rep.model).cpu()
        model.head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(model.num_features, 2))
        return _image_arm(model, images, tr, test, y_tr, settings, rep.norm,
                          lambda m: [{"params": m.backbone.parameters(), "lr": settings.lr_finetune},
                                     {"params": m.head.parameters(), "lr": settings.lr}], seed, device)
    c = dict(rep.bundle["model_config"])
    model = create_model(c.pop("name"), 2, c.pop("image_size"), **{k: v for k, v in c.items() if k != "num_classes"})
    return _image_arm(model, images, tr, test, y_tr, settings, rep.norm,
                      lambda m: [{"params": m.parameters(), "lr": settings.lr}], seed, device)


def _summarise(runs: pd.DataFrame) -> dict:
    """Per arm and budget, mean and sd over seeds of the test accuracy and ROC AUC."""
    summary = {}
    for arm, g in runs.groupby("arm", sort=False):
        summary[arm] = {}
        for b, gb in g.groupby("budget"):
            summary[arm][str(b)] = {}
            for k in ("accuracy", "roc_auc"):
                summary[arm][str(b)][f"{k}_mean"] = float(gb[k].mean())
                summary[arm][str(b)][f"{k}_sd"] = float(gb[k].std(ddof=1)) if len(gb) > 1 else 0.0
            summary[arm][str(b)]["n_seeds"] = int(len(gb))
    return summary


def finetune_experiment(rep, images: np.ndarray, embeddings: np.ndarray, labels: np.ndarray, budgets,
                        settings: FinetuneSettings, seed: int = 0, device: str = "auto"):
    """All arms x budgets x ``settings.seeds`` seeds from ``seed``.  ``images``, ``embeddings`` and
    ``labels`` (1/0/-1) are aligned.

    ``rep`` is a :class:`gzmorph.represent.Representation`.  Returns ``(runs table, summary dict)``.
    """
    from .represent import flush_denormal
    from .train import pick_device

    unknown = set(settings.arms) - set(ARMS)
    if unknown:
        raise InputError(f"fine-tuning arms {sorted(unknown)} unknown; choose from {', '.join(ARMS)}")
    dev = pick_device(device)
    pos_all, neg_all = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    runs = []
    with flush_denormal():
        for s in range(seed, seed + settings.seeds):
            rng = np.random.default_rng(s)
            pos, neg = rng.permutation(pos_all), rng.permutation(neg_all)
            n_test = max(2, int(round(settings.test_fraction * len(pos))))
            test = np.concatenate([pos[:n_test], neg[:n_test]])
            for b in budgets:
                tr = np.concatenate([pos[n_test:][:b], neg[n_test:][:b]])
                for arm in settings.arms:
                    out = _arm_logits(arm, rep, images, embeddings, tr, test, labels[tr], settings, s, dev)
                    m = _binary_metrics(out, labels[test])
                    runs.append({"seed": int(s), "budget": int(b), "arm": arm, "n_train": int(len(tr)),
                                 "n_test": int(len(test)), **m})
                    log.info("seed %d budget %d %s: accuracy %.3f, AUC %.3f", s, b, arm, m["accuracy"],
                             m["roc_auc"])
    runs = pd.DataFrame(runs)
    return runs, _summarise(runs)


def _ring_data(images_path, embeddings_path, source_path, settings: FinetuneSettings):
    """Images, embeddings and ring labels (1/0) of the galaxies the ring rule labels."""
    from .imageset import read_images
    from .represent import read_embeddings

    source = pd.read_parquet(source_path)
    ids, emb = read_embeddings(embeddings_path)
    img_ids, imgs = read_images(images_path)
    labels = ring_labels(source.set_index("id").reindex(ids).reset_index(), settings)
    sel = np.flatnonzero(labels >= 0)
    pos_img = pd.Series(np.arange(len(img_ids)), index=img_ids)
    return imgs[pos_img.loc[ids[sel]].to_numpy()], emb[sel], labels[sel]


def run_finetune(model_path, images_path, embeddings_path, source_path, settings: FinetuneSettings,
                 seed: int = 0, device: str = "auto"):
    """The ``finetune`` rule: ring labels from the source votes, budgets, all arms.  Returns
    ``(metrics dict, runs table)``."""
    from .represent import load_representation

    images, emb, labels = _ring_data(images_path, embeddings_path, source_path, settings)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    n_test = max(2, int(round(settings.test_fraction * n_pos)))
    available = max(0, min(n_pos, n_neg) - n_test)
    if available < 1 and settings.budgets not in ("auto", None):
        raise InputError(f"fine-tuning: {n_pos} rings and {n_neg} non-rings ({settings.describe_rings()}): too few "
                         f"to hold out a test set of {n_test} each and train on budgets {settings.budgets}")
    budgets, notes = plan_budgets(settings.budgets, available, settings.min_budget, settings.max_budget,
                                  settings.budget_factor)
    metrics = {"task": "ring vs not ring", "rule": settings.describe_rings(), "n_rings": n_pos,
               "n_not_rings": n_neg, "n_test_per_class": n_test, "available_for_training": int(available),
               "budgets": budgets, "notes": notes}
    if not budgets:
        metrics["notes"] = notes + [f"no fine-tuning run: {n_pos} rings leave {available} for training after the "
                                    f"test set, fewer than the smallest budget {settings.min_budget}"]
        metrics.update(seeds=[], steps=settings.steps, head_steps=settings.head_steps, arms={})
        return metrics, pd.DataFrame(columns=RUN_COLUMNS)
    rep = load_representation(model_path, "cpu")
    runs, summary = finetune_experiment(rep, images, emb, labels, budgets, settings, seed, device)
    metrics.update(seeds=list(range(seed, seed + settings.seeds)), steps=settings.steps,
                   head_steps=settings.head_steps, arms=summary)
    return metrics, runs
