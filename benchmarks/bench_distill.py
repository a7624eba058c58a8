"""Distillation cost: seconds per iteration and peak memory of ``gzmorph.distill.distill`` (and expert images/s).

Every configuration runs in a fresh process (:func:`probe_subprocess`): ``distill()`` itself on a random
labelled image set and a 3-epoch expert of the same ConvNet-D3 (MTT, all images in every student step,
image lr 1,000, learned log α, M = 2, DSA single mode), one warm-up iteration and then ``--repeats`` (5) timed ones; it
reports their median and the peak RSS of the whole process.  Each gzmorph probe runs as a distill job
does: by default with ``distill.keep_freed_memory`` (:mod:`gzmorph.allocator`; the ``paper`` preset's
setting for this width-128 workload; the workflow's default is off), or under glibc's own allocator
with ``--keep-freed-memory 0``.  The reference runs as its users run it, under glibc's own
allocator (``--reference-keeps-freed-memory 0 1`` also times it with gzmorph's setting).
``--mmap-threshold 64`` (with ``--keep-freed-memory 0``) fixes glibc's mmap threshold at 64 KiB in
the child, as sessions 5-8 measured, so that freed tensors leave the RSS at once; every iteration
then pays page faults (``matching_loss`` alone on 2 cores, width 128, N 10: fp32 12.4 s against
8.5 s, bf16 9.9 s against 5.7 s).
On CUDA, also ``max_memory_allocated``.
With a checkout of the MTT reference (``--reference``, default ``$GZMORPH_MTT_REFERENCE``) its inner loop
runs beside it on the same workload (:func:`compare_with_reference`: the reference's ConvNet and
ReparamModule, imported from the checkout, stepped as its ``distill.py`` does); without one, a message
on stderr says that the comparison is skipped.  Prints one JSON document::

    .venv/bin/python benchmarks/bench_distill.py                       # width 128, 32 px, N 10/20/40, IPC 1/10
    .venv/bin/python benchmarks/bench_distill.py --width 16 --memory constant unroll --out bench.json
    .venv/bin/python benchmarks/bench_distill.py --reference ~/mtt-distillation --memory unroll --budgets 2900
    .venv/bin/python benchmarks/bench_distill.py --reference ~/mtt-distillation --steps 10 --amp off bf16
    .venv/bin/python benchmarks/bench_distill.py --reference ~/mtt-distillation --steps 20 --rounds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from gzmorph.allocator import THP_ENV, keep_freed_memory
from gzmorph.distill_settings import DISTILL_AMP

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


def _median_timed(one, syn_steps: int, repeats: int) -> dict:
    """``one(syn_steps, it)`` once as a warm-up, then ``repeats`` times: :func:`_timing` of those."""
    one(syn_steps, 0)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        one(syn_steps, r + 1)
        times.append(time.perf_counter() - t0)
    return _timing(times)


def _timing(times: list[float]) -> dict:
    """The median seconds per iteration of ``times`` and the peak RSS of the whole process (VmHWM, never reset)."""
    return {"seconds_per_iteration": round(statistics.median(times), 4), "seconds_runs": [round(t, 3) for t in times],
            "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1)}


def workload_data(image_size: int = 32, n_classes: int = 10, per_class: int = 20, seed: int = 0):
    """A random labelled image set (:class:`gzmorph.experts.Data`): the same for the same arguments, so
    that the parent's expert fits every child's data."""
    from gzmorph.experts import Data

    g = torch.Generator().manual_seed(seed)
    n = n_classes * per_class
    x = torch.randint(0, 256, (n, image_size, image_size, 3), generator=g, dtype=torch.uint8)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    return Data(classes=[f"c{k}" for k in range(n_classes)], x_train=x, y_train=y, x_test=x[:n_classes],
                y_test=y[::per_class].clone(), mean=[0.5] * 3, std=[0.25] * 3, image_size=image_size,
                fingerprint=f"bench-{image_size}-{n_classes}-{per_class}-{seed}")


def write_expert(folder: str, image_size: int, n_classes: int, width: int, depth: int = 3) -> str:
    """A 3-epoch expert of the workload's ConvNet on :func:`workload_data` (its file path)."""
    from gzmorph.distill_settings import ExpertConfig
    from gzmorph.experts import train_expert

    path = os.path.join(folder, f"expert-{image_size}px-{n_classes}c-w{width}-d{depth}.safetensors")
    if not os.path.exists(path):
        cfg = ExpertConfig(epochs=3, lr=0.01, batch_size=64, width=width, depth=depth, augment=False, device="cpu")
        train_expert(workload_data(image_size, n_classes), path, cfg, work_dir=os.path.join(folder, "work"))
    return path


