"""Distillation cost: seconds per iteration and peak memory for N student steps (and expert images/s).

One fresh process per configuration (:func:`probe_subprocess`): a warm-up iteration with
N = 1, then the peak-RSS high-water mark (VmHWM) is reset and one (``--repeats``) full iteration runs
(forward unroll, reverse sweep, update); ``peak_increment_mb`` = peak RSS − RSS before the call.
glibc's mmap threshold is fixed at 64 KiB in the child so that freed tensors leave the RSS (an honest
CPU measure of what the iteration holds at its peak).  On CUDA: ``max_memory_allocated`` increment.
Prints one JSON document::

    .venv/bin/python benchmarks/bench_distill.py                       # width 128, N 10/20/40, IPC 1/10, 32/64 px
    .venv/bin/python benchmarks/bench_distill.py --width 16 --memory constant unroll --out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

# --------------------------------------------------------------------------- memory / speed probe


def rss_bytes() -> int:
    """The current resident set size (Linux)."""
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
    from gzmorph.augment import AugmentConfig, BatchTransform
    from gzmorph.experts import step_generator
    from gzmorph.matching import matching_loss
    from gzmorph.models import build_convnet
    from gzmorph.student import Student, flat_params

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
    before = rss_bytes()
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
    """:func:`probe_iteration` in a fresh Python process (this file run with ``--probe``), so that the
    peak RSS is this probe's own."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, __file__, "--probe", json.dumps(kw), "--threads", str(threads)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"memory probe failed: {proc.stderr[-2000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE")][-1]
    return json.loads(line[5:])



def expert_images_per_s(image_size: int, width: int, device: str, threads: int, steps: int = 10) -> float:
    from gzmorph.augment import AugmentConfig, BatchTransform
    from gzmorph.models import build_convnet

    torch.set_num_threads(threads)
    dev = torch.device(device)
    net = build_convnet(5, image_size, width=width).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    t = BatchTransform([0.5] * 3, [0.25] * 3, AugmentConfig(), cutout=0.5)
    x = (torch.rand(256, image_size, image_size, 3) * 255).to(torch.uint8).to(dev)
    y = torch.randint(0, 5, (256,), device=dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    for i in range(steps + 2):
        if i == 2:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(t(x, gen, True)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return 256 * steps / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--memory", nargs="+", default=["constant"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="")
    ap.add_argument("--probe", default="", help=argparse.SUPPRESS)  # the child of probe_subprocess
    a = ap.parse_args(argv)
    if a.probe:
        torch.set_num_threads(a.threads)
        print("PROBE" + json.dumps(probe_iteration(**json.loads(a.probe))))
        return
    devices = [a.device] + (["cuda"] if a.device == "cpu" and torch.cuda.is_available() else [])
    runs = []
    for dev in devices:
        for mem in a.memory:
            for size in a.sizes:
                for ipc in a.ipc:
                    for n in a.steps:
                        r = probe_subprocess(threads=a.threads, image_size=size, ipc=ipc, syn_steps=n, width=a.width,
                                             memory=mem, repeats=a.repeats, device=dev)
                        runs.append(r)
                        print(json.dumps(r), flush=True)
    ratios = {}
    for r in runs:
        if r["syn_steps"] == max(a.steps):
            base = [q for q in runs if q["syn_steps"] == min(a.steps) and all(
                q[k] == r[k] for k in ("image_size", "ipc", "memory", "device"))]
            if base:
                key = "cuda_peak_increment_mb" if r["device"].startswith("cuda") else "peak_increment_mb"
                ratios[f"{r['device']}/{r['memory']}/{r['image_size']}px/ipc{r['ipc']}"] = round(
                    r[key] / max(base[0][key], 1e-9), 3)
    out = {"runs": runs, f"peak_ratio_N{max(a.steps)}_vs_N{min(a.steps)}": ratios,
           "expert_images_per_s": {f"{d}/{s}px": round(expert_images_per_s(s, a.width, d, a.threads), 1)
                                   for d in devices for s in a.sizes},
           "width": a.width, "threads": a.threads}
    text = json.dumps(out, indent=2)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
