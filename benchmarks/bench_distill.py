"""Distillation cost: seconds per iteration and peak memory for N student steps (and expert images/s).

One fresh process per configuration (``gzmorph.distill.probe_subprocess``): a warm-up iteration with
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
import time

import torch


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
    from gzmorph.distill import probe_subprocess

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
    a = ap.parse_args(argv)
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
