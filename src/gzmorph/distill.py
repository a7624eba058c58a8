"""Dataset distillation by trajectory matching: MTT (Cazenavette et al. 2022) and STM (Guan et al. 2023).

Synthetic images (``ipc`` per class, initialised from real training images,
kept in normalised space) and a learnable student step size α are optimised
so that ``N`` SGD steps of a student started at an expert's epoch-``t``
parameters land near the expert's epoch-``t+M`` parameters::

    loss = ‖θ̂_N − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖²,   θ̂_{k+1} = θ̂_k − α ∇ℓ(θ̂_k; A_k(X[b_k]))

(``A_k``: the shared differentiable augmentation, seeded per step).

**Memory.**  Back-propagating through the ``N`` steps is done by an explicit
reverse (adjoint) sweep, one student step at a time::

    λ_N = ∂loss/∂θ̂_N;   for k = N−1 … 0:  X̄ −= α (∂g_k/∂X)ᵀλ_{k+1};  ᾱ −= g_k·λ_{k+1};
                                            λ_k = λ_{k+1} − α H_k λ_{k+1}

where ``g_k``/``H_k`` are the student's gradient/Hessian at θ̂_k (Hessian-vector
products by double back-prop of one step).  Only one step's graph is alive at a
time.  The reverse sweep needs θ̂_k in reverse order; ``memory="constant"``
recomputes them by recursive bisection from O(log N) stored parameter
snapshots (the right spine is kept from the forward sweep), so peak memory
does not grow with ``N`` apart from a few parameter vectors, at the price of
≈ (N/2)·log2(N/leaf) extra gradient evaluations; ``memory="store"`` keeps
all N snapshots (no recomputation, memory ``N × params``); ``memory="unroll"``
is the reference: plain autograd through the whole unrolled graph (memory
linear in N with all activations).  All three give the same gradient.

**STM** (self-adaptive): M = 1; the start epochs cycle below a cap that
begins at 1; every iteration also measures (no update) the matching loss at
the next, unused epoch; every ``check_every`` iterations the Pearson r of
that loss against the iteration index is compared with σ = sqrt(1/(n−2)):
r < −``r_down``σ or r > ``r_up``σ grows the cap (the record resets); after
``patience`` iterations without a significant trend the run switches to
fine-tuning: image lr × ``ft_factor`` every ``ft_every`` iterations until it
falls below ``lr_floor``.

**Robustness.**  A non-finite loss or gradient, or an α that turns
non-positive or exceeds ``alpha_max``, rolls the images, α and optimiser
states back to the last good iteration and halves both learning rates (logged
as an event); non-finite images are never written.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .augment import BatchTransform
from .experts import Data, accuracy, expected_meta, load_expert, step_generator
from .models import build_convnet
from .student import Student
from .io import InputError, atomic_path

SYNTHETIC_FORMAT = "gzmorph.synthetic/1"
METHODS = ("mtt", "stm")
MEMORY_MODES = ("constant", "store", "unroll")


# --------------------------------------------------------------------------- the matching gradient


def _ce_grad(student, theta, x, y, create_graph=False):
    with torch.enable_grad():
        th = theta if create_graph else theta.detach().requires_grad_(True)
        loss = F.cross_entropy(student(th, x), y)
        (g,) = torch.autograd.grad(loss, th, create_graph=create_graph)
    return g


def _spine(n: int, leaf: int) -> set[int]:
    """Bisection points on the right spine of the recursion (kept from the forward sweep)."""
    pts, a = set(), 0
    while n - a > leaf:
        a = (a + n) // 2
        pts.add(a)
    return pts


def _reverse_states(theta0, n, step, leaf, cache):
    """Yield ``(k, θ_k)`` for k = n−1 … 0 with O(log n + leaf) snapshots alive."""
    def rev(a, th_a, b):
        if b - a <= leaf:
            states = [th_a]
            for k in range(a, b - 1):
                states.append(cache.pop(k + 1, None) if (k + 1) in cache else step(states[-1], k))
            for k in range(b - 1, a - 1, -1):
                yield k, states.pop()
            return
        mid = (a + b) // 2
        th = cache.pop(mid, None)
        if th is None:
            th = th_a
            for k in range(a, mid):
                th = step(th, k)
        yield from rev(mid, th, b)
        del th
        yield from rev(a, th_a, mid)
    yield from rev(0, theta0, n)


def matching_loss(student: Student, theta0, target, denom, syn, labels, alpha, plan, transform: BatchTransform,
                  memory: str = "constant", leaf: int = 4, need_grad: bool = True):
    """Matching loss and its gradients w.r.t. the synthetic images and α.

    ``plan``: one ``(indices, augmentation params)`` per student step; ``alpha`` a 0-d tensor.
    Returns ``(loss, grad_syn, grad_alpha)`` (grads ``None`` without ``need_grad``).
    """
    if memory not in MEMORY_MODES:
        raise InputError(f"distill.memory must be one of {MEMORY_MODES}, not {memory!r}")
    n = len(plan)
    a = float(alpha)

    def batch(k, x=None):
        idx, p = plan[k]
        return transform.apply((syn if x is None else x)[idx], p), labels[idx]

    if memory == "unroll" and need_grad:
        with torch.enable_grad():
            x = syn.detach().requires_grad_(True)
            al = alpha.detach().clone().requires_grad_(True)
            th = theta0.detach().clone().requires_grad_(True)
            for k in range(n):
                xb, yb = batch(k, x)
                th = th - al * _ce_grad(student, th, xb, yb, create_graph=True)
            loss = ((th - target) ** 2).sum() / denom
            gx, ga = torch.autograd.grad(loss, [x, al])
        return float(loss.detach()), gx, ga

    def step(th, k):
        with torch.no_grad():
            xb, yb = batch(k)
        return th - a * _ce_grad(student, th, xb.detach(), yb)

    keep = set(range(1, n)) if memory == "store" else _spine(n, leaf)
    cache, th = {}, theta0.detach()
    for k in range(n):
        th = step(th, k)
        if (k + 1) in keep and k + 1 < n:
            cache[k + 1] = th
    loss = float(((th - target) ** 2).sum() / denom)
    if not need_grad:
        return loss, None, None
    lam = 2 * (th - target) / denom
    del th
    g_syn = torch.zeros_like(syn)
    g_alpha = torch.zeros((), dtype=syn.dtype, device=syn.device)
    for k, th_k in _reverse_states(theta0.detach(), n, step, n if memory == "store" else leaf, cache):
        idx, p = plan[k]
        with torch.enable_grad():
            xk = syn[idx].detach().requires_grad_(True)
            thk = th_k.detach().requires_grad_(True)
            g = _ce_grad(student, thk, transform.apply(xk, p), labels[idx], create_graph=True)
            hv, gx = torch.autograd.grad((g * lam).sum(), [thk, xk])
        g_syn.index_add_(0, idx, -a * gx)
        g_alpha -= (g.detach() * lam).sum()
        lam = lam - a * hv
        del g, hv, gx, thk, xk
    return loss, g_syn, g_alpha


# --------------------------------------------------------------------------- configuration


@dataclass
class STMConfig:
    check_every: int = 10  # iterations between trend tests
    r_down: float = 5.0  # r < -r_down·σ: significant decrease -> cap + 1
    r_up: float = 3.0  # r > r_up·σ: significant increase -> cap + 1
    patience: int = 1000  # iterations of a stage without a trend -> fine-tuning
    ft_every: int = 50  # fine-tuning: image lr × ft_factor every ft_every iterations
    ft_factor: float = 0.8
    lr_floor: float = 50.0  # stop when the image lr falls below this
    alpha_per_epoch: bool = False  # one learned α per start epoch (piecewise schedule at evaluation)


@dataclass
class DistillConfig:
    method: str = "mtt"
    ipc: int = 1
    syn_steps: int = 20  # N
    expert_epochs: int = 2  # M (MTT; STM uses 1)
    max_start_epoch: int = 2  # T+ (MTT)
    iterations: int = 200  # MTT: iterations; STM: an upper bound
    lr_img: float = 1000.0
    lr_alpha: float = 1e-5
    alpha0: float = 0.01
    momentum: float = 0.5
    batch_syn: int = 0  # synthetic images per student step; 0 = all
    memory: str = "constant"
    leaf: int = 4
    alpha_max: float = 1.0
    max_rollbacks: int = 20
    seed: int = 0
    device: str = "auto"
    stm: STMConfig = field(default_factory=STMConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "DistillConfig":
        d = dict(d)
        stm = STMConfig(**d.pop("stm", {}))
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"distill: unknown option(s) {sorted(unknown)}")
        cfg = cls(**d, stm=stm)
        if cfg.method not in METHODS:
            raise InputError(f"distill method must be one of {METHODS}, not {cfg.method!r}")
        if cfg.memory not in MEMORY_MODES:
            raise InputError(f"distill.memory must be one of {MEMORY_MODES}, not {cfg.memory!r}")
        return cfg


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


def mean_per_class(data: Data, ipc: int, seed: int, transform: BatchTransform) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-mean images (normalised floats): the means of ``ipc`` random disjoint parts of each class."""
    check_ipc(data, ipc)
    gen = torch.Generator().manual_seed(int(seed))
    xs, ys = [], []
    for c in range(len(data.classes)):
        idx = torch.nonzero(data.y_train == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        for part in idx.tensor_split(ipc):
            xs.append(transform.apply(data.x_train[part], None).mean(0))
            ys.append(c)
    return torch.stack(xs), torch.as_tensor(ys, dtype=torch.long)


# --------------------------------------------------------------------------- distillation


def pearson(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


class _Experts:
    def __init__(self, trajectories: list[torch.Tensor], device):
        self.traj = [t.to(device) for t in trajectories]
        self.epochs = min(len(t) for t in self.traj) - 1

    def pair(self, e: int, start: int, m: int):
        t = self.traj[e]
        theta0, target = t[start], t[start + m]
        return theta0, target, float(((theta0 - target) ** 2).sum())


def load_experts(paths, data: Data, model_config: dict, min_epochs: int) -> list[torch.Tensor]:
    if not paths:
        raise InputError("distill: no expert trajectories given (distill.n_experts must be ≥ 1)")
    expect = expected_meta(data, model_config)
    return [load_expert(p, expect=expect, min_epochs=min_epochs)["trajectory"].float() for p in paths]


def distill(data: Data, expert_paths, cfg: DistillConfig, model_config: dict, *, augment=True,
            cutout: float = 0.5, progress: bool = False, log=None) -> dict:
    """Run MTT or STM; return the synthetic set, learned α, history rows and (STM) the stage log."""
    from .train import pick_device

    say = log.info if log else (lambda *a: print(a[0] % a[1:] if len(a) > 1 else a[0], file=sys.stderr))
    device = pick_device(cfg.device)
    stm = cfg.method == "stm"
    m = 1 if stm else cfg.expert_epochs
    min_epochs = 2 if stm else cfg.max_start_epoch + cfg.expert_epochs
    check_ipc(data, cfg.ipc)
    experts = _Experts(load_experts(expert_paths, data, model_config, min_epochs), device)
    E = experts.epochs
    torch.manual_seed(cfg.seed)
    net = build_convnet(model_config["num_classes"], model_config["image_size"], model_config["width"],
                        model_config["depth"], model_config["norm"]).to(device)
    student = Student(net)
    if student.n_params != experts.traj[0].shape[1]:
        raise InputError(f"distill: trajectories have {experts.traj[0].shape[1]} parameters, "
                         f"the ConvNet {model_config} has {student.n_params}")
    transform = data.transform(augment, cutout)
    x0, labels = real_per_class(data, cfg.ipc, cfg.seed)
    syn = transform.apply(x0.to(device), None).detach().clone()
    labels = labels.to(device)
    n_alpha = E if (stm and cfg.stm.alpha_per_epoch) else 1
    alpha = torch.full((n_alpha,), float(cfg.alpha0), device=device)
    syn.requires_grad_(True)
    alpha.requires_grad_(True)
    lr_img, lr_alpha = float(cfg.lr_img), float(cfg.lr_alpha)
    opt_img = torch.optim.SGD([syn], lr=lr_img, momentum=cfg.momentum)
    opt_a = torch.optim.SGD([alpha], lr=lr_alpha, momentum=cfg.momentum)
    rng = np.random.default_rng(cfg.seed)
    n_syn = len(syn)
    bsz = n_syn if cfg.batch_syn <= 0 else min(cfg.batch_syn, n_syn)

    def plan_for(it: int, salt: int = 0):
        gen = torch.Generator().manual_seed(int(cfg.seed) * 31 + it * 2 + salt)
        plan, perm = [], torch.empty(0, dtype=torch.long)
        for k in range(cfg.syn_steps):
            if bsz == n_syn:
                idx = torch.arange(n_syn)
            else:
                if len(perm) < bsz:
                    perm = torch.cat([perm, torch.randperm(n_syn, generator=gen)])
                idx, perm = perm[:bsz], perm[bsz:]
            p = transform.sample(len(idx), step_generator(cfg.seed + salt, it, k), device="cpu")
            if p is not None:
                p = {kk: v.to(device) for kk, v in p.items()}
            plan.append((idx.to(device), p))
        return plan

    def match(it, start, e, need_grad=True, salt=0):
        theta0, target, denom = experts.pair(e, start, m)
        a = alpha[start if n_alpha > 1 else 0].detach()
        return matching_loss(student, theta0, target, max(denom, 1e-12), syn.detach(), labels, a,
                             plan_for(it, salt), transform, cfg.memory, cfg.leaf, need_grad)

    def good_state():
        return (syn.detach().clone(), alpha.detach().clone(), copy.deepcopy(opt_img.state_dict()),
                copy.deepcopy(opt_a.state_dict()))

    last_good = good_state()
    history, stage_rows, events = [], [], []
    cap, record, stage_iters, mode, ft_iters, r, sigma = 1, [], 0, "stage", 0, float("nan"), float("nan")
    n_rollbacks, t_start = 0, time.perf_counter()
    max_iter = int(cfg.iterations)
    it = 0
    while it < max_iter:
        t0 = time.perf_counter()
        e = int(rng.integers(len(experts.traj)))
        if stm:
            start = (stage_iters if mode == "stage" else it) % cap
        else:
            start = int(rng.integers(0, cfg.max_start_epoch)) if cfg.max_start_epoch > 0 else 0
        loss, g_syn, g_a = match(it, start, e)
        ai = start if n_alpha > 1 else 0
        ok = math.isfinite(loss) and bool(torch.isfinite(g_syn).all()) and bool(torch.isfinite(g_a))
        if ok:
            syn.grad = g_syn
            alpha.grad = torch.zeros_like(alpha)
            alpha.grad[ai] = g_a
            opt_img.step()
            opt_a.step()
            a_now = float(alpha.detach()[ai])
            ok = bool(torch.isfinite(syn).all()) and 0 < a_now <= cfg.alpha_max
        if not ok:
            n_rollbacks += 1
            why = ("non-finite loss/gradient" if not (math.isfinite(loss) and g_syn is not None
                                                       and torch.isfinite(g_syn).all() and torch.isfinite(g_a))
                   else f"alpha {float(alpha.detach()[ai]):.3g} outside (0, {cfg.alpha_max}]")
            with torch.no_grad():
                syn.copy_(last_good[0])
                alpha.copy_(last_good[1])
            opt_img.load_state_dict(last_good[2])
            opt_a.load_state_dict(last_good[3])
            lr_img, lr_alpha = lr_img * 0.5, lr_alpha * 0.5
            for g in opt_img.param_groups:
                g["lr"] = lr_img
            for g in opt_a.param_groups:
                g["lr"] = lr_alpha
            events.append({"iteration": it, "event": "rollback", "reason": why, "lr_img": lr_img,
                           "lr_alpha": lr_alpha})
            say("iteration %d: %s -> rolled back, lr_img %.4g, lr_alpha %.4g", it, why, lr_img, lr_alpha)
            if n_rollbacks > cfg.max_rollbacks:
                raise RuntimeError(f"distillation diverged: {n_rollbacks} rollbacks (last: {why}); "
                                   "lower distill.lr_img / lr_alpha")
            it += 1
            continue
        last_good = good_state()
        row = {"iteration": it, "expert": e, "start_epoch": start, "loss": loss,
               "alpha": float(alpha.detach()[ai]), "lr_img": lr_img, "seconds": round(time.perf_counter() - t0, 4)}
        if stm:
            next_loss = float("nan")
            if mode == "stage" and cap < E:
                next_loss, _, _ = match(it, cap, int(rng.integers(len(experts.traj))), need_grad=False, salt=1)
                if math.isfinite(next_loss):
                    record.append((it, next_loss))
            stage_iters += 1
            r, sigma, grew = float("nan"), float("nan"), False
            if mode == "stage" and len(record) >= 3 and len(record) % cfg.stm.check_every == 0:
                r = pearson([i for i, _ in record], [v for _, v in record])
                sigma = math.sqrt(1.0 / (len(record) - 2))
                if r < -cfg.stm.r_down * sigma or r > cfg.stm.r_up * sigma:
                    cap, record, stage_iters, grew = min(cap + 1, E), [], 0, True
                    events.append({"iteration": it, "event": "cap", "cap": cap, "r": r, "sigma": sigma})
            if mode == "stage" and not grew and stage_iters >= cfg.stm.patience:
                mode = "finetune"
                events.append({"iteration": it, "event": "finetune", "cap": cap})
            elif mode == "finetune":
                ft_iters += 1
                if ft_iters % cfg.stm.ft_every == 0:
                    lr_img *= cfg.stm.ft_factor
                    for g in opt_img.param_groups:
                        g["lr"] = lr_img
            stage_rows.append({"iteration": it, "cap": cap, "start_epoch": start, "loss": loss,
                               "next_epoch_loss": next_loss, "r": r, "sigma": sigma, "lr_img": lr_img,
                               "mode": mode})
            row.update(cap=cap, mode=mode)
            if mode == "finetune" and lr_img < cfg.stm.lr_floor:
                history.append(row)
                events.append({"iteration": it, "event": "stop", "lr_img": lr_img})
                break
        history.append(row)
        if progress or it % 10 == 0:
            say("iteration %d start %d loss %.4f alpha %.4g%s (%.2fs)", it, start, loss, row["alpha"],
                f" cap {cap} {mode}" if stm else "", row["seconds"])
        it += 1

    images = syn.detach()
    if not torch.isfinite(images).all():  # never write NaN images
        images = last_good[0]
    alphas = alpha.detach().cpu()
    used = cap if stm else None
    return {"format": SYNTHETIC_FORMAT, "images": images.cpu(), "labels": labels.cpu(),
            "alpha": alphas, "alpha_epochs_used": used, "classes": data.classes, "method": cfg.method,
            "ipc": cfg.ipc, "mean": data.mean, "std": data.std, "image_size": data.image_size,
            "model_config": model_config, "zca": data.zca is not None, "config": asdict(cfg),
            "history": history, "stage_log": stage_rows, "events": events,
            "seconds": round(time.perf_counter() - t_start, 2), "iterations": len(history),
            "final_cap": cap if stm else None, "expert_epochs": E}


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


def write_outputs(result: dict, data: Data, synthetic_path, grid_path, history_path, stage_path=None,
                  augment=True, cutout=0.5) -> None:
    from .train import write_table

    with atomic_path(synthetic_path) as tmp:
        torch.save(result, tmp)
    transform = data.transform(augment, cutout)
    save_grid(to_uint8(result["images"], transform), result["labels"].numpy(), data.classes, grid_path)
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


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalConfig:
    n_nets: int = 5
    epochs: int = 1000
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    baseline_lr: float = 0.01  # lr for the random / mean baselines
    full_epochs: int = 30
    full_lr: float = 0.01
    full_batch_size: int = 256
    device: str = "auto"


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
                    *, augment=True, cutout=0.5, pieces=None, batch_size=None, log=None) -> list[float]:
    """Test accuracies of ``cfg.n_nets`` fresh ConvNets trained on (x, y) by the evaluation protocol."""
    from .train import fit, pick_device, predict_tensor

    device = pick_device(cfg.device)
    transform = data.transform(augment, cutout)
    accs = []
    for k in range(cfg.n_nets):
        torch.manual_seed(seed * 1009 + k)
        net = build_convnet(model_config["num_classes"], model_config["image_size"], model_config["width"],
                            model_config["depth"], model_config["norm"])
        lr0 = float(pieces[0]) if pieces else float(lr)
        fit(net, F.cross_entropy, (x, y), None, epochs=epochs, batch_size=batch_size or cfg.batch_size,
            seed=seed * 1009 + k,
            optimizer=lambda p, lr0=lr0: torch.optim.SGD(p, lr=lr0, momentum=cfg.momentum,
                                                         weight_decay=cfg.weight_decay),
            scheduler=_schedule(epochs, pieces), transform=transform, restore_best=False, device=device,
            amp=False, progress=False)
        out = predict_tensor(net, data.x_test, transform, device=device, amp=False)
        accs.append(accuracy(out, data.y_test))
        if log:
            log.info("net %d: test accuracy %.4f", k, accs[-1])
    return accs


def summary(accs: list[float]) -> dict:
    a = np.asarray(accs, float)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "runs": a.tolist()}


