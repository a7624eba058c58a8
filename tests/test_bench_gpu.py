"""The GPU check (benchmarks/gpu.sh, benchmarks/bench_gpu.py) runs here without a GPU: the CPU smoke of
every part gives one JSON document with every number, and with no GPU and no --quick it says so."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
GPU_SH = REPO / "benchmarks" / "gpu.sh"


def run(*args: str, timeout: int = 120) -> tuple[int, dict]:
    proc = subprocess.run([str(GPU_SH), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_cpu_smoke_of_every_part_prints_one_json():
    rc, doc = run("--device", "cpu", "--quick", timeout=330)  # ~15 s quiet; beyond gpu.sh's own 300 s backstop
    assert rc == 0 and "errors" not in doc, doc.get("errors")
    assert doc["device"] == "cpu" and doc["quick"] and doc["amp_auto"] == "fp32"  # mixed precision: GPU only
    runs = doc["classify"]["runs"]
    assert [(r["backbone"], r["amp"]) for r in runs] == [("efficientnet_b1", "off"), ("efficientnet_b1", "bf16")]
    assert all(r["images_per_s"] > 0 for r in runs) and set(doc["classify"]["mixed_vs_fp32_speedup"]) == {"2"}
    rep = doc["represent"]
    assert rep["backbone"] == "efficientnet_b0" and rep["greyscale"] and rep["dim"] == 1280 and rep["images_per_s"] > 0
    (dist,) = doc["distill"]["runs"]
    assert doc["distill"]["alpha_param"] == "log" and dist["seconds_per_iteration"] > 0
    assert all(a > 0 for a in dist["alpha"])
    ddp = doc["ddp"]
    assert [r["processes"] for r in ddp["runs"]] == [1, 2] and ddp["speedup"] > 0 and "efficiency" in ddp
    assert doc["seconds"] > 0  # the run times itself (a speed target would belong in benchmarks/, not here)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: gpu.sh measures it")
def test_without_a_gpu_it_says_so_and_exits_0():
    for args in ((), ("--device", "cuda")):
        rc, doc = run(*args, timeout=60)
        assert rc == 0 and doc["gpu"] is False and "no CUDA device" in doc["reason"]
