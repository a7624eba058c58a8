"""Distillation: exact constant-memory matching gradient, memory bound, MTT/STM loops, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gzmorph.distill as distill_module
from gzmorph.augment import AugmentConfig, BatchTransform
from gzmorph.distill import AUGMENT, DistillConfig, STMConfig, check_ipc, distill, write_outputs
from gzmorph.distill_eval import EvalConfig, eval_record, evaluate_baseline, evaluate_synthetic
from gzmorph.experts import ExpertConfig, step_generator, train_expert
from gzmorph.io import InputError, load_bundle, save_bundle, write_json
from gzmorph.matching import matching_loss
from gzmorph.models import build_convnet
from gzmorph.report import read_fragment
from gzmorph.report.distill import report_section
from gzmorph.stm import STMSchedule, pearson
from gzmorph.student import Student, flat_params

from test_experts import tiny_data  # noqa: F401  (fixture)


def _case(dtype, n_steps=7):
    torch.manual_seed(0)
    net = build_convnet(3, 8, width=4).to(dtype)
    st = Student(net)
    th = flat_params(net).to(dtype)
    t = BatchTransform([0.5] * 3, [0.25] * 3, AugmentConfig(), cutout=0.5)
    syn = torch.randn(6, 3, 8, 8, dtype=dtype)
    lab = torch.tensor([0, 0, 1, 1, 2, 2])
    plan = []
    for k in range(n_steps):
        idx = torch.tensor([0, 2, 4, 5]) if k % 2 else torch.arange(6)
        p = {kk: (v.to(dtype) if v.is_floating_point() else v) for kk, v in t.sample(len(idx), step_generator(0, 0, k)).items()}
        plan.append((idx, p))
    target = th + 0.05 * torch.randn_like(th)
    return st, th, target, syn, lab, torch.tensor(0.05, dtype=dtype), plan, t


@pytest.mark.parametrize("dtype,memory,leaf", [(torch.float64, "constant", 2), (torch.float32, "constant", 1),
                                               (torch.float32, "store", 4)])
def test_gradient_equals_plain_unroll(dtype, memory, leaf):
    st, th, target, syn, lab, a, plan, t = _case(dtype)
    l0, gx0, ga0 = matching_loss(st, th, target, 1.3, syn, lab, a, plan, t, "unroll")
    l1, gx1, ga1 = matching_loss(st, th, target, 1.3, syn, lab, a, plan, t, memory, leaf=leaf)
    assert l1 == pytest.approx(l0, rel=1e-6)
    assert float((gx1 - gx0).norm() / gx0.norm()) < 1e-4
    assert abs(float(ga1 - ga0)) / abs(float(ga0)) < 1e-4


@pytest.mark.parametrize("memory", ["store", "constant"])
def test_unrolling_the_last_steps_gives_the_gradient_of_plain_unroll(memory):
    """graph_steps K: the last K steps by autograd, the rest by the adjoint sweep; every K is exact."""
    st, th, target, syn, lab, a, plan, t = _case(torch.float64)
    l0, gx0, ga0 = matching_loss(st, th, target, 1.3, syn, lab, a, plan, t, "unroll")
    n = len(plan)
    for k in (1, n // 2, n - 1, n):
        l1, gx1, ga1 = matching_loss(st, th, target, 1.3, syn, lab, a, plan, t, memory, leaf=2, graph_steps=k)
        assert l1 == pytest.approx(l0, rel=1e-9)
        assert float((gx1 - gx0).norm() / gx0.norm()) < 1e-8, k
        assert abs(float(ga1 - ga0)) / abs(float(ga0)) < 1e-8, k


def test_plan_memory_unrolls_as_many_last_steps_as_the_budget_holds():
    from gzmorph.matching import plan_memory

    mb = 2**20
    # 20 steps, a step's measured graph 10 MB (planned at STEP_MARGIN 1.3: 13 MB), parameters 1 MB
    assert plan_memory(20, 10 * mb, mb, 260 * mb) == ("unroll", 20)
    memory, k = plan_memory(20, 10 * mb, mb, 110 * mb)  # 20 snapshots + k graphs: (110 - 20) // 12 = 7
    assert (memory, k) == ("store", 7)
    assert plan_memory(20, 10 * mb, mb, 20 * mb) == ("store", 0)
    assert plan_memory(20, 10 * mb, mb, 15 * mb)[0] == "constant"
    ks = [plan_memory(20, 10 * mb, mb, b * mb)[1] for b in range(20, 280, 10)]
    assert ks == sorted(ks) and ks[0] == 0 and ks[-1] == 20  # more memory, never fewer unrolled steps


def test_the_default_memory_budget_reads_the_tightest_cgroup_limit(tmp_path, monkeypatch):
    """A Slurm job's or a container's limit (cgroup v2 memory.max up the tree, v1 limit_in_bytes
    with its 'no limit' huge number) caps the default budget at half of it."""
    import torch

    from gzmorph import matching

    v2, proc = tmp_path / "v2", tmp_path / "cgroup"
    (v2 / "slurm/job_7/step_0").mkdir(parents=True)
    (v2 / "memory.max").write_text("max\n")
    (v2 / "slurm/job_7/memory.max").write_text(f"{8 * 2**30}\n")
    (v2 / "slurm/job_7/step_0/memory.max").write_text("max\n")
    proc.write_text("0::/slurm/job_7/step_0\n")
    assert matching.cgroup_limit_bytes(proc, v2) == 8 * 2**30
    v1 = tmp_path / "v1"
    (v1 / "memory/docker/abc").mkdir(parents=True)
    (v1 / "memory/memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")  # v1's "no limit"
    (v1 / "memory/docker/abc/memory.limit_in_bytes").write_text(f"{3 * 2**30}\n")
    proc.write_text("12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n")
    assert matching.cgroup_limit_bytes(proc, v1) == 3 * 2**30
    (v1 / "memory/docker/abc/memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")
    assert matching.cgroup_limit_bytes(proc, v1) is None
    assert matching.cgroup_limit_bytes(tmp_path / "absent", v1) is None
    monkeypatch.setattr(matching, "cgroup_limit_bytes", lambda: 2 * 2**30)
    assert matching.device_budget_bytes(torch.device("cpu")) == 2**30  # half the job's 2 GiB, not the machine's


def test_a_step_graph_is_measured_and_grows_with_the_batch():
    from gzmorph.matching import step_graph_bytes

    st, th, target, syn, lab, a, plan, t = _case(torch.float32)
    small = step_graph_bytes(st, th, syn[:2], lab[:2], t, None)
    large = step_graph_bytes(st, th, syn, lab, t, None)
    assert large > small > th.numel() * 4


def test_peak_memory_does_not_grow_with_steps():
    """Peak RSS increment (fresh process, glibc mmap threshold 64 KiB so freed tensors leave the RSS)."""
    code = r"""
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from bench_distill import rss_bytes, reset_peak_rss, peak_rss_bytes
from gzmorph.matching import matching_loss
from gzmorph.experts import step_generator
from gzmorph.models import build_convnet
from gzmorph.student import Student, flat_params
from gzmorph.augment import AugmentConfig, BatchTransform
net = build_convnet(3, 32, width=16); st = Student(net); th = flat_params(net)
t = BatchTransform([0.5]*3, [0.25]*3, AugmentConfig(), cutout=0.5)
syn = torch.randn(12, 3, 32, 32); lab = torch.arange(3).repeat_interleave(4)
assert reset_peak_rss()
def run(n, mem):
    plan = [(torch.arange(12), t.sample(12, step_generator(0, 0, k))) for k in range(n)]
    reset_peak_rss(); base = rss_bytes()
    matching_loss(st, th, th + 0.01, 1.0, syn, lab, torch.tensor(0.01), plan, t, mem)
    return peak_rss_bytes() - base
