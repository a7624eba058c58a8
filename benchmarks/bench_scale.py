"""Memory and throughput against catalogue size: preprocessing, representation training, embedding.

For each N (default 2,000, 8,000 and 32,000) the real Kaggle sample is replicated under new ids
(symlinks ``<id>.jpg``), then three stages each run in a fresh process through the library's own
code paths at ``--size`` px (default 128):

- ``preprocess``: decode + crop + resize every image into the image store (the preprocess_images rule);
- ``train``: ``--steps`` optimiser steps of the representation (``train.fit`` on streamed store rows);
- ``embed``: every galaxy through the trained model (the embed rule's ``embed_table``).

A sampler reads /proc every 50 ms for the peak memory of the process tree (decoding and reading
workers included): the sum of RSS, and the sum of PSS, which counts the pages a forked worker
shares with its parent once.  The memory goal is judged on PSS (the tree's real footprint; the
RSS sum counts a DataLoader worker's shared copy of torch again) and both ratios are reported.
``--compare-memory`` adds, at 64 px and the smallest N, the training images/s of the same steps
from an in-memory tensor beside the streamed store (window smaller than the data).  Prints (and
with ``--out`` writes) one JSON document with the goals checked::

    .venv/bin/python benchmarks/bench_scale.py --out bench_scale.json
    .venv/bin/python benchmarks/bench_scale.py --n 500 2000 --steps 10 --compare-memory   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_commands import emit, run  # noqa: E402 - the process-tree RSS sampler, the JSON output

REPO = Path(__file__).resolve().parents[1]
KAGGLE = Path(os.environ.get("GZMORPH_SHARED_DATA", REPO.parent / "shared" / "data")) / "gz-kaggle-dev"


# --------------------------------------------------------------------------- stages (in a child process)


def stage_preprocess(work: Path, n: int, size: int) -> dict:
    import numpy as np

    from gzmorph.imageset import ImageWriter
    from gzmorph.preprocess import preprocess_stream

    paths = sorted((work / "jpg").glob("*.jpg"), key=lambda p: int(p.stem))
    ids = np.array([int(p.stem) for p in paths])
    t0 = time.perf_counter()
    with ImageWriter(work / f"images{size}.parquet", (size, size, 3)) as out:
        for start, block, bad in preprocess_stream(paths, size, 0.5, workers=len(os.sched_getaffinity(0)),
                                                   progress=False):
            assert not bad, bad[:1]
            out.add(ids[start:start + len(block)], block)
    return {"seconds": time.perf_counter() - t0, "images": n}


def _model(size: int):
    from gzmorph.models import create_model

    return create_model("cnn", 37, size)


def stage_train(work: Path, n: int, size: int, steps: int, batch: int, memory: str, window_mb: float) -> dict:
    import numpy as np
    import torch

    from gzmorph.augment import AugmentConfig, BatchTransform
    from gzmorph.represent import DirichletMultinomialLoss
    from gzmorph.stream import StoreRows
    from gzmorph.train import fit

    torch.manual_seed(0)
    rows = StoreRows(work / f"images{size}.parquet", window_mb=window_mb)
    x = rows if memory == "stream" else torch.from_numpy(rows.store.read_rows(rows.rows))
    counts = torch.from_numpy(np.random.default_rng(0).integers(0, 10, (n, 37)).astype(np.float32))
    model = _model(size)
    seen = {"t0": None, "steps": 0}

    def on_step(epoch, step, loss):
        seen["steps"] += 1
        if seen["steps"] == 3:  # timing starts after a warm-up of 3 steps
            seen["t0"] = time.perf_counter()
        if seen["steps"] == steps + 3:
            seen["t1"] = time.perf_counter()  # before the readers shut down: not a training cost
            raise StopIteration

    try:
        fit(model, DirichletMultinomialLoss(), (x, counts), None, epochs=1_000, batch_size=batch, seed=0,
            transform=BatchTransform([0.1] * 3, [0.15] * 3, AugmentConfig.from_value(True)), device="cpu",
            progress=False, on_step=on_step)
    except StopIteration:
        pass
    sec = seen["t1"] - seen["t0"]
    return {"seconds": sec, "images": steps * batch, "steps": steps, "memory": memory,
            "window_rows": rows.window_rows, "fits_window": rows.fits}


def stage_embed(work: Path, n: int, size: int) -> dict:
    from gzmorph.represent import Representation, embed_table

    model = _model(size)
    rep = Representation({"model_config": model.config, "state_dict": model.state_dict(), "image_size": size,
                          "norm": {"mean": [0.1] * 3, "std": [0.15] * 3}}, device="cpu")
    t0 = time.perf_counter()
    embed_table(rep, work / f"images{size}.parquet", work / "embeddings.parquet", progress=False)
    return {"seconds": time.perf_counter() - t0, "images": n}


# --------------------------------------------------------------------------- the driver


def replicate(work: Path, n: int) -> None:
    """``n`` symlinks ``<id>.jpg`` onto the real sample's JPEGs, cycling through them."""
    files = sorted((KAGGLE / "images_training_rev1").glob("*.jpg"))
    if not files:
        raise SystemExit(f"bench_scale: the real Kaggle sample is absent ({KAGGLE}); set GZMORPH_SHARED_DATA")
    (work / "jpg").mkdir(parents=True)
    for i in range(n):
        (work / "jpg" / f"{1_000_000 + i}.jpg").symlink_to(files[i % len(files)].resolve())


