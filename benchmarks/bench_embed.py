"""Embedding throughput (galaxies/s) of the representation: uint8 batch -> normalise -> pooled features.

Default: the compact ``cnn`` at 64 px on CPU.  When CUDA is present it also runs EfficientNet-B0 at
224 px on the GPU (bf16 autocast), with the peak GPU memory.  Untrained weights (speed does not
depend on them).  Prints one JSON object per run::

    .venv/bin/python benchmarks/bench_embed.py [--threads 2] [--batch-size 256] [--n 2048]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def bench(model_name: str, image_size: int, n: int, batch_size: int, device: str, threads: int) -> dict:
    from gzmorph.models import create_model
    from gzmorph.represent import Representation

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name, 37, image_size)
    rep = Representation({"model_config": model.config, "state_dict": model.state_dict(), "image_size": image_size,
                          "norm": {"mean": [0.1] * 3, "std": [0.1] * 3}}, device=device)
    images = np.random.default_rng(0).integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    rep.embed(images[:batch_size], batch_size=batch_size)  # warm-up
    if rep.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    vec = rep.embed(images, batch_size=batch_size)
    if rep.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {"benchmark": "embed", "model": model_name, "image_size": image_size, "n": n, "batch_size": batch_size,
           "device": str(rep.device), "threads": threads, "embedding_dim": int(vec.shape[1]),
           "seconds": round(dt, 3), "galaxies_per_s": round(n / dt, 1)}
    if rep.device.type == "cuda":
        out["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--image-size", type=int, default=64)
    args = ap.parse_args()
    print(json.dumps(bench(args.model, args.image_size, args.n, args.batch_size, "cpu", args.threads)))
    if torch.cuda.is_available():
        print(json.dumps(bench("efficientnet_b0", 224, max(args.n, 8192), args.batch_size, "cuda", args.threads)))


if __name__ == "__main__":
    main()
