"""Peak memory against catalogue size of the steps that read a whole split or matrix batch by batch.

Each case runs in a fresh process, after a warm-up that loads the libraries' kernels, and reports
the process's peak RSS during the step above its RSS just before it (the peak reset before the step,
as bench_distill measures: a high-water mark kept from start-up would hide a step below an earlier
peak), with the input's own size beside it, for each N:

- ``class_means``: the distillation's ``mean`` baseline at IPC 1 (``distill.mean_per_class``) over
  N uint8 images at ``--size`` px in two classes;
- ``zca``: the ZCA whitening fit of the same split (``experts.fit_zca``, normalised on the fly);
- ``read_embeddings``: an N × ``--dim`` float32 embeddings table read back
  (``represent.read_embeddings``);
- ``map``: the ``embed`` rule's 2-D map of that table (``represent.map_table``, PCA).

Memory flat in the catalogue means the growth above the input's size stays bounded as N grows.
Prints (and with ``--out`` writes) one JSON document::

    .venv/bin/python benchmarks/bench_memory.py --n 40000 120000 --out bench_memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_commands import emit  # noqa: E402 - the JSON output of every benchmark

CASES = ("class_means", "zca", "read_embeddings", "map")


def peak_growth(step) -> tuple[float, float]:
    """``(MB of RSS above the start at the step's peak, seconds)`` of running ``step()``."""
    from bench_distill import peak_rss_bytes, reset_peak_rss, rss_bytes

    reset_peak_rss()
    start = rss_bytes()
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    return (peak_rss_bytes() - start) / 2**20, seconds


def child(case: str, n: int, size: int, dim: int, work: Path) -> dict:
    """One case in this (fresh) process: ``{"input_mb", "peak_growth_mb", "seconds"}``."""
    import numpy as np
    import torch

    from gzmorph import augment as aug

    torch.set_num_threads(1)
    if case in ("class_means", "zca"):
        from gzmorph.distill import mean_per_class
        from gzmorph.experts import Data, fit_zca

        x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8))
        y = torch.arange(n) % 2
        data = Data(["a", "b"], x, y, x[:10], y[:10], [0.2, 0.3, 0.4], [0.3, 0.2, 0.25], size, "bench")
        aug.normalize(aug.to_float(x[:64]), data.mean, data.std).double().sum(0)  # warm-up: load the kernels
        torch.linalg.eigh(torch.eye(8, dtype=torch.float64))
        input_mb = x.numel() / 2**20

        def step():
            if case == "class_means":
                mean_per_class(data, 1, 0)
            else:
                fit_zca(x, 0.1, prepare=lambda b: aug.normalize(aug.to_float(b), data.mean, data.std))
    else:
        from gzmorph.represent import map_table, read_embeddings

        path = work / f"embeddings-{n}-{dim}.parquet"
        input_mb = n * dim * 4 / 2**20
        read_embeddings(path, rows=[0])  # warm-up: pyarrow's reader, and scikit-learn's PCA
        from sklearn.decomposition import PCA

        PCA(n_components=2).fit(np.random.default_rng(0).normal(size=(64, dim)))

        def step():
            if case == "read_embeddings":
                read_embeddings(path)
            else:
                map_table(path, "pca")
    growth, seconds = peak_growth(step)
    return {"input_mb": round(input_mb, 1), "peak_growth_mb": round(growth, 1), "seconds": round(seconds, 3)}


def write_table(path: Path, n: int, dim: int) -> None:
    """An N × dim float32 embeddings table in row groups of 20,000, written a group at a time."""
    import numpy as np

    from gzmorph.io import parquet_stream
    from gzmorph.represent import embedding_table

    rng = np.random.default_rng(0)
    with parquet_stream(path) as write:
        for i in range(0, n, 20_000):
            m = min(20_000, n - i)
            write(embedding_table(np.arange(i, i + m), rng.normal(size=(m, dim)).astype(np.float32)))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[40_000, 120_000])
    ap.add_argument("--size", type=int, default=16, help="image size in px (distillation's default)")
    ap.add_argument("--dim", type=int, default=256, help="embedding dimension")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.n[0], args.size, args.dim, Path(args.work))))
        return {}
    result = {"size": args.size, "dim": args.dim, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            if {"read_embeddings", "map"} & set(args.cases):
                write_table(Path(tmp) / f"embeddings-{n}-{args.dim}.parquet", n, args.dim)
            for case in args.cases:
                out = subprocess.run([sys.executable, __file__, "--child", case, "--n", str(n), "--size",
                                      str(args.size), "--dim", str(args.dim), "--work", tmp],
                                     capture_output=True, text=True, check=True)
                row = {"case": case, "n": n, **json.loads(out.stdout.strip().splitlines()[-1])}
                print(json.dumps(row), file=sys.stderr)
                result["rows"].append(row)
    return emit(result, args.out)


if __name__ == "__main__":
    main()
