"""The one training loop of gzmorph (classifier, distillation experts, representation, fine-tuning).

``fit`` takes everything that differs between those models as arguments: the
model, a loss function ``loss_fn(outputs, targets) -> scalar``, the data
(``x``: uint8 N×H×W×3 images, an in-memory tensor or rows of an image store
streamed in bounded memory, :class:`gzmorph.stream.StoreRows`; ``y`` anything
indexable by batch: labels, vote counts), a ``transform(x_batch, generator,
train)`` that turns a uint8 batch into model input (float conversion,
augmentation and normalisation happen on the whole batch, on the training
device), optimizer and scheduler factories, and a ``metrics_fn(outputs,
targets) -> dict`` run on the whole validation set.

Reproducibility: every random choice of epoch ``e`` (sampling order, the
augmentation generator, dropout) is seeded from ``(seed, e)``, so training
resumed from the end-of-epoch checkpoint gives the same weights as an
uninterrupted run (bit-identical on CPU).  The checkpoint ``last.pt`` (model,
optimizer, scheduler, scaler, RNG states, history, best metric, ``meta``) is
written atomically after every epoch, the best weights to ``best.pt`` and the
per-epoch table to ``metrics.tsv`` in the same directory.  Both hold only tensors
and plain values, and are read with ``torch.load(weights_only=True)``
(:func:`read_checkpoint`): a crafted checkpoint cannot run code.

Data-parallel (:mod:`gzmorph.distributed`): when the process runs as one rank of a job of N
(torchrun or srun set the environment; :func:`gzmorph.distributed.launch` starts them), ``fit``
joins the process group, wraps the model in ``DistributedDataParallel`` with BatchNorm over the
global batch, and every rank draws the same seeded *global* batches and trains on its contiguous
share of each.  A rank's loss is weighted by its share of the batch, so the averaged gradient is
the gradient of the global batch's mean loss: N ranks give the weights one process gives with the
same ``batch_size`` (up to floating point; dropout draws per rank).  The augmentation of a global
batch is drawn once (``transform.sample``/``apply``) and each rank applies its share of it.
Validation predictions are split among the ranks and gathered; the training loss is summed over
ranks; rank 0's epoch row is what every rank decides early stopping on.  Rank 0 alone writes the
checkpoints, the table and log lines and shows progress; every rank resumes from the same
``last.pt`` (its RNG states are rank 0's; each epoch reseeds from ``(seed, epoch)`` anyway, so a
checkpoint also resumes under another number of ranks).  Every rank reads the whole of each global
batch and keeps its share: simple and exact, at the price of reading N times.  A global batch
smaller than the number of ranks (only a last one can be) is skipped on every rank.

A checkpoint is resumed only by the run that wrote it: its ``meta`` (model, config, classes and
the caller's ``fingerprint`` of settings, ids, labels and image content) and the library's code
version must equal the resuming run's.  Any other checkpoint is set aside with one log line and
training starts afresh.  Callers remove the checkpoints once the finished model is written
(:func:`discard_checkpoints`), so a later run never mistakes them for its own.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .codedeps import package_hash
from .io import atomic_path, one_line

log = logging.getLogger(__name__)

# meta keys that must agree between a checkpoint and the run resuming from it
RESUME_KEYS = ("model", "model_config", "classes", "fingerprint", "code_version", "precision")


@dataclass
class FitResult:
    history: list[dict]  # one row per epoch (the metrics table)
    best_epoch: int | None
    best_metric: float | None
    stopped_early: bool
    checkpoint_dir: Path | None
    meta: dict = field(default_factory=dict)


def pick_device(device: str | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if available, else CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def recorded_amp(bundle: dict) -> str:
    """The precision a model file's network trained at (its config's ``amp``), which embedding and
    fine-tuning from it keep; files without one: ``auto``."""
    return str((bundle.get("config") or {}).get("amp", "auto"))


def amp_dtype(device: torch.device, amp: str | bool = "auto"):
    """Autocast dtype: bf16 (or fp16 without bf16 support) on CUDA; ``None`` (fp32) on CPU."""
    if device.type != "cuda" or amp in (False, "off", "none", None):
        return None
    if amp == "fp16" or (amp in (True, "auto") and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def batch_order(n: int, batch_size: int, gen: torch.Generator, sample_weights=None) -> list[torch.Tensor]:
    """Index batches of one epoch: a permutation, or weighted draws with replacement; drops a last batch of 1."""
    if sample_weights is None:
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.multinomial(sample_weights, n, replacement=True, generator=gen)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on one sample
        batches.pop()
    return batches


def _rng_states() -> dict:
    """Every RNG state, in types ``torch.load(weights_only=True)`` reads: tensors, plain values."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": name, "key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_states(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["name"], np.array(n["key"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(s["cuda"])