run(1, "constant"); run(1, "unroll")
out = {"c10": run(10, "constant"), "c40": run(40, "constant"), "u10": run(10, "unroll")}
print("RES" + json.dumps(out))
"""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    proc = subprocess.run([sys.executable, "-c", code, bench], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RES")][-1][3:])
    assert r["c40"] <= 2 * max(r["c10"], 1), r  # a few MB each; a graph kept per step would be ~4x
    assert r["u10"] > 3 * r["c10"] > 0, r  # the measurement does see the unrolled graph


def test_pearson_and_config():
    assert pearson([0, 1, 2, 3], [3, 2, 1, 0]) == pytest.approx(-1)
    assert pearson([0, 1, 2], [1, 1, 1]) == 0.0
    with pytest.raises(InputError, match="unknown option"):
        DistillConfig.from_dict({"bogus": 1})
    with pytest.raises(InputError, match="method"):
        DistillConfig.from_dict({"method": "dc"})


def test_stm_schedule_grows_the_cap_then_fine_tunes():
    cfg = STMConfig(check_every=3, r_down=0.9, r_up=0.9, patience=4, ft_every=2, ft_factor=0.5, lr_floor=1.0)
    s = STMSchedule(cfg, n_epochs=3)
    assert (s.cap, s.mode, s.start_epoch(5), s.probing) == (1, "stage", 0, True)
    steps = [s.update(it, loss) for it, loss in enumerate([3.0, 2.0, 1.0])]  # a significant decrease
    assert s.cap == 2 and steps[-1].grew
    assert steps[-1].events == [{"iteration": 2, "event": "cap", "cap": 2, "r": s.r, "sigma": 1.0}]
    assert s.r == pytest.approx(-1) and s.start_epoch(9) == 1  # start epochs: iteration % cap
    # no trend; the check after more than `patience` iterations of the stage switches to fine-tuning
    steps = [s.update(it, 1.0) for it in range(3, 9)]
    assert s.mode == "finetune" and steps[-1].events[0]["event"] == "finetune" and not s.probing
    assert steps[-1].lr_scale == 0.5  # iteration 8: the image lr decays at iterations divisible by ft_every
    assert [s.update(it).lr_scale for it in range(9, 13)] == [1.0, 0.5, 1.0, 0.5]
    assert s.start_epoch(7) == 1 and s.finished(0.9) and not s.finished(1.0)


# the "default" preset as it was written out by hand before the dataclasses became its source
DEFAULT_PRESET = {
    "methods": ["mtt", "stm"], "ipc": [1], "n_experts": 2, "image_size": 16,
    "width": 16, "depth": 3, "norm": "instance", "zca": False, "augment": True, "cutout": 0.5,
    "memory": "auto", "memory_budget_mb": 0, "leaf": 4, "amp": "off", "channels_last": False,
    "keep_freed_memory": False, "device": "auto",
    "threads": 2, "gpu_mem_mb": 8000, "runtime": 60,
    "expert": {"epochs": 4, "lr": 0.01, "batch_size": 32, "class_weighted": False},
    "mtt": {"syn_steps": 8, "expert_epochs": 2, "max_start_epoch": 2, "iterations": 30,
            "lr_img": 100.0, "lr_alpha": 1e-5, "alpha0": 0.01, "batch_syn": 0, "alpha_param": "direct"},
    "stm": {"syn_steps": 8, "iterations": 40, "lr_img": 100.0, "lr_alpha": 1e-5, "alpha0": 0.01,
            "batch_syn": 0, "alpha_param": "direct", "check_every": 10, "r_down": 5.0, "r_up": 3.0, "patience": 20,
            "ft_every": 5, "ft_factor": 0.8, "lr_floor": 60.0, "alpha_per_epoch": False},
    "ipc_overrides": {},
    "eval": {"n_nets": 2, "epochs": 80, "baseline_lr": 0.01, "full_epochs": 4, "full_lr": 0.01,
             "batch_size": 256, "full_batch_size": 64, "full_patience": 5},
}


def test_default_preset_is_the_dataclass_defaults():
    """The option dataclasses are the one source of defaults: the resolved "default" preset is theirs."""
    from dataclasses import asdict, fields

    from gzmorph.distill_settings import (DistillSettings, EvalOptions, ExpertTraining, MTTOptions, STMOptions,
                                         default_preset)
    from gzmorph.distill_settings import DISTILL_PRESETS, distill_method_options, distill_settings

    resolved = distill_settings({})
    assert resolved == asdict(DistillSettings()) == default_preset() == DEFAULT_PRESET
    assert resolved["expert"] == asdict(ExpertTraining()) and resolved["eval"] == asdict(EvalOptions())
    assert resolved["mtt"] == asdict(MTTOptions()) and resolved["stm"] == asdict(STMOptions())
    # the run configurations agree with the blocks they extend
    exp, ev = ExpertConfig(), EvalConfig()
    assert all(getattr(exp, k) == v for k, v in resolved["expert"].items())
    assert all(getattr(exp, k) == resolved[k] for k in ("width", "depth", "norm", "augment", "cutout", "device"))
    assert all(getattr(ev, k) == v for k, v in resolved["eval"].items()) and ev.device == resolved["device"]
    for method in ("mtt", "stm"):
        cfg = DistillConfig.from_dict({**distill_method_options(resolved, method, 1), "method": method})
        assert all(getattr(cfg, k) == v for k, v in resolved[method].items() if not hasattr(cfg.stm, k))
        assert asdict(cfg.stm) == {f.name: resolved["stm"][f.name] for f in fields(STMConfig)}
        assert (cfg.memory, cfg.leaf, cfg.device) == (resolved["memory"], resolved["leaf"], resolved["device"])
    # the other presets only change keys the dataclasses have
    for preset in DISTILL_PRESETS.values():
        assert set(preset) == set(resolved)
        assert all(set(preset[b]) == set(resolved[b]) for b in ("expert", "mtt", "stm", "eval"))


@pytest.fixture(scope="module")
def experts(tmp_path_factory, tiny_data):
    d = tmp_path_factory.mktemp("experts")
    cfg = ExpertConfig(epochs=3, lr=0.05, batch_size=16, width=4)
    return [d / f"expert_{i:03d}.pt" for i in range(2) if train_expert(tiny_data, d / f"expert_{i:03d}.pt", cfg, index=i)]


MC = {"name": "convnet_d3", "num_classes": 3, "image_size": 8, "width": 4, "depth": 3, "norm": "instance"}


@pytest.mark.parametrize("method", ["mtt", "stm"])
def test_distill_runs_and_writes(tmp_path, tiny_data, experts, method, caplog):
    cfg = DistillConfig(method=method, ipc=2, syn_steps=3, expert_epochs=1, max_start_epoch=2, iterations=15,
                        lr_img=10.0, lr_alpha=1e-4, alpha0=0.05,
                        stm=STMConfig(check_every=3, r_down=0.5, r_up=0.5, patience=6, ft_every=2,
                                      ft_factor=0.5, lr_floor=2.0))
    with caplog.at_level("INFO", logger="gzmorph.distill"):
        r = distill(tiny_data, experts, cfg, MC)
    # memory: auto says in the log what it chose, from which budget
    assert re.search(r"distill memory: budget \d+ MB \(what the cpu has\), one student step's graph [\d.]+ MB, "
                     r"parameters [\d.]+ MB: all 3 steps unrolled", caplog.text), caplog.text
    assert r["images"].shape == (6, 3, 8, 8) and torch.isfinite(r["images"]).all()
    assert r["alpha"].numel() == 1 and float(r["alpha"]) > 0
    if method == "stm":
        assert r["stage_log"] and {"cap", "next_epoch_loss", "r", "sigma", "lr_img", "mode"} <= set(r["stage_log"][0])
        assert any(e["event"] == "stop" for e in r["events"]) or len(r["history"]) == 15
    write_outputs(r, tiny_data, tmp_path / "s.pt", tmp_path / "g.png", tmp_path / "h.tsv", tmp_path / "st.tsv")
    assert (tmp_path / "g.png").stat().st_size > 0
    ec = EvalConfig(n_nets=2, epochs=3, full_epochs=1)
    acc = evaluate_synthetic(r, tiny_data, ec, 0)
    assert 0 <= acc["mean"] <= 1 and len(acc["runs"]) == 2
    baselines = {kind: evaluate_baseline(kind, 2, tiny_data, MC, ec, 0) for kind in ("random", "mean")}
    for kind in ("random", "mean"):
        assert 0 <= baselines[kind]["mean"] <= 1
    # the report section reads what the stage wrote
    write_json(tmp_path / "eval.json", eval_record(r, acc, baselines, len(tiny_data.y_test)))
    (tmp_path / "expert_000.tsv").write_text("epoch\ttrain_accuracy\ttest_accuracy\ttest_balanced_accuracy\n"
                                             "1\t0.5\t0.4\t0.375\n")
    frag = read_fragment(report_section([tmp_path / "eval.json"], [tmp_path / "s.pt"], [tmp_path / "expert_000.tsv"],
                                        tmp_path / "distillation.html"))
    assert frag.anchor == "distillation" and "Prototypes" in frag.html
    assert "test_balanced_accuracy" in frag.html and "0.375" in frag.html  # the experts' table, plain and balanced


def test_the_spread_over_nets_is_the_sample_standard_deviation():
    from gzmorph.distill_eval import summary

    out = summary({"accuracy": [0.4, 0.6], "balanced_accuracy": [0.5, 0.5]})
    assert out["mean"] == pytest.approx(0.5) and out["sd"] == pytest.approx(2 ** 0.5 / 10)
    assert out["balanced_accuracy_sd"] == 0.0 and summary([0.7]) == {"mean": 0.7, "sd": 0.0, "runs": [0.7]}


class _Killed(Exception):
    pass


def test_a_killed_evaluation_resumes_and_ends_with_the_uninterrupted_figures(tmp_path, tiny_data, monkeypatch,
                                                                             caplog):
    """The full-data nets killed in net 1's third epoch: the rerun takes net 0 from the work folder,
    continues net 1 from its last epoch (its best epoch's weights from ``best.pt``) and trains net 2,
    ending with the uninterrupted run's figures, bit for bit.  Another seed's rerun sets the finished
    net aside and trains every net afresh.  A random baseline keeps its finished nets only."""
    import gzmorph.train as train_module

    data = dataclasses.replace(tiny_data, x_val=tiny_data.x_test, y_val=tiny_data.y_test)
    ec = EvalConfig(n_nets=3, epochs=6, full_epochs=6, full_patience=3, full_batch_size=8)
    whole = evaluate_baseline("full", 0, data, MC, ec, 0)
    work = tmp_path / "full.work"
    real_fit, nets = train_module.fit, []

    def fit_killed_in_net_1(*args, **kwargs):
        nets.append(kwargs["checkpoint_dir"])
        if len(nets) == 2:
            def kill(epoch, row, model):
                if epoch == 3:
                    raise _Killed
            kwargs["on_epoch_end"] = kill
        return real_fit(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(train_module, "fit", fit_killed_in_net_1)
        with pytest.raises(_Killed):
            evaluate_baseline("full", 0, data, MC, ec, 0, work_dir=work)
    assert nets == [work / "net0", work / "net1"]
    assert sorted(p.name for p in work.iterdir()) == ["net0.json", "net1"]  # net 0's checkpoints removed
    assert (work / "net1" / "last.pt").exists()
    with caplog.at_level("INFO", logger="gzmorph"):
        resumed = evaluate_baseline("full", 0, data, MC, ec, 0, work_dir=work)
    assert f"net 0: finished before, from {work / 'net0.json'}" in caplog.text
    assert f"resumed from {work / 'net1' / 'last.pt'} after epoch 3" in caplog.text
    assert resumed == whole
    assert sorted(p.name for p in work.iterdir()) == ["net0.json", "net1.json", "net2.json"]

    caplog.clear()
    with caplog.at_level("INFO", logger="gzmorph"):
        other = evaluate_baseline("full", 0, data, MC, ec, 1, work_dir=work)
    assert f"{work / 'net0.json'}: finished net of another evaluation; training it again" in caplog.text
    assert "finished before" not in caplog.text
    assert other == evaluate_baseline("full", 0, data, MC, ec, 1)

    # a baseline of a few images per class (an epoch is one step): finished nets only, no epoch checkpoints
    whole = evaluate_baseline("random", 2, data, MC, ec, 0)
    work, nets[:] = tmp_path / "random.work", []
    with monkeypatch.context() as m:
        m.setattr(train_module, "fit", fit_killed_in_net_1)
        with pytest.raises(_Killed):
            evaluate_baseline("random", 2, data, MC, ec, 0, work_dir=work)
    assert nets == [None, None] and sorted(p.name for p in work.iterdir()) == ["net0.json"]
    caplog.clear()
    with caplog.at_level("INFO", logger="gzmorph"):
        assert evaluate_baseline("random", 2, data, MC, ec, 0, work_dir=work) == whole
    assert "net 0: finished before" in caplog.text and "resumed from" not in caplog.text


def test_nan_rolls_back(tiny_data, experts):
    """An absurd image lr makes the loss explode: the run rolls back, lowers the lr and writes finite images."""
    cfg = DistillConfig(method="mtt", ipc=1, syn_steps=2, expert_epochs=1, max_start_epoch=1, iterations=6,
                        lr_img=1e30, lr_alpha=1e30, alpha0=0.05, alpha_max=1.0, max_rollbacks=100)
    r = distill(tiny_data, experts, cfg, MC)
    assert any(e["event"] == "rollback" for e in r["events"])
    assert torch.isfinite(r["images"]).all() and 0 < float(r["alpha"]) <= 1.0


def test_bad_inputs(tmp_path, tiny_data, experts):
    with pytest.raises(InputError, match="ipc 99 is larger"):
        check_ipc(tiny_data, 99)
    with pytest.raises(InputError, match="does not exist"):
        distill(tiny_data, [tmp_path / "nope.pt"], DistillConfig(), MC)
    with pytest.raises(InputError, match="needs|needed"):
        distill(tiny_data, experts, DistillConfig(max_start_epoch=3, expert_epochs=2, ipc=1), MC)
    with pytest.raises(InputError, match="another set-up"):
        distill(tiny_data, experts, DistillConfig(ipc=1, max_start_epoch=1, expert_epochs=1), {**MC, "width": 8})


# --------------------------------------------------------------------------- resuming after a kill

# MTT: rollbacks at iterations 0 and 5; STM (one α per epoch): the cap grows at 2 and 5, fine-tuning
# from 14, the stop at 18
RESUMABLE = {
    "mtt": DistillConfig(method="mtt", ipc=2, syn_steps=3, expert_epochs=1, max_start_epoch=2, iterations=12,
                         memory="unroll", lr_img=10.0, lr_alpha=1e-2, alpha0=0.05, alpha_max=0.2, max_rollbacks=100),
    "stm": DistillConfig(method="stm", ipc=2, syn_steps=3, iterations=30, memory="unroll", lr_img=10.0,
                         lr_alpha=1e-4, alpha0=0.05,
                         stm=STMConfig(check_every=3, r_down=0.01, r_up=0.01, patience=6, ft_every=2, ft_factor=0.5,
                                       lr_floor=2.0, alpha_per_epoch=True)),
}


class Killed(Exception):
    """A test's kill: raised inside an iteration, which stops the run as a SIGKILL would."""


def _killed_at(monkeypatch, iteration: int, *args, **kwargs) -> None:
    """Run :func:`distill` (checkpointing every iteration) until it is killed in ``iteration``."""
    match = distill_module._Run.match

    def killing(self, syn, it, *a, **kw):
        if it == iteration:
            raise Killed(it)
        return match(self, syn, it, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(distill_module._Run, "match", killing)
        with pytest.raises(Killed):
            distill(*args, checkpoint_every=0, **kwargs)


def _saved(work) -> dict:
    # imported here, so that each test fails on its own on code without the module
    from gzmorph.distill_checkpoint import CHECKPOINT_FORMAT

    return load_bundle(work / "checkpoint.pt", CHECKPOINT_FORMAT, "checkpoint")


_UNINTERRUPTED: dict = {}


def _uninterrupted(data, experts, cfg, augment=AUGMENT) -> dict:
    """The run without a kill or work folder (once per module for each set-up)."""
    key = repr((cfg, [str(p) for p in experts], augment))
    if key not in _UNINTERRUPTED:
        _UNINTERRUPTED[key] = distill(data, experts, cfg, MC, augment=augment)
    return _UNINTERRUPTED[key]


def _same_run(a: dict, b: dict) -> None:
    """Bit-identical results (the rows without their wall times; NaN equal to NaN)."""
    def plain(rows):
        return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in rows], sort_keys=True)

    assert torch.equal(a["images"], b["images"]) and torch.equal(a["alpha"], b["alpha"])
    for key in ("history", "stage_log", "events"):
        assert plain(a[key]) == plain(b[key]), key
    assert (a["iterations"], a["final_cap"]) == (b["iterations"], b["final_cap"])


