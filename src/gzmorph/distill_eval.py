"""Evaluation of distilled sets and their baselines by the protocol of MTT/STM.

Fresh ConvNets (``cfg.n_nets``, seeded) are trained on a synthetic set at its learned step size,
or on a baseline (``random`` real images per class, ``mean`` class-mean images, the ``full``
training split), with SGD and the stage's augmentation, and tested on the real test split:
accuracy and balanced accuracy (the mean of the per-class recalls), each as mean, sd and runs.

The ``full`` baseline is trained by the same protocol (optimiser, augmentation, schedule) for at
most ``full_epochs``, stopping on the validation split (``full_patience``) with its best epoch kept.

Learning rate over the ``E = cfg.epochs`` epochs: one α, α then α × 0.1 from halfway; one α per
start epoch (STM's ``alpha_per_epoch``), as Guan et al.'s ``evaluate_synset``: the pieces α_0 …
α_{k−1} for max(N, (E/2) / k) epochs each (N: the distillation's student steps), then E/2
epochs at α_{k−1} × 0.1 (their code: 500 epochs per the pieces' budget and 500 at × 0.1).

Resuming (``work_dir``): a finished net's test figures go to ``<work>/net<k>.json``, and the
full-data nets, whose epochs are long, also keep :func:`gzmorph.train.fit`'s end-of-epoch
checkpoint in ``<work>/net<k>/`` (a net on a distilled or baseline set of a few images per class
runs an epoch in one step or two, where a checkpoint would cost more than the step).  A killed
evaluation (a Slurm time-out) takes the finished nets from there and continues the full-data net
it was training from its last epoch; each net is seeded by its index alone, so the figures equal
an uninterrupted run's (bit-identical on the CPU).  Both are used only by the evaluation that wrote
them: the same training set (its bytes), data, model, protocol, seed and code version
(:func:`eval_identity`); anything else is set aside with one log line.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .distill import convnet, mean_per_class, real_per_class
from .distill_settings import DistillSettings, EvalConfig
from .experts import Data, accuracy, balanced_accuracy
from .io import InputError, one_line, read_json, write_json

__all__ = ["EvalConfig", "balanced_accuracy", "eval_record", "evaluate_baseline", "evaluate_synthetic",
           "piece_epochs", "summary", "train_eval_nets"]
AUGMENT, CUTOUT = DistillSettings.augment, DistillSettings.cutout
log = logging.getLogger(__name__)


def piece_epochs(n_pieces: int, epochs: int, syn_steps: int) -> tuple[int, int]:
    """Epochs per piece of a per-epoch α schedule and the epochs of its tail at × 0.1."""
    half = max(1, int(epochs) // 2)
    return max(int(syn_steps), half // max(1, n_pieces)), half


def _schedule(epochs: int, pieces: list[float] | None, per_piece: int = 0):
    """Scheduler factory: ×0.1 halfway, or the pieces (``per_piece`` epochs each), then × 0.1 of the last."""
    def make(opt, steps_per_epoch, n_epochs):
        total = max(1, steps_per_epoch * n_epochs)
        if pieces:
            base = opt.param_groups[0]["lr"]

            def factor(step):
                j = step // max(1, steps_per_epoch * per_piece)
                return (pieces[j] if j < len(pieces) else pieces[-1] * 0.1) / base
        else:
            def factor(step):
                return 1.0 if step < total // 2 else 0.1
        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return make


def eval_identity(x, y, data: Data, model_config: dict, lr: float, epochs: int, cfg: EvalConfig, seed: int,
                  **protocol) -> str:
    """What makes two evaluations the same one, as a short hash: the training set's bytes and labels,
    the data (its fingerprint, the test and validation images and labels), the model, step size,
    epochs, the evaluation settings, the seed, the rest of the protocol and the gzmorph code version."""
    from .codedeps import package_hash
    from .train import fingerprint

    def array(t):
        return None if t is None else torch.as_tensor(t).detach().cpu().contiguous().numpy()

    return fingerprint(array(x), array(y), data.fingerprint, array(data.x_test), array(data.y_test),
                       array(data.x_val), array(data.y_val),
                       model_config, float(lr), int(epochs), asdict(cfg), int(seed), protocol, package_hash())


def _finished_net(path: Path, identity: str) -> dict | None:
    """A finished net's record in the work folder, if this evaluation wrote it (else set aside)."""
    if not path.exists():
        return None
    try:
        rec = read_json(path)
        if isinstance(rec, dict) and rec.get("identity") == identity:
            return rec
        why = "of another evaluation"
    except Exception as err:  # noqa: BLE001 - a damaged file is not a result
        why = f"unreadable ({one_line(err)})"
    log.warning("%s: finished net %s; training it again", path, why)
    path.unlink(missing_ok=True)
    return None


