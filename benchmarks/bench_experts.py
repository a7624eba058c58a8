"""Expert settings by measurement: trajectory noise, accuracy and time per epoch of candidate settings.

The target of a matching step is one expert segment θ_t → θ_{t+M}.  Its SGD noise
(:func:`gzmorph.experts.segment_noise`: the share of the segment another draw of the data order
and augmentation would change) is what the synthetic images chase when the experts are noisy.
For each candidate setting ``batch:lr[:cw]`` (``cw``: class-weighted loss) this trains ``--experts``
experts on a curated catalogue as the ``train_expert`` rule does, and reports per setting the
mean segment noise at each start epoch, the experts' final test accuracy (plain and balanced)
and seconds per epoch.  Prints one JSON document::

    .venv/bin/python benchmarks/bench_experts.py --curated results/kaggle-hiwl5/curated \\
        --settings 32:0.03 256:0.01 256:0.01:cw --epochs 20 --segment 2 --out experts.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def parse_setting(text: str) -> dict:
    """``"256:0.01:cw"`` -> batch size 256, lr 0.01, class-weighted loss."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "cw"):
        raise SystemExit(f"--settings: {text!r} is not batch:lr or batch:lr:cw")
    return {"batch_size": int(parts[0]), "lr": float(parts[1]), "class_weighted": len(parts) == 3}


def measure(data, setting: dict, args) -> dict:
    """Train ``args.experts`` experts with ``setting``; their noise per start epoch, accuracy and speed."""
    from gzmorph.experts import ExpertConfig, segment_noise, train_expert

    cfg = ExpertConfig(epochs=args.epochs, width=args.width, seed=args.seed, **setting)
    starts = [t for t in args.starts if t + args.segment <= args.epochs]
    noise = {t: [] for t in starts}
    acc, bal, sec = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.experts):
            t0 = time.perf_counter()
            ex = train_expert(data, Path(tmp) / f"e{i}.pt", cfg, index=i)
            sec.append((time.perf_counter() - t0) / args.epochs)
            last = ex["history"][-1]
            acc.append(last["test_accuracy"])
            bal.append(last["test_balanced_accuracy"])
            for t in starts:
                noise[t].append(segment_noise(data, ex, cfg, t, args.segment, seed=args.seed + 1))
    mean = statistics.fmean
    return {**setting, "experts": args.experts, "epochs": args.epochs, "segment": args.segment,
            "noise_by_start": {str(t): round(mean(v), 4) for t, v in noise.items()},
            "noise": round(mean([x for v in noise.values() for x in v]), 4),
            "test_accuracy": round(mean(acc), 4), "test_accuracy_sd": round(statistics.pstdev(acc), 4),
            "test_balanced_accuracy": round(mean(bal), 4), "seconds_per_epoch": round(mean(sec), 3)}


def main(argv=None) -> int:
    from gzmorph.experts import load_data

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--curated", required=True, help="a curated folder: catalogue.parquet and images.parquet")
    p.add_argument("--settings", nargs="+", default=["32:0.03", "256:0.01"], help="batch:lr[:cw] each")
    p.add_argument("--experts", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--segment", type=int, default=2, help="M: epochs per matched segment")
    p.add_argument("--starts", type=int, nargs="+", default=[0, 4, 8, 12, 16])
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cur = Path(args.curated)
    data = load_data(cur / "catalogue.parquet", cur / "images.parquet", args.image_size)
    rows = [measure(data, parse_setting(s), args) for s in args.settings]
    doc = json.dumps({"curated": str(cur), "image_size": args.image_size, "width": args.width,
                      "train_images": len(data.x_train), "class_counts": data.class_counts(), "rows": rows},
                     indent=1)
    print(doc)
    if args.out:
        args.out.write_text(doc + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