def _checkpoint_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "checkpoint" in r.getMessage()]


@pytest.mark.parametrize("method, kills", [("mtt", (3, 8)), ("stm", (5, 16))])
def test_a_killed_distillation_resumes_and_ends_as_the_uninterrupted_run(tmp_path, tiny_data, experts, method,
                                                                         kills, monkeypatch, caplog):
    """Killed twice and resumed each time from its checkpoint (MTT: after a rollback, then after the
    next; STM: mid-stage with the cap grown and a record of next-epoch losses, then while fine-tuning
    with the image lr decayed), the run ends bit-identical to the uninterrupted one: images, α,
    history, stage log and events (on the CPU the same float operations run in the same order)."""
    cfg = RESUMABLE[method]
    whole = _uninterrupted(tiny_data, experts, cfg)
    work = tmp_path / "run.work"
    first, second = kills
    _killed_at(monkeypatch, first, tiny_data, experts, cfg, MC, work_dir=work)
    saved = _saved(work)
    assert saved["iteration"] == first
    assert len(saved["history"]) == sum(r["iteration"] < first for r in whole["history"])
    if method == "mtt":
        assert saved["synthetic"]["n_rollbacks"] == 1
    else:  # a state of the schedule that a fresh one does not have
        assert saved["schedule"]["cap"] == 2 and len(saved["schedule"]["record"]) == 2
        assert saved["synthetic"]["n_used"] == 2
    with caplog.at_level("INFO", logger="gzmorph"):
        _killed_at(monkeypatch, second, tiny_data, experts, cfg, MC, work_dir=work)
        assert f"resumed at iteration {first} of {cfg.iterations}" in caplog.text
        saved = _saved(work)
        assert saved["iteration"] == second
        assert saved["synthetic"]["n_rollbacks"] == 2 if method == "mtt" else saved["schedule"]["mode"] == "finetune"
        caplog.clear()
        resumed = distill(tiny_data, experts, cfg, MC, work_dir=work, checkpoint_every=0)
        assert f"resumed at iteration {second} of {cfg.iterations}" in caplog.text
    assert not _checkpoint_warnings(caplog)
    _same_run(resumed, whole)
    assert resumed["seconds"] >= saved["seconds"]  # the killed processes' time counts


