"""GPU check: the paper presets' costs on this machine's GPUs, in at most 5 minutes, as one JSON document.

Every part runs gzmorph's own code with the paper presets' settings, on random images:

- ``classify``: EfficientNet-B1 at 240 px trained by :func:`gzmorph.train.fit` (the classifier's
  loop: batch augmentation, SGD with the ``classify.preset: paper`` settings, cosine schedule),
  images/s in fp32 and in bf16 (fp16 where the GPU lacks bf16) at the paper's batch 16 and at a
  throughput batch, with the peak GPU memory (``torch.cuda.max_memory_allocated``);
- ``represent``: embedding images/s of EfficientNet-B0 at 224 px on greyscale input
  (:class:`gzmorph.represent.Representation`, ``represent.preset: paper``, mixed precision as in a run);
- ``distill``: seconds per iteration of :func:`gzmorph.distill.distill` (MTT, the ``distill.preset:
  paper`` options: 64 px, width-128 ConvNet-D3, 9 classes, IPC 1 with N = 50 and IPC 10 with N = 20,
  learned log α), on random expert trajectories;
- ``ddp``: training images/s of the classify part as 1 process and as one process per visible GPU
  (:func:`gzmorph.distributed.launch`, torchrun), the same per-process batch (so the global batch
  grows with the processes), and the scaling efficiency.

``amp_auto`` says which precision ``amp: auto`` (the default of classify and represent) trains in here.
Without a GPU it prints ``{"gpu": false, ...}`` and exits 0; ``--device cpu --quick`` instead runs a
tiny CPU smoke of every part (small images, a step or two; ~15 s), which tests/test_bench_gpu.py runs.
A part that fails records its error and the others still run; a part that would start after
``--budget-s`` seconds is skipped, so the whole stays within ``benchmarks/gpu.sh``'s 5 minutes::

    benchmarks/gpu.sh                                  # on a machine with a GPU
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- sizes


def full_sizes() -> dict:
    """The workloads of the full check: the paper presets' models, sizes, batches and (IPC, N) read from
    their one source (the settings modules), plus how much of each to time."""
    from gzmorph.classify_settings import ClassifySettings
    from gzmorph.distill_settings import distill_method_options, distill_settings
    from gzmorph.represent_settings import RepresentSettings

    clf = ClassifySettings.from_config({"preset": "paper"})
    rep = RepresentSettings.from_config({"preset": "paper"})
    dst = distill_settings({"preset": "paper"})
    return {
        "classify": {"backbone": clf.backbone, "image_size": clf.image_size, "batch_sizes": [clf.batch_size, 128],
                     "warmup": 5, "steps": 30},
        "represent": {"backbone": rep.backbone, "image_size": rep.image_size, "images": 4096, "batch_size": 256},
        "distill": {"image_size": dst["image_size"], "width": dst["width"], "classes": 9, "iterations": 3,
                    "runs": [[ipc, distill_method_options(dst, "mtt", ipc)["syn_steps"]] for ipc in dst["ipc"]]},
        "ddp": {"backbone": clf.backbone, "image_size": clf.image_size, "batch_per_process": 64, "warmup": 5,
                "steps": 20},
    }


QUICK = {
    "classify": {"backbone": "efficientnet_b1", "image_size": 64, "batch_sizes": [2], "warmup": 1, "steps": 1},
    "represent": {"backbone": "efficientnet_b0", "image_size": 64, "images": 4, "batch_size": 2},
    "distill": {"image_size": 16, "width": 8, "classes": 3, "runs": [[1, 2]], "iterations": 1},
    "ddp": {"backbone": "cnn", "image_size": 32, "batch_per_process": 2, "warmup": 1, "steps": 1},
}


# --------------------------------------------------------------------------- helpers


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def precision(device, amp: str) -> str:
    """What gzmorph trains in for ``amp`` on ``device`` (:func:`gzmorph.train.amp_dtype`)."""
    from gzmorph.train import amp_dtype

    dtype = amp_dtype(device, amp)
    return {None: "fp32"}.get(dtype, str(dtype).replace("torch.", "").replace("bfloat16", "bf16")
                              .replace("float16", "fp16"))


# --------------------------------------------------------------------------- parts


def train_rate(backbone: str, image_size: int, batch_size: int, warmup: int, steps: int, amp: str,
               device: str, n_classes: int = 5) -> dict:
    """Training images/s of ``backbone`` through :func:`gzmorph.train.fit` with the classifier's
    input pipeline and the ``classify.preset: paper`` optimiser and schedule: the time from the end
    of step ``warmup`` to the end of the last step (``fit`` reads every step's loss, a device sync).
    Under a data-parallel job (:mod:`gzmorph.distributed`) ``batch_size`` is the global batch."""
    import torch

    from gzmorph import augment as A
    from gzmorph import distributed as D
    from gzmorph.classify_settings import ClassifySettings
    from gzmorph.models import create_model
    from gzmorph.train import cosine_schedule, fit, pick_device

    cfg = ClassifySettings.from_config({"preset": "paper"})
    dev = D.init(device) or pick_device(device)  # a rank of a data-parallel job: its own GPU
    total = warmup + steps + 1
    per_epoch = min(total, 8)  # a pool of 8 batches in host memory, as many epochs over it as needed
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (per_epoch * batch_size, image_size, image_size, 3), dtype=torch.uint8, generator=g)
    y = torch.randint(0, n_classes, (len(x),), generator=g)
    torch.manual_seed(0)
    model = create_model(backbone, n_classes, image_size)
    stamps: list[float] = []
    if dev.type == "cuda":
        _reset_peak(dev)
    fit(model, torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), (x, y), None,
        epochs=math.ceil(total / per_epoch), batch_size=batch_size, seed=0,
        optimizer=lambda p: torch.optim.SGD(p, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                            nesterov=cfg.nesterov),
        scheduler=cosine_schedule(0), transform=A.BatchTransform([0.1] * 3, [0.1] * 3, A.AugmentConfig()),
        device=device, amp=amp, progress=False, on_step=lambda e, s, loss: stamps.append(time.perf_counter()))
    timed = stamps[warmup:total]
    run_dev = next(model.parameters()).device
    out = {"backbone": backbone, "image_size": image_size, "batch_size": batch_size, "amp": amp,
           "precision": precision(run_dev, amp), "steps_timed": len(timed) - 1,
           "images_per_s": round(batch_size * (len(timed) - 1) / (timed[-1] - timed[0]), 1) if len(timed) > 1
           else None}
    if run_dev.type == "cuda":
        out["peak_gpu_mem_mb"] = _peak_mb(run_dev)
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out if D.is_main() else {}


def ddp_rate(backbone: str, image_size: int, batch_per_process: int, warmup: int, steps: int,
             device: str) -> dict:
    """:func:`train_rate` in one rank of a data-parallel job (or alone): the global batch is
    ``batch_per_process`` × the number of processes; mixed precision as ``amp: auto``."""
    from gzmorph import distributed as D

    n = D.world()
    out = train_rate(backbone, image_size, batch_per_process * n, warmup, steps, "auto", device)
    return {**out, "processes": n} if out else {}


def classify_part(sizes: dict, device) -> dict:
    runs = []
    for batch in sizes["batch_sizes"]:
        for amp in ("off", "bf16" if device.type != "cuda" or _bf16() else "fp16"):
            runs.append(train_rate(sizes["backbone"], sizes["image_size"], batch, sizes["warmup"], sizes["steps"],
                                   amp, str(device)))
    speedup = {}
    for batch in sizes["batch_sizes"]:
        r = [q for q in runs if q["batch_size"] == batch]
        if len(r) == 2 and r[0]["images_per_s"] and r[1]["images_per_s"]:
            speedup[str(batch)] = round(r[1]["images_per_s"] / r[0]["images_per_s"], 2)
    return {"preset": "classify.preset: paper", "runs": runs, "mixed_vs_fp32_speedup": speedup}


def _bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def represent_part(sizes: dict, device) -> dict:
    """Embedding images/s of the ``represent.preset: paper`` network on greyscale input."""
    import numpy as np
    import torch

    from gzmorph.models import create_model
    from gzmorph.represent import Representation
    from gzmorph.represent_settings import RepresentSettings

    paper = RepresentSettings.from_config({"preset": "paper"})
    size = sizes["image_size"]
    torch.manual_seed(0)
    model = create_model(sizes["backbone"], 37, size)
    bundle = {"model_config": model.config, "state_dict": model.state_dict(), "image_size": size,
              "norm": {"mean": [0.1], "std": [0.1], "greyscale": paper.greyscale}}
    rep = Representation(bundle, "bench", device=str(device))
    images = np.random.default_rng(0).integers(0, 256, (sizes["images"], size, size, 3), dtype=np.uint8)
    bs = sizes["batch_size"]
    rep.embed(images[:bs], batch_size=bs)  # warm-up
    _reset_peak(rep.device)
    t0 = time.perf_counter()
    vec = rep.embed(images, batch_size=bs)
    dt = time.perf_counter() - t0
    out = {"backbone": sizes["backbone"], "image_size": size, "greyscale": paper.greyscale, "batch_size": bs,
           "images": len(images), "dim": int(vec.shape[1]), "precision": precision(rep.device, "auto"),
           "images_per_s": round(len(images) / dt, 1)}
    if rep.device.type == "cuda":
        out["peak_gpu_mem_mb"] = _peak_mb(rep.device)
    return out


def distill_part(sizes: dict, device) -> dict:
    """Seconds per iteration of MTT with the paper preset's options (IPC and N per run), on random
    images and random-walk expert trajectories (the cost does not depend on what the experts learnt)."""
    import torch

    from gzmorph.augment import channel_stats
    from gzmorph.distill import DistillConfig, distill
    from gzmorph.distill_settings import distill_method_options, distill_settings
    from gzmorph.experts import EXPERT_FORMAT, Data, expected_meta
    from gzmorph.io import save_bundle
    from gzmorph.models import build_convnet
    from gzmorph.student import flat_params

    s = distill_settings({"preset": "paper", "image_size": sizes["image_size"], "width": sizes["width"]})
    size, k = s["image_size"], sizes["classes"]
    ipc_max = max(ipc for ipc, _ in sizes["runs"])
    g = torch.Generator().manual_seed(0)
    y = torch.arange(k * (ipc_max + 1)) % k
    x = torch.randint(0, 256, (len(y), size, size, 3), dtype=torch.uint8, generator=g)
    mean, std = channel_stats(x)
    data = Data([f"class{i}" for i in range(k)], x, y, x[:k], y[:k], mean, std, size, "bench")
    mc = {"name": "convnet_d3", "num_classes": k, "image_size": size,
          **{key: s[key] for key in ("width", "depth", "norm")}}
    theta = flat_params(build_convnet(k, size, s["width"], s["depth"], s["norm"]))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        expert = Path(tmp) / "expert_000.pt"
        traj = [theta]
        for _ in range(3):  # max_start_epoch 1 + expert_epochs 2
            traj.append(traj[-1] + 0.01 * torch.randn(theta.shape, generator=g))
        save_bundle(expert, {"format": EXPERT_FORMAT, "trajectory": torch.stack(traj), "history": [],
                             "meta": expected_meta(data, mc)}, EXPERT_FORMAT)
        for ipc, n_steps in sizes["runs"]:
            opts = {**distill_method_options(s, "mtt", ipc), "syn_steps": n_steps, "max_start_epoch": 1}

            def run(iterations, opts=opts, ipc=ipc):
                cfg = DistillConfig.from_dict({**opts, "iterations": iterations, "method": "mtt", "ipc": ipc,
                                               "memory": s["memory"], "leaf": s["leaf"], "amp": s["amp"],
                                               "channels_last": s["channels_last"], "seed": 0,
                                               "device": str(device)})
                return distill(data, [expert], cfg, mc, augment=s["augment"], cutout=s["cutout"])

            run(1)  # warm-up
            _reset_peak(device)
            r = run(sizes["iterations"] + 1)  # its first iteration warms up again; the median of the rest
            times = [h["seconds"] for h in r["history"] if h.get("iteration", 0) > 0]  # a rollback leaves no row
            row = {"method": "mtt", "ipc": ipc, "syn_steps": n_steps, "images": ipc * k,
                   "iterations": sizes["iterations"],
                   "seconds_per_iteration": round(statistics.median(times), 4) if times else None,
                   "rolled_back": sum(e.get("event") == "rollback" for e in r["events"]),
                   "alpha": [round(float(a), 8) for a in r["alpha"]]}
            if device.type == "cuda":
                row["peak_gpu_mem_mb"] = _peak_mb(device)
            runs.append(row)
    return {"preset": "distill.preset: paper", "image_size": size, "width": s["width"], "classes": k,
            "memory": s["memory"], "alpha_param": opts["alpha_param"], "runs": runs}


def ddp_part(sizes: dict, device, gpus: int, threads: int = 0) -> dict:
    """1 process vs one per visible GPU (2 gloo processes on the CPU), the same batch per process."""
    import bench_gpu  # this file as a module the ranks can import (launch needs an importable function)

    from gzmorph.distributed import launch

    n = gpus if device.type == "cuda" else 2
    counts = [1] if n < 2 else [1, n]
    kw = {k: sizes[k] for k in ("backbone", "image_size", "batch_per_process", "warmup", "steps")}
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), str(HERE.parent / "src"), env_path) if p)
    runs = []
    for p in counts:
        runs.append(launch(bench_gpu.ddp_rate, {**kw, "device": str(device)}, processes=p, device=str(device),
                           threads=threads or max(1, (os.cpu_count() or 2) // p), stream=sys.stderr))
    out = {"backbone": sizes["backbone"], "image_size": sizes["image_size"],
           "batch_per_process": sizes["batch_per_process"], "runs": runs}
    if len(runs) == 2 and runs[0]["images_per_s"] and runs[1]["images_per_s"]:
        out["speedup"] = round(runs[1]["images_per_s"] / runs[0]["images_per_s"], 2)
        out["efficiency"] = round(out["speedup"] / counts[1], 2)
    else:
        out["note"] = "one GPU visible: no scaling to measure (the 1-process rate is shown)"
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA if visible) | cuda | cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of every part")
    ap.add_argument("--parts", nargs="+", default=["classify", "represent", "distill", "ddp"])
    ap.add_argument("--budget-s", type=float, default=270.0, help="start no part after this many seconds")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads (0: all; 1 with --quick on the CPU, which keeps a smoke quick on a busy machine)")
    ap.add_argument("--out", default="", help="also write the JSON here")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    sys.path.insert(0, str(HERE))
    import torch

    from gzmorph.gpu import visible_gpus

    cuda = torch.cuda.is_available()
    head = {"torch": torch.__version__, "python": platform.python_version(), "host": platform.node(),
            "cuda_available": cuda, "visible_gpus": len(visible_gpus()) if cuda else 0}
    if a.device == "cuda" and not cuda or a.device == "auto" and not cuda and not a.quick:
        doc = {**head, "gpu": False, "reason": "no CUDA device visible: nothing to measure (--device cpu --quick "
                                               "runs a CPU smoke of every part)"}
        _emit(doc, a.out)
        return 0
    device = torch.device("cuda" if a.device in ("auto", "cuda") and cuda else "cpu")
    threads = a.threads or (1 if a.quick and device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    sizes = QUICK if a.quick else full_sizes()
    doc = {**head, "gpu": device.type == "cuda", "device": str(device), "quick": a.quick,
           "amp_auto": precision(device, "auto")}
    if device.type == "cuda":
        doc.update(gpu_name=torch.cuda.get_device_name(device), bf16_supported=_bf16(),
                   cuda=torch.version.cuda, gpu_memory_mb=round(torch.cuda.get_device_properties(device).total_memory
                                                                / 2**20))
    parts = {"classify": lambda: classify_part(sizes["classify"], device),
             "represent": lambda: represent_part(sizes["represent"], device),
             "distill": lambda: distill_part(sizes["distill"], device),
             "ddp": lambda: ddp_part(sizes["ddp"], device, torch.cuda.device_count() if cuda else 0, threads)}
    errors, seconds = {}, {}
    for name in a.parts:
        if time.perf_counter() - t_start > a.budget_s:
            doc[name] = {"skipped": f"time budget of {a.budget_s:g} s spent"}
            continue
        t0 = time.perf_counter()
        try:
            doc[name] = parts[name]()
        except Exception as err:  # noqa: BLE001 - one part's failure is reported, the others still run
            errors[name] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        seconds[name] = round(time.perf_counter() - t0, 1)
    doc["part_seconds"] = seconds
    if errors:
        doc["errors"] = errors
    doc["seconds"] = round(time.perf_counter() - t_start, 1)
    _emit(doc, a.out)
    return 1 if errors else 0


def _emit(doc: dict, out: str) -> None:
    text = json.dumps(doc, indent=1)
    print(text, flush=True)
    if out:
        Path(out).write_text(text + "\n")


if __name__ == "__main__":
    raise SystemExit(main())

