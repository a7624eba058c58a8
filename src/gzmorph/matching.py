"""The matching loss of trajectory matching and its exact gradient, in bounded memory.

``N`` SGD steps of a student started at an expert's parameters θ*_t::

    θ̂_0 = θ*_t,   θ̂_{k+1} = θ̂_k − α ∇ℓ(θ̂_k; A_k(X[b_k])),
    loss = ‖θ̂_N − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖²

(``A_k``: the shared differentiable augmentation, drawn per step; ``plan`` holds the batches
``b_k`` and the draws).  Back-propagating through the ``N`` steps is done by an explicit
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
linear in N with all activations).  In between, ``graph_steps=K`` unrolls the last
``K`` steps with plain autograd (their activations kept, no recomputation) and sweeps the
first ``N − K`` in reverse as ``memory`` says, starting from the λ autograd hands back:
time falls step by step from ``store`` to ``unroll`` as memory grows.  :func:`plan_memory`
picks the mode and ``K`` from a memory budget (``memory="auto"``).  All give the same gradient.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from .augment import BatchTransform
from .distill_settings import MEMORY_MODES
from .io import InputError
from .student import Student


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
                  memory: str = "constant", leaf: int = 4, need_grad: bool = True, graph_steps: int = 0):
    """Matching loss and its gradients w.r.t. the synthetic images and α.

    ``plan``: one ``(indices, augmentation params)`` per student step; ``alpha`` a 0-d tensor.
    ``memory``: ``constant``/``store``/``unroll`` (module docstring); with ``graph_steps`` K > 0 the
    last K steps are unrolled with autograd and the rest follow ``memory``.
    Returns ``(loss, grad_syn, grad_alpha)`` (grads ``None`` without ``need_grad``).
    """
    if memory not in MEMORY_MODES or memory == "auto":
        raise InputError(f"distill.memory must be one of {MEMORY_MODES[:-1]} here (auto is resolved by "
                         f"plan_memory), not {memory!r}")
    n = len(plan)
    a = float(alpha)
    tail = 0 if not need_grad else n if memory == "unroll" else max(0, min(int(graph_steps), n))
    head = n - tail  # steps 0 .. head-1 swept in reverse by the adjoint; head .. n-1 by autograd

    def batch(k, x=None):
        idx, p = plan[k]
        return transform.apply((syn if x is None else x)[idx], p), labels[idx]

    def step(th, k):
        with torch.no_grad():
            xb, yb = batch(k)
        return th - a * _ce_grad(student, th, xb.detach(), yb)

    keep = set(range(1, head)) if memory == "store" else _spine(head, leaf)
    cache, th = {}, theta0.detach()
    for k in range(head):
        th = step(th, k)
        if (k + 1) in keep and k + 1 < head:
            cache[k + 1] = th
    g_syn = torch.zeros_like(syn)
    g_alpha = torch.zeros((), dtype=syn.dtype, device=syn.device)
    if tail:  # the last steps as one autograd graph: their gradients, and λ at step `head`
        with torch.enable_grad():
            x = syn.detach().requires_grad_(True)
            al = alpha.detach().clone().requires_grad_(True)
            th_head = th.detach().clone().requires_grad_(True)
            th = th_head
            for k in range(head, n):
                xb, yb = batch(k, x)
                th = th - al * _ce_grad(student, th, xb, yb, create_graph=True)
            loss_t = ((th - target) ** 2).sum() / denom
            gx, ga, lam = torch.autograd.grad(loss_t, [x, al, th_head], allow_unused=head == 0)
        loss = float(loss_t.detach())
        del th, th_head, loss_t, x, al
        g_syn += gx
        g_alpha += ga
        if head == 0:
            return loss, g_syn, g_alpha
    else:
        loss = float(((th - target) ** 2).sum() / denom)
        if not need_grad:
            return loss, None, None
        lam = 2 * (th - target) / denom
        del th
    for k, th_k in _reverse_states(theta0.detach(), head, step, head if memory == "store" else leaf, cache):
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


# --------------------------------------------------------------------------- automatic memory mode


def step_graph_bytes(student: Student, theta, x, y, transform: BatchTransform | None = None, params=None) -> int:
    """Bytes that one differentiable student step keeps alive for the backward pass: the tensors its
    forward pass and its create_graph gradient save (counted once per storage), and the new θ."""
    seen: dict[int, int] = {}

    def pack(t):
        if t.device.type != "meta":
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        xx = x.detach().requires_grad_(True)
        th = theta.detach().clone().requires_grad_(True)
        xb = transform.apply(xx, params) if transform is not None else xx
        th2 = th - 0.01 * _ce_grad(student, th, xb, y, create_graph=True)
    return int(sum(seen.values()) + th2.numel() * th2.element_size())


def cgroup_limit_bytes(proc: str | Path = "/proc/self/cgroup", root: str | Path = "/sys/fs/cgroup") -> int | None:
    """The tightest memory limit of this process's cgroup and its ancestors (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), as a Slurm job or a container sets it; ``None`` without one.
    ``proc`` and ``root`` are where the kernel shows them."""
    root, limits = Path(root), []
    try:
        lines = Path(proc).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one unified hierarchy
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):  # v1
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        here = base / path.lstrip("/")
        while True:
            try:
                text = (here / name).read_text().strip()
                if text.isdigit() and int(text) < 2**60:  # v1 writes "no limit" as a huge number
                    limits.append(int(text))
            except OSError:
                pass
            if here == base:
                break
            here = here.parent
    return min(limits) if limits else None


def device_budget_bytes(device: torch.device) -> int:
    """The memory distillation may use when the config gives none, from the machine's totals (not
    from what happens to be free, so that the same machine always plans the same way): 80 % of
    the GPU's memory, or half of the system's memory or of its cgroup's limit (e.g. a Slurm job's)."""
    if device.type == "cuda":
        return int(0.8 * torch.cuda.get_device_properties(device).total_memory)
    try:
        total = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError):
        total = 8 * 2**30
    limit = cgroup_limit_bytes()
    return int(0.5 * (total if limit is None else min(total, limit)))


#: a student step's measured graph is planned at this multiple: the backward pass's own buffers
#: and the allocator's slack come on top of the tensors saved for it
STEP_MARGIN = 1.3


def plan_memory(n_steps: int, step_bytes: int, param_bytes: int, budget_bytes: int, leaf: int = 4) -> tuple[str, int]:
    """``(memory, graph_steps)`` for ``n_steps`` student steps within ``budget_bytes``: unroll when
    every step's graph fits; else keep the graphs of as many last steps as fit beside a snapshot of
    each other step (``store``), or beside the O(log N) snapshots of ``constant`` when even the
    snapshots do not fit.  Time falls as the budget grows: each unrolled step saves one recomputed
    gradient.  ``step_bytes`` is taken at :data:`STEP_MARGIN` times."""
    step_bytes = int(STEP_MARGIN * step_bytes)
    if n_steps * step_bytes <= budget_bytes:
        return "unroll", n_steps
    if n_steps * param_bytes <= budget_bytes and step_bytes > param_bytes:
        k = (budget_bytes - n_steps * param_bytes) // (step_bytes - param_bytes)
        return "store", int(max(0, min(n_steps - 1, k)))
    spine = (max(1, n_steps).bit_length() + leaf + 2) * param_bytes
    return "constant", int(max(0, min(n_steps - 1, (budget_bytes - spine) // max(1, step_bytes))))


def auto_memory(student: Student, theta, x, y, transform: BatchTransform, n_steps: int, budget_mb: float = 0,
                leaf: int = 4) -> tuple[str, int, dict]:
    """``memory: auto``: ``(memory, graph_steps, facts)`` for ``n_steps`` student steps on batches like
    ``x, y`` (one augmentation draw), within ``budget_mb`` (0: :func:`device_budget_bytes`); ``facts``
    holds the budget, the measured step graph and the parameter bytes, for the log."""
    params = transform.sample(len(x), torch.Generator().manual_seed(0), device="cpu")
    params = None if params is None else {k: v.to(x.device) for k, v in params.items()}
    # a step is measured in float32 whatever ``student.dtype``: under bf16 the saved tensors are smaller,
    # but a 2,900 MB budget planned from them peaked at 4.2 GB (float32's plan: 3.4 GB; docs/results.md)
    step = step_graph_bytes(Student(student.model, None, student.channels_last), theta, x, y, transform, params)
    param_bytes = theta.numel() * theta.element_size()
    budget = int(budget_mb * 2**20) if budget_mb > 0 else device_budget_bytes(theta.device)
    memory, k = plan_memory(n_steps, step, param_bytes, budget, leaf)
    return memory, k, {"budget_bytes": budget, "step_bytes": step, "param_bytes": param_bytes}
