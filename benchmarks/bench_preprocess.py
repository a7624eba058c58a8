"""Preprocessing throughput on the real Kaggle sample: 424 px JPEG -> centre crop -> 64 px.

Prints JSON with the fast path (reduced-size JPEG decoding, forked worker processes)
and the naive full decode beside it.  Usage::

    python benchmarks/bench_preprocess.py [--n 2000] [--size 64] [--workers 2] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from gzmorph.preprocess import DEFAULT_CROP_FRACTION, preprocess_images

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("GZMORPH_SHARED_DATA", REPO.parent / "shared" / "data")) / "gz-kaggle-dev"


def rate(paths, size, workers, fast):
    t0 = time.perf_counter()
    _, bad = preprocess_images(paths, size, workers=workers, fast=fast, progress=False)
    dt = time.perf_counter() - t0
    assert not bad, bad[:3]
    return len(paths) / dt, dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    folder = args.data / "images_training_rev1"
    if not folder.is_dir():
        sys.exit(f"real sample not found at {folder}: pass --data")
    paths = sorted(folder.glob("*.jpg"))[: args.n]
    rate(paths[:50], args.size, args.workers, True)  # warm the page cache
    fast, fast_s = rate(paths, args.size, args.workers, True)
    naive, naive_s = rate(paths, args.size, 1, False)
    print(json.dumps({
        "benchmark": "preprocess", "n_images": len(paths), "input": "424px SDSS JPEG (Kaggle)",
        "image_size": args.size, "crop_fraction": DEFAULT_CROP_FRACTION, "workers": args.workers,
        "cores": os.cpu_count(),
        "fast_images_per_s": round(fast, 1), "fast_seconds": round(fast_s, 3),
        "naive_full_decode_1_worker_images_per_s": round(naive, 1),
        "naive_seconds": round(naive_s, 3), "speedup": round(fast / naive, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
