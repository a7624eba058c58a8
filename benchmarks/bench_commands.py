"""Throughput and peak memory of ``gzmorph predict`` / ``embed`` / ``classify`` on real JPEGs.

Each run is the real console command in a fresh process on the first N images of a folder
(symlinks in a scratch folder); a sampler reads /proc every 50 ms and records the peak RSS of
the main process and of the whole process tree (the main process plus its decoding workers).
Memory flat in N is what streaming promises: peak RSS at the largest N about that at the smallest.
Prints (and with ``--out`` writes) one JSON document::

    .venv/bin/python benchmarks/bench_commands.py --model results/kaggle-hiwl5/represent/model.pt \\
        --images ../shared/data/gz-kaggle-dev/images_training_rev1 --n 1000 5000 --out bench_commands.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _tree(pid: int) -> list[int]:
    """``pid`` and every descendant (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def _pss_mb(pid: int) -> float:
    """Proportional set size: the process's resident pages, each shared page divided among the
    processes sharing it (so a forked worker's copy-on-write pages are not counted twice)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall time, the peak RSS of its main process and of its process tree (a sum
    of RSS: pages shared between processes count once per process), and the tree's peak PSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"main": 0.0, "tree": 0.0, "pss": 0.0}

    def sample():
        i = 0
        while proc.poll() is None:
            tree = _tree(proc.pid)
            peak["main"] = max(peak["main"], _rss_mb(proc.pid))
            rss = sum(_rss_mb(p) for p in tree)
            # PSS walks every page table (smaps_rollup): read it every 0.5 s only, so that the sampler
            # does not take the CPU it is measuring (a stage's memory plateaus for seconds)
            if i % 10 == 0:
                peak["pss"] = max(peak["pss"], sum(_pss_mb(p) for p in tree))
            peak["tree"] = max(peak["tree"], rss)
            i += 1
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    t.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return {"wall_s": round(time.perf_counter() - t0, 2), "peak_rss_main_mb": round(peak["main"], 1),
            "peak_rss_tree_mb": round(peak["tree"], 1),
            # no smaps_rollup (an old kernel, another OS): the RSS sum stands in for it
            "peak_pss_tree_mb": round(peak["pss"] or peak["tree"], 1)}


def emit(result: dict, out: str | None) -> dict:
    """Print the benchmark's JSON document (and write it to ``out``)."""
    text = json.dumps(result, indent=2)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a representation model file (predict, embed)")
    ap.add_argument("--classifier", default=None, help="a classifier model file (classify), optional")
    ap.add_argument("--images", required=True, help="a folder of JPEGs")
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--commands", nargs="+", default=["predict", "embed", "classify"])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    exe = str(Path(sys.executable).with_name("gzmorph"))
    files = sorted(Path(args.images).glob("*.jpg"))
    result = {"images": str(args.images), "cpus": len(os.sched_getaffinity(0)), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            if n > len(files):
                raise SystemExit(f"--n {n}: only {len(files)} JPEGs in {args.images}")
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            for f in files[:n]:
                (folder / f.name).symlink_to(f.resolve())
            for command in args.commands:
                model = args.classifier if command == "classify" else args.model
                if model is None:
                    continue
                cmd = [exe, command, model, str(folder), "-o", str(Path(tmp) / f"{command}{n}.parquet")]
                if args.workers is not None:
                    cmd += ["--workers", str(args.workers)]
                r = run(cmd)
                r.update(command=command, n=n, images_per_s=round(n / r["wall_s"], 1))
                result["runs"].append(r)
                print(json.dumps(r), file=sys.stderr)
    result["summary"] = {}
    for command in {r["command"] for r in result["runs"]}:
        rs = sorted((r for r in result["runs"] if r["command"] == command), key=lambda r: r["n"])
        lo, hi = rs[0], rs[-1]
        if hi["n"] > lo["n"]:  # start-up (imports, model) cancels out of the marginal rate
            result["summary"][command] = {
                "marginal_images_per_s": round((hi["n"] - lo["n"]) / max(1e-9, hi["wall_s"] - lo["wall_s"]), 1),
                "peak_rss_tree_ratio": round(hi["peak_rss_tree_mb"] / lo["peak_rss_tree_mb"], 3),
                "peak_rss_main_ratio": round(hi["peak_rss_main_mb"] / lo["peak_rss_main_mb"], 3)}
    return emit(result, args.out)


if __name__ == "__main__":
    main()