def train_eval_nets(x, y, data: Data, model_config: dict, lr: float, epochs: int, cfg: EvalConfig, seed: int,
                    *, augment=AUGMENT, cutout=CUTOUT, pieces=None, syn_steps: int = 0,
                    batch_size=None, val=None, patience: int = 0, progress: bool = False,
                    work_dir=None, epoch_checkpoints: bool = False) -> dict:
    """``{"accuracy": [...], "balanced_accuracy": [...]}`` on the test split of ``cfg.n_nets`` fresh
    ConvNets trained on (x, y) by the evaluation protocol (``pieces``: one α per start epoch).
    With ``val`` = (x, y) and ``patience``, each net stops after ``patience`` epochs without a better
    validation accuracy and keeps its best epoch (training to convergence, judged on validation).
    ``progress``: each epoch's line in the log (the full-data nets, the long ones).
    ``work_dir``: finished nets (and with ``epoch_checkpoints`` each net's last epoch), from which a
    killed evaluation resumes (module docstring); the caller removes it once its output is written."""
    from .train import discard_checkpoints, fit, pick_device, predict_tensor

    device = pick_device(cfg.device)
    transform = data.transform(augment, cutout)
    per_piece = 0
    if pieces:
        per_piece, tail = piece_epochs(len(pieces), epochs, syn_steps)
        epochs = per_piece * len(pieces) + tail
    batch_size = batch_size or cfg.batch_size
    work = Path(work_dir) if work_dir else None
    identity = None if work is None else eval_identity(
        x, y, data, model_config, lr, epochs, cfg, seed, augment=augment, cutout=cutout, pieces=pieces,
        batch_size=batch_size, patience=patience, val=val is not None and val[0] is not None)

    def train_and_test(k: int) -> dict:
        """Net ``k``, seeded by its index alone (with ``epoch_checkpoints``, from its checkpoint)."""
        torch.manual_seed(seed * 1009 + k)
        net = convnet(model_config)
        lr0 = float(pieces[0]) if pieces else float(lr)
        checkpoint = work / f"net{k}" if work and epoch_checkpoints else None
        result = fit(net, F.cross_entropy, (x, y), epochs=epochs, batch_size=batch_size, seed=seed * 1009 + k,
                     optimizer=lambda p: torch.optim.SGD(p, lr=lr0, momentum=cfg.momentum,
                                                         weight_decay=cfg.weight_decay),
                     scheduler=_schedule(epochs, pieces, per_piece), transform=transform, device=device, amp=False,
                     progress=progress, checkpoint_dir=checkpoint,
                     meta={"model": "convnet_d3", "model_config": model_config, "classes": data.classes,
                           "fingerprint": f"{identity}/net{k}"}, **_stopping(val, patience))
        out = predict_tensor(net, data.x_test, transform, device=device, amp=False)
        done = {"accuracy": accuracy(out, data.y_test), "balanced_accuracy": balanced_accuracy(out, data.y_test),
                "run": {"epochs_run": len(result.history), "best_epoch": result.best_epoch,
                        "stopped_early": bool(result.stopped_early)}}
        if work:
            write_json(work / f"net{k}.json", {"identity": identity, **done})
            discard_checkpoints(checkpoint)
        return done

    accs, balanced, runs = [], [], []
    for k in range(cfg.n_nets):
        done = None if work is None else _finished_net(work / f"net{k}.json", identity)
        if done:
            log.info("net %d: finished before, from %s", k, work / f"net{k}.json")
        else:
            done = train_and_test(k)
        accs.append(done["accuracy"])
        balanced.append(done["balanced_accuracy"])
        runs.append(done["run"])
        log.info("net %d: test accuracy %.4f, balanced %.4f (%d of %d epochs%s)", k, accs[-1], balanced[-1],
                 runs[-1]["epochs_run"], epochs, f", best {runs[-1]['best_epoch']}, stopped early"
                 if runs[-1]["stopped_early"] else "")
    return {"accuracy": accs, "balanced_accuracy": balanced, "epochs": epochs, "nets": runs}


def _stopping(val, patience: int) -> dict:
    """``fit``'s early-stopping arguments: on validation accuracy with ``val`` and ``patience``, else none."""
    if val is None or val[0] is None or len(val[0]) == 0 or patience <= 0:
        return {"val": None, "restore_best": False}
    return {"val": val, "patience": int(patience), "monitor": "val_accuracy", "mode": "max", "restore_best": True,
            "metrics_fn": lambda out, y: {"accuracy": accuracy(out, y)}}