def probe_distill(expert: str, image_size: int = 32, ipc: int = 10, syn_steps: int = 10, width: int = 128,
                  depth: int = 3, n_classes: int = 10, memory: str = "auto", budget_mb: float = 0,
                  repeats: int = 5, device: str = "cpu", seed: int = 0, augment: bool = False, amp: str = "off",
                  channels_last: bool = False, **_) -> dict:
    """:func:`gzmorph.distill.distill` itself (MTT, all ``n_classes × ipc`` images in every student step,
    image lr 1,000, learned log α from α = 0.01, M = 2) for ``repeats + 1`` iterations: the first
    is the warm-up; the median seconds of the others and the peak RSS of the whole process (run it in a
    fresh process: :func:`probe_subprocess`).  ``memory="auto"`` plans from ``budget_mb`` (0: what the
    device has) and reports the plan.  ``augment=False`` draws no DSA augmentation, as the reference's
    inner loop (:func:`probe_reference`).  ``amp``, ``channels_last``: the student's forward pass
    (``distill.amp``, ``distill.channels_last``)."""
    import logging

    from gzmorph.distill import distill
    from gzmorph.distill_settings import DistillConfig, ExpertConfig

    plans = []

    class _Plan(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("distill memory"):
                plans.append(record.getMessage().split(": ")[-1])

    logging.getLogger("gzmorph.distill").addHandler(_Plan())
    logging.getLogger("gzmorph.distill").setLevel(logging.INFO)
    # log α (lr 1e-3) keeps α > 0 on random images, so that no iteration is rolled back
    cfg = DistillConfig(method="mtt", ipc=ipc, syn_steps=syn_steps, iterations=repeats + 1, lr_img=1000.0,
                        alpha0=0.01, alpha_param="log", lr_alpha=1e-3, expert_epochs=2, max_start_epoch=1,
                        memory=memory, memory_budget_mb=int(budget_mb), amp=amp, channels_last=channels_last,
                        seed=seed, device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model_config = ExpertConfig(width=width, depth=depth).model_config(n_classes, image_size)  # the expert's
    result = distill(workload_data(image_size, n_classes), [expert], cfg, model_config, augment=augment)
    times = [row["seconds"] for row in result["history"]][1:]
    if len(times) < repeats:
        raise RuntimeError(f"only {len(times)} timed iterations: {result['events']}")
    out = {"image_size": image_size, "ipc": ipc, "syn_steps": syn_steps, "width": width, "memory": memory,
           **({"budget_mb": budget_mb, "planned": plans[-1] if plans else "?"} if memory == "auto" else {}),
           "amp": amp, "channels_last": channels_last, "augment": augment, "batch_syn": n_classes * ipc,
           "device": device, **_timing(times)}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def probe_reference(reference: str, image_size: int = 32, ipc: int = 10, syn_steps: int = 10, width: int = 128,
                    depth: int = 3, n_classes: int = 10, repeats: int = 1, seed: int = 0, **_) -> dict:
    """The inner loop of the MTT reference (Cazenavette et al., github.com/GeorgeCazenavette/mtt-distillation,
    a checkout at ``reference``) on its own ConvNet and ReparamModule: ``syn_steps`` create_graph SGD steps
    of the student on all the synthetic images, the normalised parameter loss, one backward and the image
    and step-size updates (its distill.py, without DSA and logging).  A full iteration as the warm-up,
    then the median of ``repeats`` and the peak RSS of the whole process, as :func:`probe_distill`."""
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
    optimizer_img = torch.optim.SGD([image_syn], lr=1000.0, momentum=0.5)
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
            "augment": False, "batch_syn": n_classes * ipc, "device": "cpu", **_median_timed(one, syn_steps, repeats)}


def probe_subprocess(threads: int = 2, mmap_threshold_kb: int = 0, keep_freed_memory: bool = False, **kw) -> dict:
    """:func:`probe_distill` (or with ``reference``, :func:`probe_reference`) in a fresh Python process
    (this file run with ``--probe``), so that the peak RSS is this probe's own; ``mmap_threshold_kb``
    > 0 fixes glibc's mmap threshold there (0: glibc's default); ``keep_freed_memory`` sets the
    process up as a distill job with ``distill.keep_freed_memory`` (:mod:`gzmorph.allocator`; torch's
    huge pages from the environment, since the probe imports torch first)."""
    if keep_freed_memory and mmap_threshold_kb > 0:
        raise ValueError("keep_freed_memory and a fixed mmap threshold contradict each other")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", THP_ENV):
        env.pop(var, None)
    if mmap_threshold_kb > 0:
        env["MALLOC_MMAP_THRESHOLD_"] = str(int(mmap_threshold_kb) * 1024)
    if keep_freed_memory:
        env[THP_ENV] = "1"
    kw = dict(kw, keep_freed_memory=bool(keep_freed_memory))
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
    """The reference's inner loop beside :func:`gzmorph.distill.distill` in each memory mode on one workload
    (ConvNet-D3, --width, 32 px, IPC 10, 10 classes, all 100 images per step, no augmentation, --threads),
    one fresh process each, for every N of --steps; prints one JSON document (and writes it to --out).
    With ``--rounds`` R > 1 the whole sequence runs R times, in reverse order every other round, so that
    a slow spell of the machine falls on both sides: each ratio is taken against the same round's
    reference, and the table gives their median and range (:func:`reference_table`)."""
    work = dict(**REFERENCE_WORKLOAD, width=a.width, repeats=a.repeats)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        expert = write_expert(tmp, work["image_size"], work["n_classes"], a.width)
        for n in a.steps:
            ours = [dict(memory=m) for m in a.memory] + [dict(memory="auto", budget_mb=b) for b in a.budgets]
            probes = [dict(reference=a.reference, keep_freed_memory=bool(k)) for k in a.reference_keeps_freed_memory]
            probes += [dict(**o, expert=expert, amp=amp, channels_last=bool(cl), keep_freed_memory=bool(k))
                       for amp in a.amp for cl in a.channels_last for k in a.keep_freed_memory for o in ours]
            for rnd in range(a.rounds):
                for kw in probes if rnd % 2 == 0 else probes[::-1]:
                    r = probe_subprocess(threads=a.threads, mmap_threshold_kb=a.mmap_threshold, syn_steps=n,
                                         **work, **kw)
                    r["round"] = rnd
                    runs.append(r)
                    print(json.dumps(r), flush=True)
    out = {"workload": {**work, "depth": 3, "threads": a.threads, "augment": False, "batch_syn": 100,
                        "mmap_threshold_kb": a.mmap_threshold or "glibc default"},
           "timing": f"median of {a.repeats} iterations after a warm-up iteration; peak RSS of the whole process"
                     + (f"; {a.rounds} rounds in alternating order: the median of the per-round ratios (each in ratios)"
                        if a.rounds > 1 else ""),
           "reference": a.reference, "table": reference_table(runs), "runs": runs}
    text = json.dumps(out, indent=1)
    print(text)
    write_out(a.out, text)


def reference_table(runs: list[dict]) -> dict:
    """``{"N=n": {variant: row}}`` of the probes of :func:`compare_with_reference`: each variant's time
    over the reference's of the same N and round (``time_vs_reference``: the median over rounds, with
    every round's in ``ratios`` when there are several), its median s/iteration and largest peak RSS."""
    def key(r):
        kept = r.get("keep_freed_memory", r["memory"] != "reference")
        return (r["memory"] + (f"@{r['budget_mb']:g}MB" if "budget_mb" in r else "")
                + ("+bf16" if r.get("amp") == "bf16" else "") + ("+channels_last" if r.get("channels_last") else "")
                + ("" if kept == (r["memory"] != "reference") else "+kept_memory" if kept else "+glibc_returns_memory"))

    # the reference as its users run it (glibc's own allocator) is the denominator
    ref = {(r["syn_steps"], r.get("round", 0)): r["seconds_per_iteration"] for r in runs
           if r["memory"] == "reference" and not r.get("keep_freed_memory")}
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["syn_steps"], key(r)), []).append(r)
    table = {}
    for (n, k), rs in groups.items():
        ratios = [r["seconds_per_iteration"] / ref[(n, r.get("round", 0))] for r in rs]
        row = {"s_per_iter": round(statistics.median(r["seconds_per_iteration"] for r in rs), 4),
               "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
               "time_vs_reference": round(statistics.median(ratios), 3)}
        if len(rs) > 1:
            row["ratios"] = [round(x, 3) for x in ratios]
        if "planned" in rs[-1]:
            row["planned"] = rs[-1]["planned"]
        table.setdefault(f"N={n}", {})[k] = row
    return table