@pytest.mark.parametrize("change", ["config", "augment", "experts"])
def test_a_checkpoint_of_another_run_is_set_aside(tmp_path, tiny_data, experts, change, monkeypatch, caplog):
    """Another seed, augmentation or set of experts (here: the same files in another order) does not
    continue a checkpoint: one warning names what differs, and the run is the one from scratch."""
    cfg = RESUMABLE["mtt"]
    work = tmp_path / "run.work"
    _killed_at(monkeypatch, 4, tiny_data, experts, cfg, MC, work_dir=work)
    other = {"config": (dataclasses.replace(cfg, seed=1), experts, AUGMENT), "augment": (cfg, experts, False),
             "experts": (cfg, experts[::-1], AUGMENT)}[change]
    with caplog.at_level("INFO", logger="gzmorph"):
        r = distill(tiny_data, other[1], other[0], MC, augment=other[2], work_dir=work, checkpoint_every=0)
    warnings = _checkpoint_warnings(caplog)
    assert len(warnings) == 1 and f"of another run ({change} differ)" in warnings[0], warnings
    assert "resumed" not in caplog.text
    _same_run(r, _uninterrupted(tiny_data, other[1], other[0], other[2]))


@pytest.mark.parametrize("damage", ["truncated", "pickled", "inconsistent"])
def test_an_unreadable_checkpoint_is_set_aside_with_a_warning(tmp_path, tiny_data, experts, damage, monkeypatch,
                                                              caplog):
    """A truncated checkpoint, a pickle in its place (never loaded) or one of this run's identity whose
    state does not fit the run: one warning, no traceback, and the run is the one from scratch."""
    cfg = RESUMABLE["mtt"]
    work = tmp_path / "run.work"
    _killed_at(monkeypatch, 4, tiny_data, experts, cfg, MC, work_dir=work)
    path = work / "checkpoint.pt"
    if damage == "truncated":
        os.truncate(path, path.stat().st_size // 2)
    elif damage == "pickled":  # (written beside it and moved: the loaded tensors map the file)
        torch.save(dict(_saved(work)), work / "pickle.pt")
        os.replace(work / "pickle.pt", path)
    else:
        saved = _saved(work)
        saved["synthetic"]["images"] = saved["synthetic"]["images"][:1]
        save_bundle(path, saved, saved["format"])
    with caplog.at_level("INFO", logger="gzmorph"):
        r = distill(tiny_data, experts, cfg, MC, work_dir=work, checkpoint_every=0)
    warnings = _checkpoint_warnings(caplog)
    reason = "cannot be restored" if damage == "inconsistent" else "unreadable"
    assert len(warnings) == 1 and reason in warnings[0] and "distilling from iteration 0" in warnings[0], warnings
    assert "resumed" not in caplog.text
    _same_run(r, _uninterrupted(tiny_data, experts, cfg))


def test_two_rollbacks_in_a_row_return_to_the_last_good_state():
    """A rollback must not hand the last good momentum itself to the optimiser: the next step would
    change it in place, and a second rollback would return to that changed state."""
    from gzmorph.distill import _Synthetic

    syn = _Synthetic(torch.zeros(2, 3, 4, 4), 1, DistillConfig(alpha0=0.05, lr_img=1.0, lr_alpha=1e-3))
    g = torch.ones(2, 3, 4, 4)
    assert syn.step(1.0, g, torch.tensor(0.0), 0) is None
    good = [t.clone() for t in (syn.images.detach(), syn.opt_img.state[syn.images]["momentum_buffer"])]
    for _ in range(2):  # α leaves (0, alpha_max] after the images' step: rolled back
        assert syn.step(1.0, g, torch.tensor(-1e9), 0)
        syn.roll_back(1, "alpha")
        assert torch.equal(syn.images.detach(), good[0])
        assert torch.equal(syn.opt_img.state[syn.images]["momentum_buffer"], good[1])


def _bench_distill():
    """``benchmarks/bench_distill.py`` as a module (the benchmarks folder is not a package)."""
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    sys.path.insert(0, bench)
    try:
        import bench_distill
    finally:
        sys.path.remove(bench)
    return bench_distill


def test_distillation_benchmark_times_distill_itself(tmp_path):
    """bench_distill runs gzmorph.distill.distill in a fresh process: a warm-up iteration, then the
    median of the timed ones and the whole process's peak RSS."""
    import statistics

    B = _bench_distill()
    expert = B.write_expert(str(tmp_path), 16, 3, 8)
    r = B.probe_subprocess(threads=1, expert=expert, image_size=16, ipc=1, syn_steps=2, width=8, n_classes=3,
                           memory="auto", budget_mb=500, repeats=3)
    assert len(r["seconds_runs"]) == 3 and r["seconds_per_iteration"] == pytest.approx(
        statistics.median(r["seconds_runs"]), abs=1e-3)
    assert r["planned"] == "all 2 steps unrolled" and r["peak_rss_mb"] > 100


def test_memory_benchmark_measures_each_step_in_its_own_process(tmp_path):
    """bench_memory runs each case in a fresh process and reports its peak growth beside the input's size."""
    out = subprocess.run([sys.executable, "benchmarks/bench_memory.py", "--n", "600", "--dim", "8", "--cases",
                          "class_means", "read_embeddings", "--out", str(tmp_path / "m.json")],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "m.json").read_text())["rows"]
    assert [(r["case"], r["n"]) for r in rows] == [("class_means", 600), ("read_embeddings", 600)]
    assert rows[0]["input_mb"] == round(600 * 16 * 16 * 3 / 2**20, 1)
    assert rows[1]["input_mb"] == round(600 * 8 * 4 / 2**20, 1)
    assert all(r["peak_growth_mb"] >= 0 and r["seconds"] >= 0 for r in rows)


