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
linear in N with all activations).  All three give the same gradient.
"""

from __future__ import annotations

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
