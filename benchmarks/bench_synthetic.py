"""Benchmark the synthetic galaxy source.

Usage: python benchmarks/bench_synthetic.py [N] [--workers W] [--stamp-size S]

Renders N galaxies (default 2000) into a temporary directory and prints one
JSON line: {"n": ..., "seconds": ..., "galaxies_per_s": ..., "stamp_size": ...}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from gzmorph.sources.synthetic import DEFAULT_STAMP, generate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stamp-size", type=int, default=DEFAULT_STAMP)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gzmorph-bench-") as tmp:
        t0 = time.perf_counter()
        generate(tmp, args.n, args.seed, stamp_size=args.stamp_size, workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
    print(json.dumps({"n": args.n, "seconds": round(dt, 2), "galaxies_per_s": round(args.n / dt, 1),
                      "stamp_size": args.stamp_size, "workers": args.workers}))


if __name__ == "__main__":
    main()