def write_table(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, keys, delimiter="\t", restval="")
        w.writeheader()
        w.writerows(rows)


def fingerprint(*parts) -> str:
    """A short hash of a run's defining parts: arrays by their bytes, anything else as JSON."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray) and p.dtype == object:
            p = p.astype(str)  # string ids: their text (an object array's bytes are addresses)
        h.update(np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else
                 json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def resume_mismatch(ckpt: dict, meta: dict) -> list[str]:
    """The ``RESUME_KEYS`` on which a checkpoint's run differs from this one (empty: same run)."""
    old = ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}
    return [k for k in RESUME_KEYS if old.get(k) != meta.get(k)]


def read_checkpoint(path: Path):
    """A checkpoint file as written by :func:`fit`, read weights-only: tensors and plain values, so
    that a crafted file cannot run code (it is refused with ``pickle.UnpicklingError``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(last: Path, meta: dict) -> dict | None:
    """The checkpoint at ``last`` if this run wrote it; else ``None``, with one log line saying why."""
    try:
        ck = read_checkpoint(last)
    except Exception as err:  # noqa: BLE001 - a truncated, foreign or crafted file is not a checkpoint
        log.warning("%s: unreadable checkpoint (%s); training from scratch", last, one_line(err))
        return None
    diff = resume_mismatch(ck, meta)
    if diff:
        log.info("%s: checkpoint of another run (%s differ); training from scratch", last, ", ".join(diff))
        return None
    return ck


def discard_checkpoints(checkpoint_dir: str | Path | None) -> None:
    """Remove a finished run's checkpoints: only an unfinished run is ever resumed."""
    if checkpoint_dir:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