def evaluate_synthetic(syn: dict, data: Data, cfg: EvalConfig, seed: int, augment=True, cutout=0.5, log=None):
    alpha = syn["alpha"].flatten().tolist()
    pieces = None
    if len(alpha) > 1:
        used = syn.get("alpha_epochs_used") or len(alpha)
        pieces = alpha[:used]
    accs = train_eval_nets(syn["images"], syn["labels"], data, syn["model_config"], alpha[0], cfg.epochs, cfg,
                           seed, augment=augment, cutout=cutout, pieces=pieces, log=log)
    return summary(accs)


def evaluate_baseline(kind: str, ipc: int, data: Data, model_config: dict, cfg: EvalConfig, seed: int,
                      augment=True, cutout=0.5, log=None) -> dict:
    """``random`` (ipc random real images per class), ``mean`` (class means) or ``full`` (all training data)."""
    if kind == "random":
        x, y = real_per_class(data, ipc, seed + 17)
        accs = train_eval_nets(x, y, data, model_config, cfg.baseline_lr, cfg.epochs, cfg, seed,
                               augment=augment, cutout=cutout, log=log)
    elif kind == "mean":
        x, y = mean_per_class(data, ipc, seed + 17, data.transform(False, 0))
        accs = train_eval_nets(x, y, data, model_config, cfg.baseline_lr, cfg.epochs, cfg, seed,
                               augment=augment, cutout=cutout, log=log)
    elif kind == "full":
        accs = train_eval_nets(data.x_train, data.y_train, data, model_config, cfg.full_lr, cfg.full_epochs,
                               cfg, seed, augment=augment, cutout=cutout, batch_size=cfg.full_batch_size, log=log)
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


