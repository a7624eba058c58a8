"""Training throughput (images/s): forward + backward + optimizer step, batch augmentation included.

Default: the compact ``cnn`` at 64 px on CPU.  ``--gpu`` runs EfficientNet-B1 at
240 px on CUDA (bf16 autocast) and also reports the peak GPU memory.  Prints
one JSON object per run::

    .venv/bin/python benchmarks/bench_train.py [--threads 2] [--batch-size 64] [--steps 20]
    .venv/bin/python benchmarks/bench_train.py --gpu          # efficientnet_b1, 240 px, CUDA
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def bench(model_name: str, image_size: int, batch_size: int, steps: int, warmup: int, device: str,
          threads: int, augment: bool = True) -> dict:
    from gzmorph.augment import AugmentConfig, BatchTransform
    from gzmorph.models import create_model
    from gzmorph.train import amp_dtype

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    model = create_model(model_name, 5, image_size).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    transform = BatchTransform([0.1] * 3, [0.1] * 3, AugmentConfig() if augment else None)
    data = torch.randint(0, 256, (max(4 * batch_size, 256), image_size, image_size, 3), dtype=torch.uint8, device=dev)
    labels = torch.randint(0, 5, (len(data),), device=dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    dtype = amp_dtype(dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)

    def step():
        idx = torch.randint(0, len(data), (batch_size,), device=dev, generator=gen)
        x = transform(data[idx], gen, True)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {"model": model_name, "image_size": image_size, "batch_size": batch_size, "threads": threads,
           "device": str(dev), "augment": augment, "amp": str(dtype).replace("torch.", "") if dtype else "fp32",
           "steps": steps, "images_per_s": round(steps * batch_size / dt, 1)}
    if dev.type == "cuda":
        out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--gpu", action="store_true", help="EfficientNet-B1 at 240 px on CUDA")
    a = ap.parse_args(argv)
    if a.gpu:
        if not torch.cuda.is_available():
            print(json.dumps({"skipped": "no CUDA device"}))
            return
        res = bench(a.model or "efficientnet_b1", a.image_size or 240, a.batch_size or 64, a.steps, a.warmup,
                    "cuda", a.threads, not a.no_augment)
    else:
        res = bench(a.model or "cnn", a.image_size or 64, a.batch_size or 64, a.steps, a.warmup, "cpu",
                    a.threads, not a.no_augment)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