@torch.no_grad()
def predict_tensor(model, x, transform=None, batch_size=256, device=None, amp="auto") -> torch.Tensor:
    """Model outputs (float32, CPU) for all of ``x`` (a tensor, or rows of an image store:
    :mod:`gzmorph.stream`), in order, in eval mode."""
    from .stream import as_rows

    device = device or next(model.parameters()).device
    dtype = amp_dtype(device, amp)
    model.eval()
    outs = []
    for xb in as_rows(x).ordered_batches(batch_size):
        xb = xb.to(device, non_blocking=True)
        xb = transform(xb, None, False) if transform else xb
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outs.append(model(xb).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def fit(model: torch.nn.Module, loss_fn: Callable, train: tuple, val: tuple | None = None, *,
        epochs: int = 10, batch_size: int = 64, seed: int = 0,
        optimizer: Callable = lambda params: torch.optim.AdamW(params, lr=1e-3),
        scheduler: Callable | None = None, transform: Callable | None = None,
        metrics_fn: Callable | None = None, monitor: str = "val_loss", mode: str = "min",
        patience: int | None = None, restore_best: bool = True, sample_weights=None,
        checkpoint_dir: str | Path | None = None, resume: bool = True, meta: dict | None = None,
        device: str | None = None, amp: str | bool = "auto", progress: bool = True,
        on_step: Callable | None = None, on_epoch_end: Callable | None = None,
        eval_batch_size: int = 256) -> FitResult:
    """Train ``model`` in place; return the per-epoch history.  See the module docstring.

    Early stopping: training stops after ``patience`` epochs in a row without an improvement of
    ``monitor`` (a key of the per-epoch row: ``val_loss`` or ``val_<metric>``; a tie of the metric
    with a lower ``val_loss`` counts as an improvement, :func:`improves`); with ``restore_best``
    the model ends with the weights of the best epoch.
    ``scheduler(optimizer, steps_per_epoch, epochs)`` returns a scheduler stepped after every
    optimizer step.  ``on_step(epoch, step, loss)`` and ``on_epoch_end(epoch, row, model)`` are
    callbacks (raising from one stops training; the last checkpoint stays resumable).
    """
    from . import distributed as D
    from .stream import as_rows, n_batches

    device = D.init(device) or pick_device(device)  # a rank of a DDP job gets its own device
    world, rank = D.world(), D.rank()
    progress = progress and rank == 0
    dtype = amp_dtype(device, amp)
    # the precision the epochs run in: a bf16 run's checkpoint is not continued in float32, nor back
    meta = {**(meta or {}), "code_version": package_hash(), "precision": str(dtype or torch.float32)}
    x, y = as_rows(train[0]), train[1]
    sign = 1.0 if mode == "min" else -1.0
    weights = None if sample_weights is None else torch.as_tensor(sample_weights, dtype=torch.double)
    steps_per_epoch = n_batches(len(x), batch_size)

    torch.manual_seed(seed)  # initial weights are the caller's; this seeds anything built below
    model.to(device)
    unsync = D.sync_batchnorm(model, device) if world > 1 else None
    try:
        net = D.wrap(model, device) if world > 1 else model
        opt = optimizer(model.parameters())
        loop = _Loop(model, loss_fn, opt, scheduler(opt, steps_per_epoch, epochs) if scheduler else None,
                     torch.amp.GradScaler(device.type, enabled=dtype == torch.float16), device, dtype, transform,
                     net, world, rank)
        return _fit_epochs(loop, x, y, val, epochs, batch_size, seed, metrics_fn, monitor, sign, patience,
                           restore_best, weights, steps_per_epoch, checkpoint_dir, resume, meta, amp, progress,
                           on_step, on_epoch_end, eval_batch_size)
    finally:
        if unsync is not None:
            unsync()


def improves(row: dict, monitor: str, sign: int, best: float | None, best_loss: float | None) -> bool:
    """Whether an epoch's ``row`` beats the best so far: a better ``monitor`` (``sign`` -1 for a
    metric to maximise), or, on a tie of a metric other than the loss, a lower ``val_loss``.  Accuracy
    on a small validation split ties often (95 galaxies give steps of 1 %); without the second rule
    a model still learning would be stopped at, and rolled back to, its first epoch of that score."""
    value = row.get(monitor)
    if value is None:
        return False
    if best is None or sign * value < sign * best:
        return True
    loss = row.get("val_loss")
    return (value == best and monitor != "val_loss" and loss is not None and best_loss is not None
            and loss < best_loss)


def _fit_epochs(loop, x, y, val, epochs, batch_size, seed, metrics_fn, monitor, sign, patience, restore_best,
                weights, steps_per_epoch, checkpoint_dir, resume, meta, amp, progress, on_step, on_epoch_end,
                eval_batch_size) -> FitResult:
    """``fit``'s epochs, from the resumed state (if any) to the end."""
    from . import distributed as D

    model, opt, device, world, rank = loop.model, loop.opt, loop.device, loop.world, loop.rank
    ckdir = Path(checkpoint_dir) if checkpoint_dir else None
    state = loop.resume(ckdir / "last.pt", meta) if ckdir and resume and (ckdir / "last.pt").exists() else None
    state = state or {"epoch": 0, "history": [], "best_metric": None, "best_epoch": None, "bad_epochs": 0,
                      "done": False}

    best_state = None
    while state["epoch"] < epochs and not state["done"]:
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(seed, epoch) + rank)  # dropout etc. (rank 0: as a single process)
        gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))  # sampling order
        aug_gen = torch.Generator(device=device).manual_seed(epoch_seed(seed + 1, epoch))  # augmentation
        batches = _tqdm(x.epoch_batches(batch_size, gen, weights), total=steps_per_epoch,
                        desc=f"epoch {epoch}/{epochs}", disable=not progress)
        row = {"epoch": epoch, "train_loss": loop.train_epoch(y, batches, aug_gen, epoch, on_step),
               "lr": opt.param_groups[0]["lr"]}
        if val is not None and len(val[0]):
            row.update(loop.validate(val, metrics_fn, eval_batch_size, amp))
        row["seconds"] = round(time.perf_counter() - t0, 3)
        if world > 1:
            row = D.broadcast_object(row)  # every rank decides on rank 0's row
        value = row.get(monitor)
        improved = improves(row, monitor, sign, state["best_metric"], state.get("best_loss"))
        if improved:
            state.update(best_metric=value, best_loss=row.get("val_loss"), best_epoch=epoch, bad_epochs=0)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["history"].append(row)
        state["done"] = patience is not None and value is not None and state["bad_epochs"] >= patience
        if progress:
            log.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if ckdir:
            if rank == 0:
                loop.save(ckdir, state, meta, best_state if improved else None)
            D.barrier()  # a rank that fails from here on leaves this epoch's checkpoint behind
        if on_epoch_end:
            on_epoch_end(epoch, row, model)

    if restore_best and state["best_epoch"] is not None:
        if best_state is None and ckdir and (ckdir / "best.pt").exists():
            best = read_checkpoint(ckdir / "best.pt")
            if best.get("epoch") == state["best_epoch"] and not resume_mismatch(best, meta):
                best_state = best["model"]
        if best_state is not None:
            model.load_state_dict(best_state)
        elif state["best_epoch"] != state["epoch"]:
            # best.pt gone (a clean-up cut short) or of another attempt (killed before its last.pt, whose
            # epoch the rerun did not repeat): the model keeps the last epoch, and its record says so
            log.warning("%s: no weights of the best epoch %s (best.pt missing or of another epoch); keeping the "
                        "last epoch %s's, recorded as the best", ckdir, state["best_epoch"], state["epoch"])
            state.update(best_epoch=state["epoch"], best_metric=state["history"][-1].get(monitor))
    D.barrier()  # every rank has read the checkpoints before rank 0's caller removes them
    return FitResult(state["history"], state["best_epoch"], state["best_metric"],
                     state["done"], ckdir, meta)


