"""The distillation student's forward pass in bf16 autocast and in channels-last format (``distill.amp``,
``distill.channels_last``): the matching gradient stays within tolerance of float32's, the options reach
the student from the config, and a bad value is one error when the DAG is built."""

from __future__ import annotations

import pytest
import torch
from test_experts import tiny_data  # noqa: F401  (fixture)

from gzmorph.augment import BatchTransform
from gzmorph.distill import DistillConfig, distill
from gzmorph.experts import ExpertConfig, train_expert
from gzmorph.io import InputError
from gzmorph.matching import matching_loss
from gzmorph.models import build_convnet
from gzmorph.student import Student, flat_params, student_dtype


def _matching(student: Student, n_steps: int = 6, memory: str = "unroll"):
    """Loss and gradients of a small matching problem (30 images of 16 px, the student's net as built)."""
    torch.manual_seed(0)
    th = flat_params(student.model)
    target = th + 0.01 * torch.randn_like(th)
    syn = torch.randn(30, 3, 16, 16)
    labels = torch.arange(3).repeat_interleave(10)
    plan = [(torch.arange(30), None)] * n_steps
    return matching_loss(student, th, target, float(((th - target) ** 2).sum()), syn, labels, torch.tensor(0.01),
                         plan, BatchTransform([0.5] * 3, [0.25] * 3), memory, leaf=2)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("memory", ["unroll", "constant"])
def test_bf16_matching_gradient_is_float32s_within_tolerance(memory):
    """Under bf16 autocast the image gradient points the same way as float32's (cosine > 0.99) and
    differs by under 10 % in norm, α's likewise; the loss to 1e-3.  It does differ (bf16 did run),
    and the student's logits come back float32."""
    torch.manual_seed(0)
    net = build_convnet(3, 16, width=32)
    l32, gx32, ga32 = _matching(Student(net), memory=memory)
    l16, gx16, ga16 = _matching(Student(net, torch.bfloat16), memory=memory)
    cos = float(torch.nn.functional.cosine_similarity(gx16.flatten(), gx32.flatten(), dim=0))
    assert cos > 0.99 and _rel(gx16, gx32) < 0.1
    assert abs(float(ga16 - ga32)) / abs(float(ga32)) < 0.1
    assert l16 == pytest.approx(l32, rel=1e-3)
    assert _rel(gx16, gx32) > 1e-4  # not float32 in disguise
    logits = Student(net, torch.bfloat16)(flat_params(net), torch.randn(2, 3, 16, 16))
    assert gx16.dtype == torch.float32 and logits.dtype == torch.float32


