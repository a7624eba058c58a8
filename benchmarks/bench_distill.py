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


def _timed(one, syn_steps: int, repeats: int, warm_up: bool = True) -> dict:
    """Run ``one(syn_steps, it)`` ``repeats`` times after a warm-up ``one(1, 0)`` (kernels, allocator,
    optimizer state): seconds per iteration and the peak RSS above the RSS before (reset just before)."""
    if warm_up:
        one(1, 0)
    reset_peak_rss()
    before = rss_bytes()
    t0 = time.perf_counter()
    for r in range(repeats):
        one(syn_steps, r + 1)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / repeats
    peak_rss = peak_rss_bytes()
    return {"seconds_per_iteration": round(sec, 4), "rss_before_mb": round(before / 2**20, 2),
            "peak_rss_mb": round(peak_rss / 2**20, 2), "peak_increment_mb": round((peak_rss - before) / 2**20, 2)}


def probe_iteration(image_size: int = 32, ipc: int = 1, syn_steps: int = 10, width: int = 128, depth: int = 3,
                    n_classes: int = 5, memory: str = "constant", leaf: int = 4, batch_syn: int = 0,
                    repeats: int = 1, device: str = "cpu", seed: int = 0, augment: bool = True,
                    budget_mb: float = 0) -> dict:
    """One distillation iteration (matching gradient + update) on random data: seconds and peak memory.

    CPU: peak RSS (VmHWM, reset just before the measured call) minus the RSS at that moment, after a
    warm-up iteration with N = 1; run it in a fresh process with ``MALLOC_MMAP_THRESHOLD_`` small so that
    freed tensors leave the RSS (see :func:`probe_subprocess`).  CUDA: ``max_memory_allocated`` increment.
    ``memory="auto"`` plans the mode from ``budget_mb`` (0: what the device has) as the stage does;
    ``augment=False`` draws no DSA augmentation (the inner loop alone, as :func:`probe_reference`).
    """
    from gzmorph.augment import AugmentConfig, BatchTransform
    from gzmorph.experts import step_generator
    from gzmorph.matching import auto_memory, matching_loss
    from gzmorph.models import build_convnet
    from gzmorph.student import Student, flat_params

    dev = torch.device(device)
    torch.manual_seed(seed)
    net = build_convnet(n_classes, image_size, width, depth).to(dev)
    student = Student(net)
    theta0 = flat_params(net).to(dev)
    target = theta0 + 0.01 * torch.randn_like(theta0)
    transform = (BatchTransform([0.5] * 3, [0.25] * 3, AugmentConfig(), cutout=0.5) if augment else
                 BatchTransform([0.5] * 3, [0.25] * 3))
    syn = torch.randn(n_classes * ipc, 3, image_size, image_size, device=dev, requires_grad=True)
    labels = torch.arange(n_classes, device=dev).repeat_interleave(ipc)
    opt = torch.optim.SGD([syn], lr=100.0, momentum=0.5)
    bsz = len(syn) if batch_syn <= 0 else min(batch_syn, len(syn))
    mode, graph_steps = memory, (syn_steps if memory == "unroll" else 0)
    if memory == "auto":
        mode, graph_steps, _ = auto_memory(student, theta0, syn.detach()[:bsz], labels[:bsz], transform, syn_steps,
                                           budget_mb, leaf)

    def one(n, it):
        plan = []
        for k in range(n):
            idx = torch.randperm(len(syn), generator=torch.Generator().manual_seed(it * 1000 + k))[:bsz].to(dev)
            p = transform.sample(bsz, step_generator(seed, it, k))
            plan.append((idx, None if p is None else {kk: v.to(dev) for kk, v in p.items()}))
        loss, g, ga = matching_loss(student, theta0, target, 1.0, syn.detach(), labels, torch.tensor(0.01, device=dev),
                                    plan, transform, mode, leaf, graph_steps=min(graph_steps, n))
        syn.grad = g
        opt.step()
        return loss

    if dev.type == "cuda":
        one(1, 0)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    out = {"image_size": image_size, "ipc": ipc, "syn_steps": syn_steps, "width": width, "memory": memory,
           **({"budget_mb": budget_mb, "planned": f"{mode}, last {graph_steps} steps unrolled"}
              if memory == "auto" else {}), "augment": augment, "batch_syn": bsz, "device": str(dev),
           **_timed(one, syn_steps, repeats, warm_up=dev.type != "cuda")}
    if dev.type == "cuda":
        out["cuda_peak_increment_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 2)
    return out


def probe_reference(reference: str, image_size: int = 32, ipc: int = 10, syn_steps: int = 10, width: int = 128,
                    depth: int = 3, n_classes: int = 10, repeats: int = 1, seed: int = 0, **_) -> dict:
    """The inner loop of the MTT reference (Cazenavette et al., github.com/GeorgeCazenavette/mtt-distillation,
    a checkout at ``reference``) on its own ConvNet and ReparamModule: ``syn_steps`` create_graph SGD steps
    of the student on all the synthetic images, the normalised parameter loss, one backward and the image
    and step-size updates (its distill.py, without DSA and logging).  Measured as :func:`probe_iteration`."""
    sys.path.insert(0, reference)
    from networks import ConvNet
    from reparam_module import ReparamModule

    torch.manual_seed(seed)
    net = ConvNet(3, n_classes, width, depth, "relu", "instancenorm", "avgpooling", (image_size, image_size))
    student_net = ReparamModule(net)
    student_net.train()
    start = student_net.flat_param.detach().clone()  # its own flattening of the net's parameters
    num_params = start.numel()
    target = start + 0.01 * torch.randn_like(start)
    image_syn = torch.randn(n_classes * ipc, 3, image_size, image_size, requires_grad=True)
    y_hat = torch.arange(n_classes).repeat_interleave(ipc)
    syn_lr = torch.tensor(0.01, requires_grad=True)
    optimizer_img = torch.optim.SGD([image_syn], lr=100.0, momentum=0.5)
    optimizer_lr = torch.optim.SGD([syn_lr], lr=1e-5, momentum=0.5)
    criterion = torch.nn.CrossEntropyLoss()

    def one(n, it):
        student_params = [start.clone().requires_grad_(True)]
        for k in range(n):
            idx = torch.randperm(len(image_syn), generator=torch.Generator().manual_seed(it * 1000 + k))
            out = student_net(image_syn[idx], flat_param=student_params[-1])
            grad = torch.autograd.grad(criterion(out, y_hat[idx]), student_params[-1], create_graph=True)[0]
            student_params.append(student_params[-1] - syn_lr * grad)
        loss = (torch.nn.functional.mse_loss(student_params[-1], target, reduction="sum") / num_params
                / (torch.nn.functional.mse_loss(start, target, reduction="sum") / num_params))
        optimizer_img.zero_grad()
        optimizer_lr.zero_grad()
        loss.backward()
        optimizer_img.step()
        optimizer_lr.step()
        return float(loss)

    return {"image_size": image_size, "ipc": ipc, "syn_steps": syn_steps, "width": width, "memory": "reference",
            "augment": False, "batch_syn": n_classes * ipc, "device": "cpu", **_timed(one, syn_steps, repeats)}


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


def compare_with_reference(a) -> None:
    """The reference's inner loop beside gzmorph's memory modes on one workload (ConvNet-D3, --width, 32 px,
    IPC 10, 10 classes, all 100 images per step, no augmentation, --threads), one fresh process each, for
    every N of --steps; prints one JSON document (and writes it to --out)."""
    if not a.reference or not os.path.isfile(os.path.join(a.reference, "reparam_module.py")):
        sys.exit(f"--reference {a.reference!r}: not a checkout of github.com/GeorgeCazenavette/mtt-distillation "
                 "(reparam_module.py, networks.py); clone it and pass its folder or set GZMORPH_MTT_REFERENCE")
    work = dict(image_size=32, ipc=10, n_classes=10, width=a.width, repeats=a.repeats)
    runs = []
    for n in a.steps:
        probes = [dict(reference=a.reference)] + [dict(memory=m, augment=False) for m in a.memory]
        probes += [dict(memory="auto", budget_mb=b, augment=False) for b in a.budgets]
        for kw in probes:
            r = probe_subprocess(threads=a.threads, syn_steps=n, **work, **kw)
            runs.append(r)
            print(json.dumps(r), flush=True)
    table = {}
    for r in runs:
        ref = next(q for q in runs if q["memory"] == "reference" and q["syn_steps"] == r["syn_steps"])
        key = r["memory"] + (f"@{r['budget_mb']:g}MB" if "budget_mb" in r else "")
        table.setdefault(f"N={r['syn_steps']}", {})[key] = {
            "s_per_iter": r["seconds_per_iteration"], "peak_increment_mb": r["peak_increment_mb"],
            "time_vs_reference": round(r["seconds_per_iteration"] / ref["seconds_per_iteration"], 3),
            **({"planned": r["planned"]} if "planned" in r else {})}
    out = {"workload": {**work, "depth": 3, "threads": a.threads, "augment": False, "batch_syn": 100},
           "reference": a.reference, "table": table, "runs": runs}
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


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
    ap.add_argument("--reference", nargs="?", const=os.environ.get("GZMORPH_MTT_REFERENCE", ""), default=None,
                    help="compare with the MTT reference's inner loop: a checkout of "
                         "github.com/GeorgeCazenavette/mtt-distillation (default $GZMORPH_MTT_REFERENCE)")
    ap.add_argument("--budgets", type=float, nargs="*", default=[],
                    help="with --reference: memory budgets (MB) of extra memory: auto runs")
    ap.add_argument("--probe", default="", help=argparse.SUPPRESS)  # the child of probe_subprocess
    a = ap.parse_args(argv)
    if a.probe:
        torch.set_num_threads(a.threads)
        kw = json.loads(a.probe)
        print("PROBE" + json.dumps(probe_reference(**kw) if kw.get("reference") else probe_iteration(**kw)))
        return
    if a.reference is not None:
        return compare_with_reference(a)
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