@dataclass
class _Loop:
    """What one training run steps: the model, its loss, optimiser, scheduler and gradient scaler."""
    model: torch.nn.Module
    loss_fn: Callable
    opt: torch.optim.Optimizer
    sched: object
    scaler: torch.amp.GradScaler
    device: torch.device
    dtype: object
    transform: Callable | None
    net: torch.nn.Module | None = None  # what trains: the model, or the model in DistributedDataParallel
    world: int = 1
    rank: int = 0

    def __post_init__(self):
        self.net = self.net if self.net is not None else self.model

    def _inputs(self, xb: torch.Tensor, part: slice, aug_gen) -> torch.Tensor:
        """This rank's ``part`` of the global batch ``xb`` as model input (augmented when training)."""
        if self.world == 1:  # the whole batch, as before data-parallel training existed
            xb = xb.to(self.device, non_blocking=True)
            return self.transform(xb, aug_gen, True) if self.transform else xb
        mine = xb[part].to(self.device, non_blocking=True)
        if not self.transform:
            return mine
        if callable(getattr(self.transform, "sample", None)) and callable(getattr(self.transform, "apply", None)):
            # the global batch's draw, as one process makes it; this rank applies its share
            params = self.transform.sample(len(xb), aug_gen, self.device)
            return self.transform.apply(mine, _part_of(params, part, len(xb)))
        return self.transform(xb.to(self.device, non_blocking=True), aug_gen, True)[part]

    def train_epoch(self, y, batches, aug_gen, epoch: int, on_step: Callable | None) -> float:
        """One pass over ``batches`` (``(positions, uint8 images)`` of global batches); the mean
        training loss (over every rank's examples)."""
        from . import distributed as D

        self.net.train()
        total, count, skipped = 0.0, 0, 0
        for step, (idx, xb) in enumerate(batches):
            n = len(idx)
            if n < self.world:  # a rank would get nothing: skipped by every rank alike
                skipped += 1
                continue
            part = D.share(n, self.rank, self.world)
            mine = idx[part]
            xs = self._inputs(xb, part, aug_gen)
            yb = y[mine.to(y.device)].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = self.loss_fn(self.net(xs), yb)
            # DDP averages the ranks' gradients: weighting each rank's mean loss by its share of
            # the batch makes that average the gradient of the global batch's mean loss
            scaled = loss * (len(mine) * self.world / n) if self.world > 1 else loss
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(scaled).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.sched:
                self.sched.step()
            total += loss.item() * len(mine)
            count += len(mine)
            batches.set_postfix(loss=f"{total / count:.4f}", refresh=False)
            if on_step:
                on_step(epoch, step, loss.item())
        if skipped and self.rank == 0:
            log.info("epoch %d: skipped %d batch(es) of fewer examples than the %d processes", epoch, skipped,
                     self.world)
        if self.world > 1:
            total, count = D.all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64)).tolist()
        return total / max(count, 1)

    def validate(self, val: tuple, metrics_fn: Callable | None, batch_size: int, amp) -> dict:
        """``val_loss`` and ``val_<metric>`` of the whole validation set (each rank predicts its
        share; the outputs are gathered in order)."""
        from . import distributed as D

        n = len(val[0])
        if self.world > 1 and n >= self.world:
            part = D.share(n, self.rank, self.world)
            mine = predict_tensor(self.model, _rows_part(val[0], part), self.transform, batch_size, self.device,
                                  amp)
            out = D.all_gather_shares(mine, n)
        else:
            out = predict_tensor(self.model, val[0], self.transform, batch_size, self.device, amp)
        row = {"val_loss": float(self.loss_fn(out, val[1].to(out.device)))}
        row.update({f"val_{k}": float(v) for k, v in (metrics_fn(out, val[1]) if metrics_fn else {}).items()})
        return row

    def resume(self, last: Path, meta: dict) -> dict | None:
        """Restore the checkpoint ``last`` if this run wrote it; its training state, else ``None``."""
        ck = load_checkpoint(last, meta)
        if ck is None:
            return None
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        if self.sched and ck.get("scheduler"):
            self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        _set_rng_states(ck["rng"])  # rank 0's, on every rank: each epoch reseeds per rank anyway
        log.info("resumed from %s after epoch %d", last, ck["state"]["epoch"])
        return ck["state"]

    def save(self, ckdir: Path, state: dict, meta: dict, best_state: dict | None) -> None:
        """The end-of-epoch checkpoint ``last.pt`` (and ``best.pt`` when the epoch improved)."""
        if best_state is not None:
            with atomic_path(ckdir / "best.pt") as tmp:
                torch.save({"model": best_state, "epoch": state["epoch"], "metric": state["best_metric"],
                            "meta": meta}, tmp)
        ck = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
              "scheduler": self.sched.state_dict() if self.sched else None, "scaler": self.scaler.state_dict(),
              "rng": _rng_states(), "state": state, "meta": meta}
        with atomic_path(ckdir / "last.pt") as tmp:
            torch.save(ck, tmp)
        write_table(ckdir / "metrics.tsv", state["history"])


def _part_of(params: dict, part: slice, n: int) -> dict:
    """The per-example entries (first dimension ``n``) of a drawn transform, cut to ``part``."""
    return {k: v[part] if torch.is_tensor(v) and v.dim() and len(v) == n else v for k, v in params.items()}


def _rows_part(x, part: slice):
    """Rows ``part`` of ``fit``'s data (a tensor, or rows of an image store)."""
    from .stream import StoreRows, TensorRows, as_rows

    rows = as_rows(x)
    if isinstance(rows, StoreRows):
        return rows.subset(np.arange(part.start, part.stop))
    return TensorRows(rows.x[part])


def _tqdm(it, **kw):
    from tqdm.auto import tqdm

    interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(it, file=sys.stderr, leave=False, mininterval=0.5 if interactive else 30, **kw)


def cosine_schedule(warmup_steps: int = 0):
    """Scheduler factory: linear warm-up then cosine decay to 0 over all steps."""
    def make(opt, steps_per_epoch, epochs):
        total = max(1, steps_per_epoch * epochs)

        def factor(step):
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))))
        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return make
