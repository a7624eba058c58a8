"""Dataset distillation by trajectory matching: MTT (Cazenavette et al. 2022) and STM (Guan et al. 2023).

Synthetic images X (``ipc`` per class, initialised from real training images, kept in normalised
space: ZCA whitening, when on, is part of the input pipeline and applied once, when a batch goes
into a net; the references instead store whitened images and take the gradient step on those)
and a learnable student step size α are optimised so that ``N`` SGD steps of a student started at
an expert's epoch-``t`` parameters land near the expert's epoch-``t+M`` parameters.
One iteration of :func:`distill`::

    e ← a random expert,  t ← a start epoch      MTT: t uniform in [0, T+),  M = expert_epochs
                                                 STM: t = iteration % cap,  M = 1
    STM (stage): the loss at epoch ``cap``       the same expert, the last α, the images before
                 (no update)                     this iteration's update (as Guan et al.'s code)
    loss, ∂X, ∂α ← matching_loss(θ*_t → θ*_{t+M})   exact gradient through the N student steps
                                                 (gzmorph.matching, in bounded memory)
    X, α ← an SGD step (momentum 0.5)            a bad step rolls back instead (below)
    STM: schedule.update(next-epoch loss)        (gzmorph.stm: the cap grows on a significant
                                                 trend; then fine-tuning decays the image lr until
                                                 it is below lr_floor)

**α.**  ``alpha_param: direct`` learns α itself, as MTT's code does; ``log`` learns log α, as Guan
et al.'s code does (their α0 1e-4 and α lr 0.01 are for log α; learned directly, one step of a
typical gradient takes α below zero).  With STM's ``alpha_per_epoch`` each start epoch has its own
α with its own momentum (the reference: one optimiser per α); when the cap grows the new epoch's α
starts as a copy of the last one and every α's lr becomes ``lr_alpha × cap``.

**Robustness.**  A non-finite loss or gradient, or an α that turns non-positive or exceeds
``alpha_max``, rolls the images, α and optimiser states back to the last good iteration and halves
both learning rates (logged as an event); non-finite images are never written.

**Augmentation** (``augment``, :func:`gzmorph.augment.make_transform`): DSA in single mode by
default, one family per student step drawn from a generator seeded by (seed, iteration, step).

**Resuming.**  With a work folder the run checkpoints itself every few minutes and resumes after a
kill exactly where it was (:mod:`gzmorph.distill_checkpoint`): the experts and MTT's start epochs
come from one generator, whose state the checkpoint holds; every other draw is seeded by the
iteration.

Options and their defaults: :mod:`gzmorph.distill_settings`; evaluation: :mod:`gzmorph.distill_eval`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .augment import BatchTransform, normalize, to_float
from .distill_checkpoint import CHECKPOINT_EVERY, Checkpoint, run_identity
from .distill_settings import DistillConfig, DistillSettings, STMConfig
from .experts import Data, expected_meta, load_expert, step_generator
from .io import InputError, atomic_path, one_line, save_bundle
from .matching import auto_memory, matching_loss
from .models import build_convnet
from .stm import STMSchedule
from .student import Student, student_dtype

__all__ = ["DistillConfig", "STMConfig", "check_ipc", "convnet", "distill", "load_synthetic", "mean_per_class",
           "real_per_class", "save_grid", "to_uint8", "write_outputs"]
SYNTHETIC_FORMAT = "gzmorph.synthetic/1"
AUGMENT, CUTOUT = DistillSettings.augment, DistillSettings.cutout
log = logging.getLogger(__name__)


def convnet(model_config: dict):
    """The ConvNet of a ``model_config`` (as experts and synthetic sets record it)."""
    return build_convnet(model_config["num_classes"], model_config["image_size"], model_config["width"],
                         model_config["depth"], model_config["norm"])


# --------------------------------------------------------------------------- initialisation, baselines


def check_ipc(data: Data, ipc: int) -> None:
    counts = data.class_counts()
    small = [(c, n) for c, n in zip(data.classes, counts) if n < ipc]
    if ipc < 1 or small:
        detail = ", ".join(f"{c!r} has {n}" for c, n in small) or "ipc must be ≥ 1"
        raise InputError(f"distill: ipc {ipc} is larger than a class's training images ({detail}); "
                         "lower ipc")


def real_per_class(data: Data, ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ipc`` random real training images of every class (uint8) and their labels, class by class."""
    check_ipc(data, ipc)
    gen = torch.Generator().manual_seed(int(seed))
    xs, ys = [], []
    for c in range(len(data.classes)):
        idx = torch.nonzero(data.y_train == c).flatten()
        pick = idx[torch.randperm(len(idx), generator=gen)[:ipc]]
        xs.append(data.x_train[pick])
        ys.append(torch.full((ipc,), c, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def mean_per_class(data: Data, ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-mean images: the means of ``ipc`` random disjoint parts of each class, in normalised
    space like synthetic images (not whitened: the input pipeline whitens them once).  Normalising
    is affine, so each part's pixels are summed a batch at a time and the mean image normalised:
    no float copy of a class (at IPC 1 the part is the whole class)."""
    check_ipc(data, ipc)
    gen = torch.Generator().manual_seed(int(seed))
    xs, ys = [], []
    for c in range(len(data.classes)):
        idx = torch.nonzero(data.y_train == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        for part in idx.tensor_split(ipc):
            total = sum(data.x_train[b].double().sum(0) for b in part.split(4096))
            mean_image = (total / len(part)).float().unsqueeze(0)  # uint8 layout: 1×H×W×C
            xs.append(normalize(mean_image.permute(0, 3, 1, 2).div(255), data.mean, data.std)[0])
            ys.append(c)
    return torch.stack(xs), torch.as_tensor(ys, dtype=torch.long)


# --------------------------------------------------------------------------- experts, one run


class _Experts:
    """The trajectories of the experts, kept in host memory as the reference keeps its buffer (the
    paper preset's 100 experts of 51 epochs are several GB, which the memory plan does not count);
    an iteration moves its two parameter vectors to the device.  ``epochs``: the shortest one's."""

    def __init__(self, trajectories: list[torch.Tensor], device):
        self.traj = [t.cpu() for t in trajectories]
        self.device = device
        self.epochs = min(len(t) for t in self.traj) - 1

    def pair(self, e: int, start: int, m: int):
        t = self.traj[e]
        theta0, target = t[start].to(self.device), t[start + m].to(self.device)
        return theta0, target, float(((theta0 - target) ** 2).sum())


def load_experts(paths, data: Data, model_config: dict, min_epochs: int) -> list[torch.Tensor]:
    if not paths:
        raise InputError("distill: no expert trajectories given (distill.n_experts must be ≥ 1)")
    expect = expected_meta(data, model_config)
    return [load_expert(p, expect=expect, min_epochs=min_epochs)["trajectory"].float() for p in paths]


class _Run:
    """The fixed parts of a run: expert trajectories, the student, the initial images, the per-step plans."""

    def __init__(self, data: Data, expert_paths, cfg: DistillConfig, model_config: dict,
                 transform: BatchTransform, device):
        self.cfg, self.transform, self.device = cfg, transform, device
        self.m = 1 if cfg.method == "stm" else cfg.expert_epochs
        min_epochs = 2 if cfg.method == "stm" else cfg.max_start_epoch + cfg.expert_epochs
        check_ipc(data, cfg.ipc)
        self.experts = _Experts(load_experts(expert_paths, data, model_config, min_epochs), device)
        torch.manual_seed(cfg.seed)
        self.student = Student(convnet(model_config).to(device), student_dtype(cfg.amp, device), cfg.channels_last)
        if self.student.n_params != self.experts.traj[0].shape[1]:
            raise InputError(f"distill: trajectories have {self.experts.traj[0].shape[1]} parameters, "
                             f"the ConvNet {model_config} has {self.student.n_params}")
        x0, labels = real_per_class(data, cfg.ipc, cfg.seed)
        # normalised, not whitened: transform.apply whitens every batch (once) on its way to the student
        self.initial = normalize(to_float(x0.to(device)), data.mean, data.std).detach().clone()
        self.labels = labels.to(device)
        self.n_syn = len(self.labels)
        self.bsz = self.n_syn if cfg.batch_syn <= 0 else min(cfg.batch_syn, self.n_syn)
        self.rng = np.random.default_rng(cfg.seed)
        self.memory, self.graph_steps = self.choose_memory()
        if cfg.amp != "off" or cfg.channels_last:
            log.info("distill student steps: %s%s", "bf16 autocast" if cfg.amp == "bf16" else "float32",
                     ", channels-last" if cfg.channels_last else "")

    def choose_memory(self) -> tuple[str, int]:
        """``(memory, graph_steps)`` of :func:`gzmorph.matching.matching_loss`: as configured, or for
        ``memory: auto`` planned from the budget and one student step's measured graph (logged)."""
        cfg, n = self.cfg, self.cfg.syn_steps
        if cfg.memory != "auto":
            return cfg.memory, n if cfg.memory == "unroll" else 0
        memory, k, f = auto_memory(self.student, self.experts.traj[0][0].to(self.device), self.initial[:self.bsz],
                                   self.labels[:self.bsz], self.transform, n, cfg.memory_budget_mb, cfg.leaf)
        plan = f"all {n} steps unrolled" if k >= n else f"the last {k} of {n} steps unrolled, the others '{memory}'"
        log.info("distill memory: budget %.0f MB (%s), one student step's graph %.1f MB, parameters %.2f MB: %s",
                 f["budget_bytes"] / 2**20,
                 "distill.memory_budget_mb" if cfg.memory_budget_mb > 0 else f"what the {self.device.type} has",
                 f["step_bytes"] / 2**20, f["param_bytes"] / 2**20, plan)
        return memory, k

    def pick_expert(self) -> int:
        return int(self.rng.integers(len(self.experts.traj)))

    def pick_start(self) -> int:
        """MTT's start epoch: uniform in [0, max_start_epoch)."""
        return int(self.rng.integers(0, self.cfg.max_start_epoch)) if self.cfg.max_start_epoch > 0 else 0

    def plan(self, it: int, salt: int = 0) -> list:
        """The ``(indices, augmentation draw)`` of every student step of iteration ``it``."""
        cfg, n_syn, bsz = self.cfg, self.n_syn, self.bsz
        gen = torch.Generator().manual_seed(int(cfg.seed) * 31 + it * 2 + salt)
        plan, perm = [], torch.empty(0, dtype=torch.long)
        for k in range(cfg.syn_steps):
            if bsz == n_syn:
                idx = torch.arange(n_syn)
            else:
                if len(perm) < bsz:
                    perm = torch.cat([perm, torch.randperm(n_syn, generator=gen)])
                idx, perm = perm[:bsz], perm[bsz:]
            p = self.transform.sample(len(idx), step_generator(cfg.seed + salt, it, k), device="cpu")
            if p is not None:
                p = {kk: v.to(self.device) for kk, v in p.items()}
            plan.append((idx.to(self.device), p))
        return plan

    def match(self, syn: _Synthetic, it: int, e: int, start: int, alpha: float, need_grad: bool = True,
              salt: int = 0):
        """``(loss, ∂X, ∂α)`` of matching expert ``e`` from epoch ``start`` to ``start + M`` with step size α."""
        theta0, target, denom = self.experts.pair(e, start, self.m)
        images = syn.images.detach()
        return matching_loss(self.student, theta0, target, max(denom, 1e-12), images, self.labels,
                             torch.tensor(float(alpha), dtype=images.dtype, device=images.device),
                             self.plan(it, salt), self.transform, self.memory, self.cfg.leaf, need_grad,
                             graph_steps=self.graph_steps)


class _Synthetic:
    """What is optimised: images X and step size(s) α, their SGD states, the last good state.

    α is learned as itself (``alpha_param: direct``) or as log α (``log``); ``param`` holds what is
    learned, :meth:`values` the step sizes.  Each α has its own momentum buffer and is stepped only
    in the iterations that use it; ``n_used`` of them are in use (STM's cap with ``alpha_per_epoch``)."""

    def __init__(self, images: torch.Tensor, n_alpha: int, cfg: DistillConfig):
        self.cfg, self.n_rollbacks = cfg, 0
        self.log = cfg.alpha_param == "log"
        self.per_epoch = n_alpha > 1
        self.images = images.requires_grad_(True)
        a0 = float(cfg.alpha0)
        self.param = torch.full((n_alpha,), math.log(a0) if self.log else a0, dtype=torch.float64)
        self.buf = torch.zeros_like(self.param)
        self.n_used = 1
        self.lr_img, self.lr_alpha = float(cfg.lr_img), float(cfg.lr_alpha)
        self.opt_img = torch.optim.SGD([self.images], lr=self.lr_img, momentum=cfg.momentum)
        self._keep()

    def index(self, start: int) -> int:
        """The α of a start epoch (one per epoch with STM's ``alpha_per_epoch``, else one)."""
        return start if self.per_epoch else 0

    def values(self) -> torch.Tensor:
        """The step sizes α (float32)."""
        return (self.param.exp() if self.log else self.param).float()

    def alpha_at(self, start: int) -> float:
        p = float(self.param[self.index(start)])
        return math.exp(p) if self.log else p

    @property
    def alpha_lr(self) -> float:
        """The α learning rate: ``lr_alpha``, times the cap with one α per epoch (as Guan et al.)."""
        return self.lr_alpha * (self.n_used if self.per_epoch else 1)

    def step(self, loss: float, g_img, g_alpha, start: int) -> str | None:
        """One SGD step of X and of the α of ``start``; ``None`` when the result is good (it becomes
        the state to roll back to), else why it is not."""
        if not (math.isfinite(loss) and bool(torch.isfinite(g_img).all()) and bool(torch.isfinite(g_alpha))):
            return "non-finite loss/gradient"
        ai = self.index(start)
        self.images.grad = g_img
        self.opt_img.step()
        g = float(g_alpha) * (self.alpha_at(start) if self.log else 1.0)  # ∂loss/∂log α = α ∂loss/∂α
        self.buf[ai] = self.cfg.momentum * self.buf[ai] + g
        self.param[ai] -= self.alpha_lr * self.buf[ai]
        a = self.alpha_at(start)
        if not (bool(torch.isfinite(self.images).all()) and math.isfinite(a) and 0 < a <= self.cfg.alpha_max):
            return f"alpha {a:.3g} outside (0, {self.cfg.alpha_max}]"
        self._keep()
        return None

    def grow(self, cap: int) -> None:
        """STM's cap grew to ``cap``: with one α per epoch, the new epochs' α start as a copy of the
        last α in use (with momentum of their own), and the α lr becomes ``lr_alpha × cap``."""
        if not self.per_epoch or cap <= self.n_used:
            return
        cap = min(cap, len(self.param))
        self.param[self.n_used:cap] = self.param[self.n_used - 1]
        self.buf[self.n_used:cap] = 0.0
        self.n_used = cap
        self._keep()

    def _keep(self) -> None:
        self.last_good = (self.images.detach().clone(), self.param.clone(), self.buf.clone(), self.n_used,
                          copy.deepcopy(self.opt_img.state_dict()))

    def _set_lrs(self, lr_img: float, lr_alpha: float) -> None:
        self.lr_img, self.lr_alpha = lr_img, lr_alpha
        for g in self.opt_img.param_groups:
            g["lr"] = lr_img

    def scale_lr_img(self, factor: float) -> None:
        self._set_lrs(self.lr_img * factor, self.lr_alpha)

    def roll_back(self, iteration: int, why: str) -> dict:
        """Back to the last good state with both learning rates halved; return the event."""
        self.n_rollbacks += 1
        images, param, buf, n_used, opt_img = self.last_good
        with torch.no_grad():
            self.images.copy_(images)
        self.param, self.buf, self.n_used = param.clone(), buf.clone(), n_used
        # a copy: the optimiser adopts the state's tensors, and its next step would change the last good
        # momentum in place (a second rollback in a row would return to that changed momentum)
        self.opt_img.load_state_dict(copy.deepcopy(opt_img))
        self._set_lrs(self.lr_img * 0.5, self.lr_alpha * 0.5)
        log.warning("iteration %d: %s -> rolled back, lr_img %.4g, lr_alpha %.4g", iteration, why, self.lr_img,
                    self.lr_alpha)
        if self.n_rollbacks > self.cfg.max_rollbacks:
            raise RuntimeError(f"distillation diverged: {self.n_rollbacks} rollbacks (last: {why}); "
                               "lower distill.lr_img / lr_alpha")
        return {"iteration": iteration, "event": "rollback", "reason": why, "lr_img": self.lr_img,
                "lr_alpha": self.lr_alpha}

    def state_dict(self) -> dict:
        """X, α, their SGD states, ``n_used``, the learning rates and the rollback count (tensors and
        plain values, for :mod:`gzmorph.distill_checkpoint`).  The last good state is not in it: at the
        end of every iteration it is the current state (a good step keeps it, a rollback returns to
        it; the learning rates it holds are never restored), which :meth:`load_state_dict` keeps again."""
        return {"images": self.images.detach(), "param": self.param, "buf": self.buf, "n_used": self.n_used,
                "n_rollbacks": self.n_rollbacks, "lr_img": self.lr_img, "lr_alpha": self.lr_alpha,
                "opt_img": self.opt_img.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        images, param, buf = state["images"], state["param"], state["buf"]
        n_used = int(state["n_used"])
        if (tuple(images.shape) != tuple(self.images.shape) or tuple(param.shape) != tuple(self.param.shape)
                or tuple(buf.shape) != tuple(self.param.shape) or not 1 <= n_used <= len(self.param)):
            raise ValueError(f"synthetic state of images {tuple(images.shape)} and {tuple(param.shape)} α, "
                             f"this run has {tuple(self.images.shape)} and {tuple(self.param.shape)}")
        with torch.no_grad():
            self.images.copy_(images.to(self.images.device, self.images.dtype))
        self.param, self.buf = param.to(torch.float64).clone(), buf.to(torch.float64).clone()
        self.n_used, self.n_rollbacks = n_used, int(state["n_rollbacks"])
        self.opt_img.load_state_dict(copy.deepcopy(state["opt_img"]))  # its own tensors, not the file's
        self._set_lrs(float(state["lr_img"]), float(state["lr_alpha"]))
        self._keep()

    def final_images(self) -> torch.Tensor:
        images = self.images.detach()
        return images if torch.isfinite(images).all() else self.last_good[0]  # never write NaN images


@dataclass
class _State:
    """What a run changes as it goes, besides the expert/start-epoch generator (``_Run.rng``): what a
    checkpoint holds (:mod:`gzmorph.distill_checkpoint`)."""

    syn: _Synthetic
    schedule: STMSchedule | None
    history: list = field(default_factory=list)
    stage_log: list = field(default_factory=list)
    events: list = field(default_factory=list)
    iteration: int = 0  # the next iteration to run
    seconds: float = 0.0  # wall time of the iterations run before (by a killed process)

    def state_dict(self, run: _Run, iteration: int, seconds: float) -> dict:
        return {"iteration": iteration, "seconds": seconds, "synthetic": self.syn.state_dict(),
                "schedule": self.schedule.state_dict() if self.schedule else None,
                "rng": run.rng.bit_generator.state, "history": self.history, "stage_log": self.stage_log,
                "events": self.events}


def _fresh_state(run: _Run, cfg: DistillConfig) -> _State:
    schedule = STMSchedule(cfg.stm, run.experts.epochs) if cfg.method == "stm" else None
    n_alpha = run.experts.epochs if schedule and cfg.stm.alpha_per_epoch else 1
    return _State(_Synthetic(run.initial.clone(), n_alpha, cfg), schedule)


def _resume(checkpoint: Checkpoint, run: _Run, cfg: DistillConfig) -> _State | None:
    """The state of ``checkpoint`` (with ``run.rng`` set to its generator), or ``None`` when there is
    none of this run's, or it cannot be restored (set aside)."""
    saved = checkpoint.load()
    if saved is None:
        return None
    try:
        state = _fresh_state(run, cfg)
        state.syn.load_state_dict(saved["synthetic"])
        if state.schedule:
            state.schedule.load_state_dict(saved["schedule"])
        rng = np.random.default_rng(cfg.seed)
        rng.bit_generator.state = saved["rng"]
        state.history, state.stage_log, state.events = (list(saved[k]) for k in ("history", "stage_log", "events"))
        state.iteration, state.seconds = int(saved["iteration"]), float(saved["seconds"])
        if not 0 <= state.iteration <= int(cfg.iterations):
            raise ValueError(f"iteration {state.iteration} of {cfg.iterations}")
    except Exception as err:  # noqa: BLE001 - a damaged file of the right identity
        checkpoint.set_aside(f"cannot be restored ({one_line(err)})")
        return None
    run.rng = rng
    log.info("%s: resumed at iteration %d of %d (%.0f s run before)", checkpoint.path, state.iteration,
             cfg.iterations, state.seconds)
    return state


def distill(data: Data, expert_paths, cfg: DistillConfig, model_config: dict, *, augment=AUGMENT,
            cutout: float = CUTOUT, progress: bool = False, work_dir=None,
            checkpoint_every: float = CHECKPOINT_EVERY) -> dict:
    """Run MTT or STM (the iteration of the module docstring); return the synthetic set with its
    learned α, history rows, the STM stage log and the events (rollback, cap, finetune, stop).

    ``work_dir``: the run checkpoints itself there and resumes from there after a kill, continuing
    exactly as the uninterrupted run (:mod:`gzmorph.distill_checkpoint`; a checkpoint of another run
    is set aside); ``None``: no checkpoints.  A checkpoint is written at the start of an iteration
    once ``checkpoint_every`` seconds of wall time have passed since the last one (0: every
    iteration).  Time, not a number of iterations, as an iteration takes milliseconds on a tiny
    CPU run and seconds with the paper preset on a GPU.  Every five minutes loses at most five
    minutes of a 24-hour job, and writing stays cheap: the images and their momentum are a few MB,
    the history and stage rows JSON that grows with the run (100,000 STM iterations: 40 MB, written
    in 4.5 s on a busy 2-core machine, i.e. 1.5 % of the interval at the very end of the longest run).
    """
    from .train import pick_device

    run = _Run(data, expert_paths, cfg, model_config, data.transform(augment, cutout), pick_device(cfg.device))
    checkpoint, state = None, None
    if work_dir is not None:
        checkpoint = Checkpoint(work_dir, run_identity(cfg, model_config, data, run.experts.traj, augment, cutout))
        state = _resume(checkpoint, run, cfg)
    if state is None:
        state = _fresh_state(run, cfg)
    syn, schedule, history, stage_log, events = state.syn, state.schedule, state.history, state.stage_log, state.events
    last_save = time.perf_counter()
    t_start = last_save - state.seconds  # the result's seconds count the killed processes' too
    for it in range(state.iteration, int(cfg.iterations)):
        if checkpoint and it > state.iteration and time.perf_counter() - last_save >= checkpoint_every:
            checkpoint.save(state.state_dict(run, it, time.perf_counter() - t_start))
            last_save = time.perf_counter()
        t0 = time.perf_counter()
        e = run.pick_expert()
        start = schedule.start_epoch(it) if schedule else run.pick_start()
        next_loss = math.nan
        if schedule and schedule.probing:  # STM: the next, unused epoch, before the update, with the last α
            next_loss = run.match(syn, it, e, schedule.cap, syn.alpha_at(schedule.cap - 1), need_grad=False,
                                  salt=1)[0]
        loss, g_img, g_alpha = run.match(syn, it, e, start, syn.alpha_at(start))
        why = syn.step(loss, g_img, g_alpha, start)
        if why:
            events.append(syn.roll_back(it, why))
            continue
        row = {"iteration": it, "expert": e, "start_epoch": start, "loss": loss, "alpha": syn.alpha_at(start),
               "lr_img": syn.lr_img, "seconds": round(time.perf_counter() - t0, 4)}
        if schedule:  # STM: the schedule reacts to the next-epoch loss
            stm = schedule.update(it, next_loss)
            if stm.grew:
                syn.grow(schedule.cap)
            events += stm.events
            syn.scale_lr_img(stm.lr_scale)
            stage_log.append({"iteration": it, "cap": schedule.cap, "start_epoch": start, "loss": loss,
                              "next_epoch_loss": next_loss, "r": schedule.r, "sigma": schedule.sigma,
                              "lr_img": syn.lr_img, "mode": schedule.mode})
            row.update(cap=schedule.cap, mode=schedule.mode)
        history.append(row)
        if schedule and schedule.finished(syn.lr_img):
            events.append({"iteration": it, "event": "stop", "lr_img": syn.lr_img})
            break
        if progress or it % 10 == 0:
            log.info("iteration %d start %d loss %.4f alpha %.4g%s (%.2fs)", it, start, loss, row["alpha"],
                     f" cap {schedule.cap} {schedule.mode}" if schedule else "", row["seconds"])
    cap = schedule.cap if schedule else None
    return {"format": SYNTHETIC_FORMAT, "images": syn.final_images().cpu(), "labels": run.labels.cpu(),
            "alpha": syn.values()[:syn.n_used].cpu(), "alpha_epochs_used": cap, "classes": data.classes,
            "method": cfg.method, "ipc": cfg.ipc, "mean": data.mean, "std": data.std, "image_size": data.image_size,
            "model_config": model_config, "zca": data.zca is not None, "config": asdict(cfg),
            "history": history, "stage_log": stage_log, "events": events,
            "seconds": round(time.perf_counter() - t_start, 2), "iterations": len(history),
            "final_cap": cap, "expert_epochs": run.experts.epochs}


# --------------------------------------------------------------------------- outputs


def to_uint8(images: torch.Tensor, transform: BatchTransform) -> np.ndarray:
    """Normalised float N×3×H×W -> uint8 N×H×W×3 for display."""
    x = transform.denormalize(images.float()).clamp(0, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def save_grid(images_u8: np.ndarray, labels, classes, path, cell: int = 64, pad: int = 2) -> None:
    """PNG grid of the prototypes: one row per class, upscaled (nearest) to ``cell`` px."""
    from PIL import Image

    labels = np.asarray(labels)
    ncol = max(int((labels == c).sum()) for c in range(len(classes)))
    h = images_u8.shape[1]
    f = max(1, cell // h)
    side = h * f
    grid = np.full((len(classes) * (side + pad) + pad, ncol * (side + pad) + pad, 3), 255, np.uint8)
    for c in range(len(classes)):
        for j, i in enumerate(np.nonzero(labels == c)[0]):
            img = images_u8[i].repeat(f, 0).repeat(f, 1)
            y0, x0 = pad + c * (side + pad), pad + j * (side + pad)
            grid[y0:y0 + side, x0:x0 + side] = img
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")


def write_outputs(result: dict, data: Data, synthetic_path, grid_path, history_path, stage_path=None) -> None:
    """``synthetic.pt`` (the result of :func:`distill`), the prototype grid and the history / stage tables."""
    from .train import write_table

    save_bundle(synthetic_path, result, SYNTHETIC_FORMAT)  # safetensors: images, labels, α + a JSON header
    save_grid(to_uint8(result["images"], BatchTransform(data.mean, data.std)), result["labels"].numpy(),
              data.classes, grid_path)
    rows = result["history"] or [{"iteration": None}]
    write_table(Path(history_path), rows)
    if stage_path:
        write_table(Path(stage_path), result["stage_log"] or [{"iteration": None}])


def load_synthetic(path, data: Data | None = None) -> dict:
    from .io import load_bundle

    path = Path(path)
    s = load_bundle(path, SYNTHETIC_FORMAT, "synthetic set")
    if data is not None and (s["classes"] != data.classes or s["image_size"] != data.image_size):
        raise InputError(f"{path}: synthetic set for classes {s['classes']} at {s['image_size']} px, "
                         f"this run has {data.classes} at {data.image_size} px")
    return s