def test_channels_last_gives_float32s_gradient_and_feeds_the_convs_channels_last():
    torch.manual_seed(0)
    net = build_convnet(3, 16, width=32)
    seen = []
    def record(module, args):
        seen.append(args[0].is_contiguous(memory_format=torch.channels_last))

    hooks = [m.register_forward_pre_hook(record) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    l0, gx0, ga0 = _matching(Student(net), n_steps=3)
    assert seen and not any(seen)
    seen.clear()
    l1, gx1, ga1 = _matching(Student(net, channels_last=True), n_steps=3)
    assert seen and all(seen)
    for h in hooks:
        h.remove()
    assert l1 == pytest.approx(l0, rel=1e-5) and _rel(gx1, gx0) < 1e-3
    assert abs(float(ga1 - ga0)) / abs(float(ga0)) < 1e-3


def test_amp_setting_maps_to_a_dtype_and_rejects_the_rest():
    cpu = torch.device("cpu")
    assert student_dtype("off", cpu) is None and student_dtype(False, cpu) is None  # YAML's unquoted off
    assert student_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(InputError, match=r"distill.amp: 'fp16' is not one of \['off', 'bf16'\]"):
        student_dtype("fp16", cpu)
    with pytest.raises(InputError, match="distill.amp"):
        DistillConfig.from_dict({"amp": "fp16"})
    assert DistillConfig.from_dict({"amp": False}).amp == "off"
    with pytest.raises(InputError, match="distill.amp"):
        DistillConfig(amp="fp16")  # built directly, as the benchmarks do
    with pytest.raises(InputError, match="distill.channels_last: 'false' is not true or false"):
        DistillConfig(channels_last="false")


def test_a_bf16_student_is_planned_as_a_float32_one():
    """memory: auto measures a step's graph in float32 for a bf16 student too: bf16's saved tensors are
    smaller, but a budget planned from them was overrun (docs/results.md)."""
    from gzmorph.matching import auto_memory

    torch.manual_seed(0)
    net = build_convnet(3, 16, width=32)
    x, y = torch.randn(30, 3, 16, 16), torch.arange(3).repeat_interleave(10)
    t = BatchTransform([0.5] * 3, [0.25] * 3)
    plans = [auto_memory(Student(net, dtype), flat_params(net), x, y, t, 10, budget_mb=2)
             for dtype in (None, torch.bfloat16)]
    assert plans[0] == plans[1] and plans[0][2]["step_bytes"] > 0


def test_amp_is_checked_when_the_dag_is_built():
    import yaml
    from test_config_check import SCHEMA_PATH, errors

    from gzmorph.distill_settings import DISTILL_AMP

    schema = yaml.safe_load(open(SCHEMA_PATH))["properties"]["distill"]["properties"]
    assert set(schema["amp"]["enum"]) == {*DISTILL_AMP, False}

    assert errors({"distill": {"amp": "bf16", "channels_last": True}}) == []
    assert errors({"distill": {"amp": False}}) == []
    bad = errors({"distill": {"amp": "fp16"}})
    assert len(bad) == 1 and "distill.amp" in bad[0] and "fp16" in bad[0]
    assert len(errors({"distill": {"channels_last": "yes"}})) == 1


def test_distill_runs_its_student_as_configured(tmp_path, tiny_data, monkeypatch):
    """distill() builds its student from ``amp`` and ``channels_last``, records them in the result's
    config, and its bf16 run's first matching loss is the float32 run's within 2 %."""
    import gzmorph.distill as distill_module

    cfg_e = ExpertConfig(epochs=2, lr=0.05, batch_size=16, width=4)
    experts = [tmp_path / f"expert_{i}.pt" for i in range(2)]
    for i, p in enumerate(experts):
        train_expert(tiny_data, p, cfg_e, index=i)
    mc = {"name": "convnet_d3", "num_classes": 3, "image_size": 8, "width": 4, "depth": 3, "norm": "instance"}
    built = []
    real = distill_module.Student

    def spy(model, dtype=None, channels_last=False):
        built.append((dtype, channels_last))
        return real(model, dtype, channels_last)

    monkeypatch.setattr(distill_module, "Student", spy)
    runs = {}
    for amp, cl in (("off", False), ("bf16", True)):
        cfg = DistillConfig(method="mtt", ipc=1, syn_steps=2, expert_epochs=1, max_start_epoch=1, iterations=3,
                            lr_img=10.0, alpha0=0.05, amp=amp, channels_last=cl)
        runs[amp] = distill(tiny_data, experts, cfg, mc)
        assert runs[amp]["config"]["amp"] == amp and runs[amp]["config"]["channels_last"] == cl
    assert built == [(None, False), (torch.bfloat16, True)]
    first = [runs[a]["history"][0]["loss"] for a in ("off", "bf16")]  # the same images, expert and steps
    assert first[1] == pytest.approx(first[0], rel=0.02) and torch.isfinite(runs["bf16"]["images"]).all()
    # the report says which sets were distilled in bf16 (and only those)
    from gzmorph.distill import write_outputs
    from gzmorph.report import read_fragment
    from gzmorph.report.distill import report_section

    paths = []
    for amp, r in runs.items():
        r = {**r, "ipc": 1 if amp == "off" else 2}  # two keys in the report
        paths.append(tmp_path / f"{amp}.pt")
        write_outputs(r, tiny_data, paths[-1], tmp_path / f"{amp}.png", tmp_path / f"{amp}.tsv")
    html = read_fragment(report_section([], paths, [], tmp_path / "distillation.html")).html
    said = html.split("Sets whose student steps ran with distill.amp or distill.channels_last")[1].split("</div>")[0]
    assert "mtt ipc 2: bf16 autocast, channels-last" in said and "mtt ipc 1" not in said