# --------------------------------------------------------------------------- memory / speed probe


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE"))


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS (VmHWM) on Linux; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since start or the last :func:`reset_peak_rss` (VmHWM; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def probe_iteration(image_size: int = 32, ipc: int = 1, syn_steps: int = 10, width: int = 128, depth: int = 3,
                    n_classes: int = 5, memory: str = "constant", leaf: int = 4, batch_syn: int = 0,
                    repeats: int = 1, device: str = "cpu", seed: int = 0) -> dict:
    """One distillation iteration (matching gradient + update) on random data: seconds and peak memory.

    CPU: peak RSS (VmHWM, reset just before the measured call) minus the RSS at that moment, after a
    warm-up iteration with N = 1; run it in a fresh process with ``MALLOC_MMAP_THRESHOLD_`` small so that
    freed tensors leave the RSS (see :func:`probe_subprocess`).  CUDA: ``max_memory_allocated`` increment.
    """
    from .augment import AugmentConfig
    from .student import flat_params

    dev = torch.device(device)
    torch.manual_seed(seed)
    net = build_convnet(n_classes, image_size, width, depth).to(dev)
    student = Student(net)
    theta0 = flat_params(net).to(dev)
    target = theta0 + 0.01 * torch.randn_like(theta0)
    transform = BatchTransform([0.5] * 3, [0.25] * 3, AugmentConfig(), cutout=0.5)
    syn = torch.randn(n_classes * ipc, 3, image_size, image_size, device=dev, requires_grad=True)
    labels = torch.arange(n_classes, device=dev).repeat_interleave(ipc)
    opt = torch.optim.SGD([syn], lr=100.0, momentum=0.5)
    bsz = len(syn) if batch_syn <= 0 else min(batch_syn, len(syn))

    def one(n, it):
        plan = []
        for k in range(n):
            idx = torch.randperm(len(syn), generator=torch.Generator().manual_seed(it * 1000 + k))[:bsz].to(dev)
            p = {kk: v.to(dev) for kk, v in transform.sample(bsz, step_generator(seed, it, k)).items()}
            plan.append((idx, p))
        loss, g, ga = matching_loss(student, theta0, target, 1.0, syn.detach(), labels, torch.tensor(0.01, device=dev),
                                    plan, transform, memory, leaf)
        syn.grad = g
        opt.step()
        return loss

    one(1, 0)  # warm-up: kernels, allocator, optimizer state
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    reset_peak_rss()
    before = _rss_bytes()
    t0 = time.perf_counter()
    for r in range(repeats):
        one(syn_steps, r + 1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / repeats
    peak_rss = peak_rss_bytes()
    out = {"image_size": image_size, "ipc": ipc, "syn_steps": syn_steps, "width": width, "memory": memory,
           "batch_syn": bsz, "device": str(dev), "seconds_per_iteration": round(sec, 4),
           "rss_before_mb": round(before / 2**20, 2), "peak_rss_mb": round(peak_rss / 2**20, 2),
           "peak_increment_mb": round((peak_rss - before) / 2**20, 2)}
    if dev.type == "cuda":
        out["cuda_peak_increment_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 2)
    return out


def probe_subprocess(threads: int = 2, **kw) -> dict:
    """:func:`probe_iteration` in a fresh Python process (so that ``ru_maxrss`` is this probe's own)."""
    import json
    import subprocess

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    code = ("import json, sys, torch; torch.set_num_threads(%d); from gzmorph.distill import probe_iteration; "
            "print('PROBE' + json.dumps(probe_iteration(**json.loads(sys.argv[1]))))" % threads)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kw)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"memory probe failed: {proc.stderr[-2000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE")][-1]
    return json.loads(line[5:])