def test_distillation_benchmark_skips_the_reference_it_cannot_find(tmp_path, monkeypatch, capsys):
    """No checkout of the MTT reference: a message says the comparison is skipped, gzmorph is timed
    alone, and the run succeeds."""
    B = _bench_distill()
    monkeypatch.setenv("GZMORPH_MTT_REFERENCE", str(tmp_path / "nowhere"))
    monkeypatch.setattr(B, "expert_images_per_s", lambda *a: 1.0)
    out = tmp_path / "b.json"
    B.main(["--steps", "1", "--ipc", "1", "--sizes", "8", "--classes", "2", "--width", "4", "--repeats", "1",
            "--threads", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert "skipping the comparison with the MTT reference" in err and "nowhere" in err
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 1 and runs[0]["memory"] == "auto" and "reference" not in out.read_text()
    assert (runs[0]["amp"], runs[0]["channels_last"]) == ("off", False)
    assert json.loads(out.read_text())["mmap_threshold_kb"] == "glibc default"


def test_distillation_benchmark_refuses_a_typed_reference_it_cannot_use(tmp_path, monkeypatch, capsys):
    """A mistyped --reference ran the whole gzmorph-only sweep (tens of minutes) and exited 0; options
    the comparison's fixed workload ignores were dropped without a word."""
    B = _bench_distill()
    monkeypatch.delenv("GZMORPH_MTT_REFERENCE", raising=False)
    monkeypatch.setattr(B, "probe_subprocess", lambda **kw: pytest.fail("nothing may be timed"))
    with pytest.raises(SystemExit) as err:
        B.main(["--reference", str(tmp_path / "mtt-distilation")])
    assert err.value.code == 2 and "is not a checkout" in capsys.readouterr().err
    ref = tmp_path / "mtt"
    ref.mkdir()
    for f in ("reparam_module.py", "networks.py"):
        (ref / f).write_text("")
    with pytest.raises(SystemExit) as err:
        B.main(["--reference", str(ref), "--ipc", "1", "--device", "cuda"])
    assert err.value.code == 2 and "--ipc, --device would be ignored" in capsys.readouterr().err


def test_distillation_benchmark_times_each_precision_it_is_given(tmp_path, monkeypatch):
    """--amp off bf16 --channels-last 1 --mmap-threshold 64: one probe per variant, each as asked."""
    B = _bench_distill()
    monkeypatch.setenv("GZMORPH_MTT_REFERENCE", "")
    monkeypatch.setattr(B, "expert_images_per_s", lambda *a: 1.0)
    seen = []
    real = B.probe_subprocess
    monkeypatch.setattr(B, "probe_subprocess", lambda **kw: seen.append(kw["mmap_threshold_kb"]) or real(**kw))
    out = tmp_path / "b.json"
    B.main(["--steps", "1", "--ipc", "1", "--sizes", "8", "--classes", "2", "--width", "4", "--repeats", "1",
            "--threads", "1", "--amp", "off", "bf16", "--channels-last", "1", "--mmap-threshold", "64",
            "--keep-freed-memory", "0",
            "--out", str(out)])
    runs = json.loads(out.read_text())["runs"]
    assert [(r["amp"], r["channels_last"]) for r in runs] == [("off", True), ("bf16", True)] and seen == [64, 64]


def test_distillation_benchmark_rounds_alternate_and_compare_within_a_round(tmp_path, monkeypatch):
    """--rounds 2: every probe twice, the second round in reverse order; each ratio is against the same
    round's reference, and the table gives their median and each one."""
    B = _bench_distill()
    ref = tmp_path / "mtt"
    ref.mkdir()
    for f in ("reparam_module.py", "networks.py"):
        (ref / f).write_text("")
    seconds = {("reference", 0): 10.0, ("auto", 0): 12.0, ("reference", 1): 20.0, ("auto", 1): 18.0}
    order = []

    def fake_probe(**kw):
        memory = "reference" if kw.get("reference") else kw["memory"]
        rnd = sum(1 for m in order if m == memory)
        order.append(memory)
        return {"memory": memory, "syn_steps": kw["syn_steps"], "seconds_per_iteration": seconds[memory, rnd],
                "peak_rss_mb": 100.0 + rnd, "amp": kw.get("amp", "off"), "channels_last": False}

    monkeypatch.setattr(B, "probe_subprocess", fake_probe)
    monkeypatch.setattr(B, "write_expert", lambda *a: "expert")
    out = tmp_path / "b.json"
    B.main(["--reference", str(ref), "--steps", "3", "--rounds", "2", "--out", str(out)])
    assert order == ["reference", "auto", "auto", "reference"]
    row = json.loads(out.read_text())["table"]["N=3"]["auto"]
    assert row["ratios"] == [1.2, 0.9] and row["time_vs_reference"] == pytest.approx(1.05)
    assert row["s_per_iter"] == 15.0 and row["peak_rss_mb"] == 101.0
    with pytest.raises(SystemExit):
        B.main(["--reference", str(ref), "--rounds", "0"])


def test_the_checkpoint_interval_comes_from_the_environment():
    from gzmorph.distill_checkpoint import CHECKPOINT_EVERY, INTERVAL_VARIABLE, checkpoint_interval

    assert checkpoint_interval({}) == CHECKPOINT_EVERY == 300.0
    assert checkpoint_interval({INTERVAL_VARIABLE: "0"}) == 0.0 and checkpoint_interval({INTERVAL_VARIABLE: "60"}) == 60
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(InputError, match=f"{INTERVAL_VARIABLE}='{bad}': seconds between checkpoints"):
            checkpoint_interval({INTERVAL_VARIABLE: bad})
