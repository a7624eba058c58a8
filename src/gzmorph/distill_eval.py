"""Evaluation of distilled sets and their baselines by the protocol of MTT/STM.

Fresh ConvNets (``cfg.n_nets``, seeded) are trained on a synthetic set at its learned step size,
or on a baseline (``random`` real images per class, ``mean`` class-mean images, the ``full``
training split), with SGD and the stage's augmentation, and tested on the real test split.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from .distill import convnet, mean_per_class, real_per_class
from .distill_settings import DistillSettings, EvalConfig
from .experts import Data, accuracy
from .io import InputError

__all__ = ["EvalConfig", "eval_record", "evaluate_baseline", "evaluate_synthetic", "summary", "train_eval_nets"]
AUGMENT, CUTOUT = DistillSettings.augment, DistillSettings.cutout
log = logging.getLogger(__name__)


def _schedule(epochs: int, pieces: list[float] | None):
    """Scheduler factory: ×0.1 halfway, or a piecewise-constant α schedule over training."""
    def make(opt, steps_per_epoch, n_epochs):
        total = max(1, steps_per_epoch * n_epochs)
        if pieces:
            base = opt.param_groups[0]["lr"]

            def factor(step):
                j = min(int(step * len(pieces) / total), len(pieces) - 1)
                return pieces[j] / base
        else:
            def factor(step):
                return 1.0 if step < total // 2 else 0.1
        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return make


def train_eval_nets(x, y, data: Data, model_config: dict, lr: float, epochs: int, cfg: EvalConfig, seed: int,
                    *, augment=AUGMENT, cutout=CUTOUT, pieces=None, batch_size=None) -> list[float]:
    """Test accuracies of ``cfg.n_nets`` fresh ConvNets trained on (x, y) by the evaluation protocol."""
    from .train import fit, pick_device, predict_tensor

    device = pick_device(cfg.device)
    transform = data.transform(augment, cutout)
    accs = []
    for k in range(cfg.n_nets):
        torch.manual_seed(seed * 1009 + k)
        net = convnet(model_config)
        lr0 = float(pieces[0]) if pieces else float(lr)
        fit(net, F.cross_entropy, (x, y), None, epochs=epochs, batch_size=batch_size or cfg.batch_size,
            seed=seed * 1009 + k,
            optimizer=lambda p, lr0=lr0: torch.optim.SGD(p, lr=lr0, momentum=cfg.momentum,
                                                         weight_decay=cfg.weight_decay),
            scheduler=_schedule(epochs, pieces), transform=transform, restore_best=False, device=device,
            amp=False, progress=False)
        out = predict_tensor(net, data.x_test, transform, device=device, amp=False)
        accs.append(accuracy(out, data.y_test))
        log.info("net %d: test accuracy %.4f", k, accs[-1])
    return accs


def summary(accs: list[float]) -> dict:
    a = np.asarray(accs, float)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "runs": a.tolist()}


def evaluate_synthetic(syn: dict, data: Data, cfg: EvalConfig, seed: int, augment=AUGMENT, cutout=CUTOUT) -> dict:
    """Accuracy of nets trained on a distilled set at its learned step size α (with one α per start
    epoch: a piecewise-constant lr over the epochs the distillation reached)."""
    alpha = syn["alpha"].flatten().tolist()
    pieces = None
    if len(alpha) > 1:
        used = syn.get("alpha_epochs_used") or len(alpha)
        pieces = alpha[:used]
    accs = train_eval_nets(syn["images"], syn["labels"], data, syn["model_config"], alpha[0], cfg.epochs, cfg,
                           seed, augment=augment, cutout=cutout, pieces=pieces)
    return summary(accs)


def evaluate_baseline(kind: str, ipc: int, data: Data, model_config: dict, cfg: EvalConfig, seed: int,
                      augment=AUGMENT, cutout=CUTOUT) -> dict:
    """``random`` (ipc random real images per class), ``mean`` (class means) or ``full`` (all training data)."""
    if kind == "random":
        x, y = real_per_class(data, ipc, seed + 17)
        accs = train_eval_nets(x, y, data, model_config, cfg.baseline_lr, cfg.epochs, cfg, seed,
                               augment=augment, cutout=cutout)
    elif kind == "mean":
        x, y = mean_per_class(data, ipc, seed + 17, data.transform(False, 0))
        accs = train_eval_nets(x, y, data, model_config, cfg.baseline_lr, cfg.epochs, cfg, seed,
                               augment=augment, cutout=cutout)
    elif kind == "full":
        accs = train_eval_nets(data.x_train, data.y_train, data, model_config, cfg.full_lr, cfg.full_epochs,
                               cfg, seed, augment=augment, cutout=cutout, batch_size=cfg.full_batch_size)
    else:
        raise InputError(f"unknown baseline {kind!r}: random | mean | full")
    return {"baseline": kind, "ipc": ipc if kind != "full" else None, **summary(accs),
            "n_test": int(len(data.y_test))}


def eval_record(syn: dict, acc: dict, baselines: dict, n_test: int, experts_final=None) -> dict:
    return {"method": syn["method"], "ipc": syn["ipc"], "accuracy_mean": acc["mean"], "accuracy_sd": acc["sd"],
            "accuracy_runs": acc["runs"], "alpha": syn["alpha"].flatten().tolist(),
            "baselines": {k: {"mean": v["mean"], "sd": v["sd"]} for k, v in baselines.items()},
            "experts_final_test_accuracy": experts_final, "n_test": int(n_test),
            "distill_seconds": syn.get("seconds"), "iterations": syn.get("iterations"),
            "final_cap": syn.get("final_cap"), "image_size": syn["image_size"]}