def child(args) -> None:
    work = Path(args.work)
    if args.stage == "preprocess":
        out = stage_preprocess(work, args.n, args.size)
    elif args.stage == "train":
        out = stage_train(work, args.n, args.size, args.steps, args.batch, args.memory, args.window_mb)
    else:
        out = stage_embed(work, args.n, args.size)
    (work / f"{args.stage}-{args.memory}-{args.size}.json").write_text(json.dumps(out))


def measure(work: Path, stage: str, n: int, size: int, args, memory: str = "stream") -> dict:
    cmd = [sys.executable, __file__, "--child", stage, "--work", str(work), "--n", str(n), "--size", str(size),
           "--steps", str(args.steps), "--batch", str(args.batch), "--memory", memory,
           "--window-mb", str(args.window_mb)]
    proc = run(cmd)
    out = json.loads((work / f"{stage}-{memory}-{size}.json").read_text())
    row = {"stage": stage, "n": n, "size": size, "memory": memory, "peak_rss_mb": proc["peak_rss_tree_mb"],
           "peak_pss_mb": proc["peak_pss_tree_mb"], "peak_rss_main_mb": proc["peak_rss_main_mb"],
           "images_per_s": round(out["images"] / out["seconds"], 1), **{k: v for k, v in out.items()
                                                                     if k not in ("images", "seconds")}}
    print(json.dumps(row), file=sys.stderr)
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 8000, 32000])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--window-mb", type=float, default=None,
                    help="shuffle window (default: gzmorph.stream.DEFAULT_WINDOW_MB)")
    ap.add_argument("--compare-memory", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--memory", default="stream", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.window_mb is None:
        from gzmorph.stream import DEFAULT_WINDOW_MB

        args.window_mb = DEFAULT_WINDOW_MB
    if args.child:
        args.stage = args.child
        args.n = args.n[0]
        return child(args)
    result = {"size": args.size, "steps": args.steps, "batch": args.batch, "window_mb": args.window_mb,
              "cpus": len(os.sched_getaffinity(0)), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            work = Path(tmp) / f"n{n}"
            replicate(work, n)
            for stage in ("preprocess", "train", "embed"):
                result["rows"].append(measure(work, stage, n, args.size, args))
            if args.compare_memory and n == min(args.n):
                # 64 px: the same training steps from memory and streamed through a window smaller than the data
                measure(work, "preprocess", n, 64, args)
                small = argparse.Namespace(**{**vars(args), "window_mb": min(args.window_mb, n * 64 * 64 * 3 / 4 / 2**20)})
                result["memory_vs_stream_64px"] = [measure(work, "train", n, 64, small, "memory"),
                                                   measure(work, "train", n, 64, small, "stream")]
    lo, hi = min(args.n), max(args.n)
    goals = {}
    for stage in ("preprocess", "train", "embed"):
        a = next(r for r in result["rows"] if r["stage"] == stage and r["n"] == lo)
        b = next(r for r in result["rows"] if r["stage"] == stage and r["n"] == hi)
        goals[stage] = {"pss_ratio": round(b["peak_pss_mb"] / a["peak_pss_mb"], 3),
                        "memory_goal_met": b["peak_pss_mb"] <= 1.3 * a["peak_pss_mb"],
                        "rss_tree_ratio": round(b["peak_rss_mb"] / a["peak_rss_mb"], 3),
                        "rss_main_ratio": round(b["peak_rss_main_mb"] / a["peak_rss_main_mb"], 3),
                        "throughput_ratio": round(b["images_per_s"] / a["images_per_s"], 3),
                        "throughput_goal_met": b["images_per_s"] >= 0.85 * a["images_per_s"]}
    if "memory_vs_stream_64px" in result:
        mem, st = result["memory_vs_stream_64px"]
        goals["stream_vs_memory_64px"] = {"ratio": round(st["images_per_s"] / mem["images_per_s"], 3),
                                          "goal_met": st["images_per_s"] >= 0.9 * mem["images_per_s"]}
    result["goals"] = goals
    return emit(result, args.out)


if __name__ == "__main__":
    main()