def _stats(values: list[float]) -> tuple[float, float, list[float]]:
    a = np.asarray(values, float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, a.tolist()


def summary(accs) -> dict:
    """``mean``, ``sd`` and ``runs`` of the accuracies (a list, or :func:`train_eval_nets`' dict, which
    adds ``balanced_accuracy_mean``, ``_sd`` and ``_runs``)."""
    if isinstance(accs, dict):
        out = summary(accs["accuracy"])
        out.update(zip(("balanced_accuracy_mean", "balanced_accuracy_sd", "balanced_accuracy_runs"),
                       _stats(accs["balanced_accuracy"])))
        return out
    return dict(zip(("mean", "sd", "runs"), _stats(accs)))


def evaluate_synthetic(syn: dict, data: Data, cfg: EvalConfig, seed: int, augment=AUGMENT, cutout=CUTOUT,
                       work_dir=None) -> dict:
    """Accuracy of nets trained on a distilled set at its learned step size α (with one α per start
    epoch: the pieces of the module docstring over the epochs the distillation reached)."""
    alpha = syn["alpha"].flatten().tolist()
    pieces = None
    if len(alpha) > 1:
        used = syn.get("alpha_epochs_used") or len(alpha)
        pieces = alpha[:used]
    syn_steps = int((syn.get("config") or {}).get("syn_steps", 0))
    accs = train_eval_nets(syn["images"], syn["labels"], data, syn["model_config"], alpha[0], cfg.epochs, cfg,
                           seed, augment=augment, cutout=cutout, pieces=pieces, syn_steps=syn_steps,
                           work_dir=work_dir)
    return summary(accs)


def evaluate_baseline(kind: str, ipc: int, data: Data, model_config: dict, cfg: EvalConfig, seed: int,
                      augment=AUGMENT, cutout=CUTOUT, work_dir=None) -> dict:
    """``random`` (ipc random real images per class), ``mean`` (class means) or ``full`` (all training
    data); ``work_dir``: resumable, as :func:`train_eval_nets`."""
    if kind == "random":
        x, y = real_per_class(data, ipc, seed + 17)
        accs = train_eval_nets(x, y, data, model_config, cfg.baseline_lr, cfg.epochs, cfg, seed,
                               augment=augment, cutout=cutout, work_dir=work_dir)
    elif kind == "mean":
        x, y = mean_per_class(data, ipc, seed + 17)
        accs = train_eval_nets(x, y, data, model_config, cfg.baseline_lr, cfg.epochs, cfg, seed,
                               augment=augment, cutout=cutout, work_dir=work_dir)
    elif kind == "full":
        accs = train_eval_nets(data.x_train, data.y_train, data, model_config, cfg.full_lr, cfg.full_epochs,
                               cfg, seed, augment=augment, cutout=cutout, batch_size=cfg.full_batch_size,
                               val=(data.x_val, data.y_val), patience=cfg.full_patience, progress=True,
                               work_dir=work_dir, epoch_checkpoints=True)
    else:
        raise InputError(f"unknown baseline {kind!r}: random | mean | full")
    out = {"baseline": kind, "ipc": ipc if kind != "full" else None, **summary(accs),
           "n_test": int(len(data.y_test))}
    if kind == "full":  # whether each net stopped on validation, or ran out of epochs before it converged
        out["training"] = {"epochs_cap": accs["epochs"], "patience": cfg.full_patience, "nets": accs["nets"]}
    return out


BALANCED = ("balanced_accuracy_mean", "balanced_accuracy_sd")


def eval_record(syn: dict, acc: dict, baselines: dict, n_test: int, experts_final=None) -> dict:
    """The ``eval.json`` of a synthetic set: accuracy and balanced accuracy (mean, sd, runs), the
    baselines' (mean, sd and balanced mean, sd) and the experts' final test accuracy."""
    return {"method": syn["method"], "ipc": syn["ipc"], "accuracy_mean": acc["mean"], "accuracy_sd": acc["sd"],
            "accuracy_runs": acc["runs"], "balanced_accuracy_mean": acc.get("balanced_accuracy_mean"),
            "balanced_accuracy_sd": acc.get("balanced_accuracy_sd"),
            "balanced_accuracy_runs": acc.get("balanced_accuracy_runs"), "alpha": syn["alpha"].flatten().tolist(),
            "baselines": {k: {"mean": v["mean"], "sd": v["sd"], **{b: v.get(b) for b in BALANCED}}
                          for k, v in baselines.items()},
            "experts_final_test_accuracy": experts_final, "n_test": int(n_test),
            "distill_seconds": syn.get("seconds"), "iterations": syn.get("iterations"),
            "final_cap": syn.get("final_cap"), "image_size": syn["image_size"]}