def write_out(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (if given) whole or not at all."""
    if path:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)


#: the comparison with the reference: one workload, as issue #12 sets it (on the CPU)
REFERENCE_WORKLOAD = {"image_size": 32, "ipc": 10, "n_classes": 10}
#: the workloads timed without a reference, unless given
ALONE_DEFAULTS = {"ipc": [1, 10], "sizes": [32], "classes": 10, "device": "cpu"}


def is_reference_checkout(path: str | None) -> bool:
    return bool(path) and all(os.path.isfile(os.path.join(path, f)) for f in ("reparam_module.py", "networks.py"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 20, 40])
    # without --reference; the comparison's workload is fixed (compare_with_reference)
    ap.add_argument("--ipc", type=int, nargs="+", default=None, help=f"default {ALONE_DEFAULTS['ipc']}")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help=f"default {ALONE_DEFAULTS['sizes']}")
    ap.add_argument("--classes", type=int, default=None, help=f"default {ALONE_DEFAULTS['classes']}")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--memory", nargs="+", default=["auto"])
    ap.add_argument("--amp", nargs="+", default=["off"], choices=list(DISTILL_AMP),
                    help="the student's forward pass (distill.amp): each one listed is timed")
    ap.add_argument("--channels-last", nargs="+", type=int, default=[0], choices=[0, 1],
                    help="0 / 1: the student in channels-last format (distill.channels_last); each one listed is timed")
    ap.add_argument("--keep-freed-memory", nargs="+", type=int, default=[1], choices=[0, 1],
                    help="1: each gzmorph probe runs as a distill job with distill.keep_freed_memory (as the paper preset); "
                         "0: glibc's own allocator; each one listed is timed")
    ap.add_argument("--reference-keeps-freed-memory", nargs="+", type=int, default=[0], choices=[0, 1],
                    help="with --reference: 0 the reference as its users run it (the ratios' denominator), "
                         "1 also under gzmorph.allocator's setting; each one listed is timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mmap-threshold", type=int, default=0,
                    help="KiB: fix glibc's mmap threshold in each probe (64: as sessions 5-8 measured); "
                         "0: glibc's default")
    ap.add_argument("--repeats", type=int, default=5, help="timed iterations after the warm-up (their median)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --reference: run every probe this many times, alternating the order; "
                         "ratios against the same round's reference (their median)")
    ap.add_argument("--device", default=None,
                    help=f"default {ALONE_DEFAULTS['device']} (and cuda too where there is one)")
    ap.add_argument("--out", default="")
    ap.add_argument("--reference", default=None,
                    help="compare with the MTT reference's inner loop: a checkout of "
                         "github.com/GeorgeCazenavette/mtt-distillation (default $GZMORPH_MTT_REFERENCE; "
                         "without one, the comparison is skipped with a message; a --reference that is no "
                         "checkout is an error)")
    ap.add_argument("--budgets", type=float, nargs="*", default=[],
                    help="with --reference: memory budgets (MB): extra memory: auto runs")
    ap.add_argument("--probe", default="", help=argparse.SUPPRESS)  # the child of probe_subprocess
    a = ap.parse_args(argv)
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if a.mmap_threshold > 0 and 1 in a.keep_freed_memory + a.reference_keeps_freed_memory:
        ap.error("--mmap-threshold fixes glibc's threshold: give --keep-freed-memory 0 (and no kept memory for "
                 "the reference)")
    if a.probe:
        torch.set_num_threads(a.threads)
        kw = json.loads(a.probe)
        allocator = keep_freed_memory() if kw.get("keep_freed_memory") else "glibc's own"
        r = probe_reference(**kw) if kw.get("reference") else probe_distill(**kw)
        print("PROBE" + json.dumps({**r, "keep_freed_memory": bool(kw.get("keep_freed_memory")),
                                    "allocator": allocator}))
        return
    if a.reference is not None and not is_reference_checkout(a.reference):  # typed by the user: no long detour
        ap.error(f"--reference {a.reference!r} is not a checkout of github.com/GeorgeCazenavette/mtt-distillation "
                 "(reparam_module.py, networks.py)")
    a.reference = a.reference or os.environ.get("GZMORPH_MTT_REFERENCE") or None
    if is_reference_checkout(a.reference):
        fixed = [f"--{k}" for k in ("ipc", "sizes", "classes", "device") if getattr(a, k) is not None]
        if fixed:
            w = REFERENCE_WORKLOAD
            ap.error(f"the comparison with the reference runs its own workload ({w['image_size']} px, IPC {w['ipc']}, "
                     f"{w['n_classes']} classes, CPU): {', '.join(fixed)} would be ignored; drop them, or time "
                     "gzmorph alone without a reference")
        return compare_with_reference(a)
    for key, value in ALONE_DEFAULTS.items():
        setattr(a, key, getattr(a, key) or value)
    print("bench_distill: skipping the comparison with the MTT reference: "
          + (f"{a.reference!r} is not a checkout of github.com/GeorgeCazenavette/mtt-distillation (reparam_module.py, "
             "networks.py)" if a.reference else "no checkout named (--reference or GZMORPH_MTT_REFERENCE)")
          + "; timing gzmorph alone", file=sys.stderr, flush=True)
    devices = [a.device] + (["cuda"] if a.device == "cpu" and torch.cuda.is_available() else [])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            expert = write_expert(tmp, size, a.classes, a.width)
            for dev in devices:
                for mem, amp, cl, keep in itertools.product(a.memory, a.amp, a.channels_last, a.keep_freed_memory):
                    for ipc in a.ipc:
                        for n in a.steps:
                            r = probe_subprocess(threads=a.threads, mmap_threshold_kb=a.mmap_threshold,
                                                 expert=expert, image_size=size, ipc=ipc,
                                                 syn_steps=n, width=a.width, n_classes=a.classes, memory=mem,
                                                 repeats=a.repeats, device=dev, augment=True, amp=amp,
                                                 channels_last=bool(cl), keep_freed_memory=bool(keep))
                            runs.append(r)
                            print(json.dumps(r), flush=True)
    out = {"timing": f"median of {a.repeats} iterations after a warm-up iteration; peak RSS of the whole process",
           "runs": runs,
           "expert_images_per_s": {f"{d}/{s}px": round(expert_images_per_s(s, a.width, d, a.threads), 1)
                                   for d in devices for s in a.sizes},
           "width": a.width, "threads": a.threads, "classes": a.classes,
           "mmap_threshold_kb": a.mmap_threshold or "glibc default"}
    text = json.dumps(out, indent=2)
    write_out(a.out, text)
    print(text)


if __name__ == "__main__":
    main()
