"""The correctness items of the distillation issue (#12): ZCA applied once, DSA single-mode
augmentation, STM's schedule as Guan et al. run it, the log-α parametrisation, balanced accuracy.

New names are imported inside the tests, so that each test fails on its own on code without them."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import gzmorph.distill as distill_module
import gzmorph.distill_eval as eval_module
import gzmorph.train as train_module
from gzmorph.augment import normalize, to_float
from gzmorph.distill import DistillConfig, STMConfig, convnet, distill, real_per_class
from gzmorph.distill_eval import EvalConfig
from gzmorph.experts import EXPERT_FORMAT, expected_meta, fit_zca
from gzmorph.io import InputError, save_bundle
from gzmorph.stm import STMSchedule
from gzmorph.student import Student, flat_params

from test_experts import tiny_data  # noqa: F401  (fixture)

MC = {"name": "convnet_d3", "num_classes": 3, "image_size": 8, "width": 4, "depth": 3, "norm": "instance"}


def fake_experts(tmp_path, data, n=2, epochs=4, seed=0):
    """Expert files with random-walk trajectories (no training): what distill reads."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    theta = flat_params(convnet(MC))
    paths = []
    for i in range(n):
        traj = [theta]
        for _ in range(epochs):
            traj.append(traj[-1] + 0.01 * torch.randn(theta.shape, generator=g))
        path = tmp_path / f"expert_{i:03d}.pt"
        save_bundle(path, {"format": EXPERT_FORMAT, "trajectory": torch.stack(traj), "history": [],
                           "meta": expected_meta(data, MC)}, EXPERT_FORMAT)
        paths.append(path)
    return paths


def whiten(x_norm, zca):
    return ((x_norm.reshape(len(x_norm), -1) - zca.mean) @ zca.matrix).view_as(x_norm)


@pytest.fixture
def zca_data(tiny_data):
    x = normalize(to_float(tiny_data.x_train), tiny_data.mean, tiny_data.std)
    return dataclasses.replace(tiny_data, zca=fit_zca(x))


# --------------------------------------------------------------------------- ZCA once


def test_zca_centres_and_whitens_the_training_images(zca_data):
    """As kornia's ZCAWhitening (MTT's): (x − μ) W, so the whitened training split has mean 0 in
    every pixel and, with no regulariser, the identity covariance on the data's span."""
    x = normalize(to_float(zca_data.x_train), zca_data.mean, zca_data.std)
    out = zca_data.transform(False, 0).apply(zca_data.x_train, None).reshape(len(x), -1).double()
    assert out.mean(0).abs().max() < 1e-4  # x @ W alone leaves W μ in every image
    assert torch.allclose(out, whiten(x, zca_data.zca).reshape(len(x), -1).double(), atol=1e-4)
    flat = x.reshape(len(x), -1)
    d = flat.shape[1]
    small = flat[:, :8]  # a few pixels, far fewer than images: a full-rank covariance
    white = fit_zca(small.reshape(len(x), 8, 1, 1), reg=0.0)(small.reshape(len(x), 8, 1, 1)).reshape(len(x), 8)
    cov = white.double().T @ white.double() / (len(x) - 1)
    assert d > 8 and torch.allclose(cov, torch.eye(8, dtype=torch.float64), atol=1e-3)


def test_zca_and_class_means_read_the_split_a_batch_at_a_time(tiny_data):
    """The whitening is fitted over batches of uint8 images normalised on the fly, and the class
    means sum uint8 pixels before normalising: the figures of the whole-split float formulas, at
    any batch size (neither holds a float copy of the split or of a class)."""
    from gzmorph.distill import mean_per_class

    def prepare(b):
        return normalize(to_float(b), tiny_data.mean, tiny_data.std)

    whole = fit_zca(prepare(tiny_data.x_train), reg=0.1)
    for batch in (1, 7, 4096):
        z = fit_zca(tiny_data.x_train, reg=0.1, prepare=prepare, batch_size=batch)
        assert torch.allclose(z.mean, whole.mean, atol=1e-6) and torch.allclose(z.matrix, whole.matrix, atol=1e-5)
    means, labels = mean_per_class(tiny_data, 2, 3)
    gen = torch.Generator().manual_seed(3)
    for c in range(len(tiny_data.classes)):
        idx = torch.nonzero(tiny_data.y_train == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        for j, part in enumerate(idx.tensor_split(2)):
            assert labels[2 * c + j] == c
            assert torch.allclose(means[2 * c + j], prepare(tiny_data.x_train[part]).mean(0), atol=1e-5)


def test_zca_is_applied_once_to_what_the_student_sees(tmp_path, zca_data, monkeypatch):
    seen = []
    call = Student.__call__

    def spy(self, theta, x):
        seen.append(x.detach().clone())
        return call(self, theta, x)

    monkeypatch.setattr(Student, "__call__", spy)
    cfg = DistillConfig(method="mtt", ipc=1, syn_steps=1, expert_epochs=1, max_start_epoch=1, iterations=1)
    distill(zca_data, fake_experts(tmp_path, zca_data), cfg, MC, augment=False)
    x0, _ = real_per_class(zca_data, 1, cfg.seed)  # the initial synthetic images (uint8)
    once = whiten(normalize(to_float(x0), zca_data.mean, zca_data.std), zca_data.zca)
    assert seen[0].shape == once.shape
    assert torch.allclose(seen[0], once, atol=1e-4), float((seen[0] - once).abs().max())


def test_mean_baseline_is_whitened_once(zca_data, monkeypatch):
    captured = {}

    class Stop(Exception):
        pass

    def capture(x, y, *args, **kwargs):
        captured["x"], captured["y"] = x, y
        raise Stop

    monkeypatch.setattr(eval_module, "train_eval_nets", capture)
    with pytest.raises(Stop):
        eval_module.evaluate_baseline("mean", 1, zca_data, MC, EvalConfig(n_nets=1, epochs=1), 0)
    # what an evaluation net sees: the stage's input pipeline applied to the baseline images
    seen = zca_data.transform(False, 0).apply(captured["x"], None)
    x = normalize(to_float(zca_data.x_train), zca_data.mean, zca_data.std)
    means = torch.stack([x[zca_data.y_train == c].mean(0) for c in range(3)])
    assert captured["y"].tolist() == [0, 1, 2]
    assert torch.allclose(seen, whiten(means, zca_data.zca), atol=1e-4)


def test_full_baseline_is_trained_with_the_distilled_sets_pipeline(tiny_data, monkeypatch):
    """The full-data net sees the same augmentation and cutout as the nets trained on a distilled set
    (and the random and mean baselines), and stops on the validation split."""
    seen = {}

    def capture(x, y, data, mc, lr, epochs, cfg, seed, **kw):
        seen[len(x)] = kw
        return {"accuracy": [0.5], "balanced_accuracy": [0.5], "epochs": epochs,
                "nets": [{"epochs_run": epochs, "best_epoch": epochs, "stopped_early": False}]}

    monkeypatch.setattr(eval_module, "train_eval_nets", capture)
    cfg = EvalConfig(n_nets=1, epochs=1, full_epochs=3, full_patience=2)
    eval_module.evaluate_baseline("random", 1, tiny_data, MC, cfg, 0)
    eval_module.evaluate_baseline("full", 1, tiny_data, MC, cfg, 0)
    random, full = seen[len(tiny_data.classes)], seen[len(tiny_data.x_train)]
    assert (full["augment"], full["cutout"]) == (random["augment"], random["cutout"]) == (
        eval_module.AUGMENT, eval_module.CUTOUT)
    assert full["val"][1] is tiny_data.y_val and full["patience"] == 2


# --------------------------------------------------------------------------- DSA single mode


def _u(*cols):
    return torch.tensor(cols, dtype=torch.float32).T.contiguous()  # n×k


def _params(op, u, cfg):
    full = torch.zeros(len(u), 3)
    full[:, :u.shape[1]] = u
    return {"op": torch.tensor([cfg.ops.index(op)]), "u": full}


def test_dsa_ops_are_the_reference_operations():
    """Each op of DSA (Zhao & Bilen 2021, as MTT and Guan et al. use it) on per-sample draws u."""
    from gzmorph.augment import DSAConfig, DSATransform

    cfg = DSAConfig()
    assert (cfg.ops, cfg.brightness, cfg.saturation, cfg.contrast, cfg.crop, cfg.cutout, cfg.flip, cfg.scale,
            cfg.rotate) == (("color", "crop", "cutout", "flip", "scale", "rotate"), 1.0, 2.0, 0.5, 0.125, 0.5,
                            0.5, 1.2, 15.0)
    t = DSATransform([0.0] * 3, [1.0] * 3, cfg)  # mean 0, std 1: normalisation is the identity
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)

    # color: brightness + (u0 - 0.5), saturation x 2 u1 about the channel mean, contrast x (u1 + 0.5)
    u = _u([0.1, 0.9], [0.25, 0.8], [0.0, 1.0])
    ref = x + (u[:, 0] - 0.5).view(-1, 1, 1, 1)
    m = ref.mean(1, keepdim=True)
    ref = (ref - m) * (2 * u[:, 1]).view(-1, 1, 1, 1) + m
    m = ref.mean((1, 2, 3), keepdim=True)
    ref = (ref - m) * (u[:, 2] + 0.5).view(-1, 1, 1, 1) + m
    assert torch.allclose(t.apply(x, _params("color", u, cfg)), ref, atol=1e-5)

    # crop: an integer shift of up to round(0.125 * 16) = 2 px per axis, zeros outside
    u = _u([0.0, 0.99], [0.5, 0.3])  # -> shifts (-2, +2) rows, (0, -1) columns
    out = t.apply(x, _params("crop", u, cfg))
    for i, (dr, dc) in enumerate([(-2, 0), (2, -1)]):
        ref = torch.zeros_like(x[i])
        for r in range(16):
            for c in range(16):
                if 0 <= r + dr < 16 and 0 <= c + dc < 16:
                    ref[:, r, c] = x[i, :, r + dr, c + dc]
        assert torch.equal(out[i], ref)

    # cutout: a zero square of side round(0.5 * 16) = 8 centred at floor(u * 17) (clipped at the edges)
    u = _u([0.0, 0.5], [0.5, 0.99])  # centres (row 0, col 8), (row 8, col 16)
    out = t.apply(x, _params("cutout", u, cfg))
    for i, (r0, c0) in enumerate([(0, 8), (8, 16)]):
        mask = torch.ones(16, 16)
        mask[max(0, r0 - 4):r0 + 4, max(0, c0 - 4):c0 + 4] = 0
        assert torch.equal(out[i], x[i] * mask)

    # flip: horizontal, with probability 0.5 per sample
    out = t.apply(x, _params("flip", _u([0.2, 0.7]), cfg))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])

    # scale: per-axis factors U(1/1.2, 1.2); rotate: U(-15, 15) degrees; bilinear, zeros outside
    def sample_affine(theta):
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    u = _u([0.0, 1.0], [1.0, 0.5])
    lo = 1 / 1.2
    s = lo + u * (1.2 - lo)
    theta = torch.zeros(2, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = s[:, 0], s[:, 1]
    assert torch.allclose(t.apply(x, _params("scale", u, cfg)), sample_affine(theta), atol=1e-5)
    u = _u([0.0, 0.75])
    a = (u[:, 0] - 0.5) * 2 * 15 * math.pi / 180
    theta = torch.stack([torch.stack([a.cos(), -a.sin(), 0 * a], 1), torch.stack([a.sin(), a.cos(), 0 * a], 1)], 1)
    assert torch.allclose(t.apply(x, _params("rotate", u, cfg)), sample_affine(theta), atol=1e-5)


def test_dsa_single_mode_draws_one_op_per_batch_with_per_sample_parameters():
    from gzmorph.augment import DSATransform
    from gzmorph.experts import step_generator

    t = DSATransform([0.3] * 3, [0.2] * 3)
    ops = [int(t.sample(5, step_generator(0, it))["op"]) for it in range(1200)]
    counts = torch.bincount(torch.tensor(ops), minlength=6)
    assert len(counts) == 6 and int(counts.min()) > 150, counts  # uniform over the six families
    p = t.sample(5, step_generator(3, 4, 5))
    assert p["u"].shape == (5, 3) and len(set(p["u"][:, 0].tolist())) == 5  # per sample
    q = t.sample(5, step_generator(3, 4, 5))
    assert all(torch.equal(p[k], q[k]) for k in p)  # seeded: the same draw again
    # siamese: one draw applied to a real batch and to the same images as (normalised) synthetic
    # floats gives the same augmentation; the result is differentiable in the synthetic images
    real = (torch.rand(5, 8, 8, 3) * 255).to(torch.uint8)
    syn = normalize(to_float(real), t.mean, t.std).requires_grad_(True)
    for it in range(12):
        p = t.sample(5, step_generator(1, it))
        assert torch.allclose(t.apply(real, p), t.apply(syn, p), atol=1e-5)
    t.apply(syn, p).sum().backward()
    assert syn.grad is not None and torch.isfinite(syn.grad).all()
    assert torch.allclose(t.apply(real, None), syn.detach(), atol=1e-6)  # no draw: no augmentation


def test_dsa_comes_after_normalisation_and_zca(zca_data):
    from gzmorph.augment import DSATransform

    t = zca_data.transform(True, 0.5)
    assert isinstance(t, DSATransform)
    x = zca_data.x_train[:4]
    p = {"op": torch.tensor([t.dsa.ops.index("flip")]), "u": torch.tensor([[0.1, 0, 0], [0.9, 0, 0]] * 2)}
    net_input = whiten(normalize(to_float(x), zca_data.mean, zca_data.std), zca_data.zca)
    out = t.apply(x, p)
    assert torch.allclose(out[0], net_input[0].flip(-1), atol=1e-5)
    assert torch.allclose(out[1], net_input[1], atol=1e-5)


def test_augment_mode_single_is_the_default_and_all_stays_an_option(tiny_data):
    from gzmorph.augment import AugmentConfig, BatchTransform, DSAConfig, DSATransform

    single = tiny_data.transform(True, 0.5)
    assert isinstance(single, DSATransform) and single.dsa == DSAConfig(cutout=0.5)
    assert isinstance(tiny_data.transform({"mode": "single", "rotate": 10}, 0.5), DSATransform)
    old = tiny_data.transform({"mode": "all", "rotate": 30}, 0.25)  # every op on every image + cutout
    assert type(old) is BatchTransform and old.cfg == AugmentConfig(rotate=30) and old.cutout == 0.25
    none = tiny_data.transform(False, 0.5)
    assert type(none) is BatchTransform and none.cfg is None and none.cutout == 0
    with pytest.raises(InputError, match="mode"):
        tiny_data.transform({"mode": "some"}, 0.5)
    with pytest.raises(InputError, match="unknown option"):
        tiny_data.transform({"mode": "single", "rot90": True}, 0.5)


# --------------------------------------------------------------------------- STM schedule


def _run_schedule(s, losses, first=0):
    return [s.update(it, loss) for it, loss in enumerate(losses, start=first)]


def test_stm_start_epoch_cycles_the_iteration_index_modulo_the_cap():
    s = STMSchedule(STMConfig(check_every=3, r_down=0.5, r_up=100.0, patience=100), n_epochs=5)
    _run_schedule(s, [3.0, 2.0, 1.0])  # iterations 0-2: a significant decrease -> cap 2 after iteration 2
    assert s.cap == 2
    assert [s.start_epoch(it) for it in range(3, 9)] == [1, 0, 1, 0, 1, 0]  # it % cap, not stage-relative
    _run_schedule(s, [1.0] * 3, first=3)
    assert s.cap == 2 and s.start_epoch(7) == 1


def test_stm_increase_is_tested_only_at_every_other_check():
    """r > r_up σ grows the cap only at the 1st, 3rd, ... check of a stage; r < -r_down σ at every check."""
    from gzmorph.stm import pearson

    flat = [1.0 + 0.001 * (i % 2) for i in range(10)]
    rising = flat + [1.0 + 0.1 * i for i in range(1, 21)]
    r = {n: pearson(range(n), rising[:n]) for n in (10, 20, 30)}
    sigma = {n: math.sqrt(1 / (n - 2)) for n in r}
    assert r[10] < 3 * sigma[10] and r[20] > 3 * sigma[20] and r[30] > 3 * sigma[30]  # the script's premise
    s = STMSchedule(STMConfig(check_every=10, r_down=5.0, r_up=3.0, patience=1000), n_epochs=5)
    steps = _run_schedule(s, rising[:20])
    assert s.cap == 1 and not steps[-1].events  # the 2nd check: an increase is not tested
    assert s.r == pytest.approx(r[20])  # (but measured)
    steps = _run_schedule(s, rising[20:30], first=20)
    assert s.cap == 2 and steps[-1].events[0]["event"] == "cap" and steps[-1].events[0]["iteration"] == 29

    # a decrease counts at an even check too: 20 flat records, then a fall, significant at the 4th check
    falling = [1.0 + 0.001 * (i % 2) for i in range(20)] + [1.0 - 0.2 * i for i in range(1, 21)]
    assert pearson(range(30), falling[:30]) > -5 * math.sqrt(1 / 28)
    assert pearson(range(40), falling) < -5 * math.sqrt(1 / 38)
    s = STMSchedule(STMConfig(check_every=10, r_down=5.0, r_up=3.0, patience=1000), n_epochs=5)
    _run_schedule(s, falling[:39])
    assert s.cap == 1
    _run_schedule(s, falling[39:], first=39)
    assert s.cap == 2


def test_stm_fine_tunes_after_patience_at_a_check_and_decays_on_the_iteration_index():
    cfg = STMConfig(check_every=10, r_down=5.0, r_up=3.0, patience=25, ft_every=50, ft_factor=0.8, lr_floor=50.0)
    s = STMSchedule(cfg, n_epochs=5)
    flat = [1.0 + 0.001 * (i % 2) for i in range(40)]
    steps = _run_schedule(s, flat[:29])
    assert s.mode == "stage" and s.probing
    steps = _run_schedule(s, flat[29:30], first=29)  # 30 records > patience at the 3rd check
    assert s.mode == "finetune" and steps[-1].events[0]["event"] == "finetune" and not s.probing
    scales = {it: s.update(it).lr_scale for it in range(30, 151)}
    assert [it for it, f in scales.items() if f != 1.0] == [50, 100, 150] and scales[50] == 0.8
    assert s.start_epoch(151) == 0 and s.cap == 1


class _Script:
    """A stand-in for gzmorph.matching.matching_loss: scripted next-epoch losses, a constant
    gradient; it records what each call was given."""

    def __init__(self, probe_losses, g_alpha=-1.0):
        self.probe_losses, self.g_alpha, self.calls = list(probe_losses), g_alpha, []

    def __call__(self, student, theta0, target, denom, syn, labels, alpha, plan, transform, memory, leaf,
                 need_grad=True, graph_steps=0):
        self.calls.append({"theta0": theta0.detach().clone(), "target": target.detach().clone(), "denom": denom,
                           "syn": syn.detach().clone(), "alpha": float(alpha), "probe": not need_grad})
        if not need_grad:
            return self.probe_losses.pop(0), None, None
        return 1.0, torch.ones_like(syn), torch.tensor(self.g_alpha)


def test_mtt_matches_expert_epochs_ahead_from_a_start_below_max_start_epoch(tmp_path, tiny_data, monkeypatch):
    """MTT's target is the expert ``expert_epochs`` after the start, the start uniform in
    [0, max_start_epoch), and the denominator the squared distance of the two."""
    script = _Script([])
    monkeypatch.setattr(distill_module, "matching_loss", script)
    experts = fake_experts(tmp_path, tiny_data, epochs=5)
    from gzmorph.experts import load_expert

    trajs = [load_expert(p)["trajectory"] for p in experts]
    cfg = DistillConfig(method="mtt", ipc=1, syn_steps=2, expert_epochs=2, max_start_epoch=3, iterations=40,
                        lr_img=1.0, lr_alpha=1e-6, alpha0=0.01)
    r = distill(tiny_data, experts, cfg, MC, augment=False)
    assert len(script.calls) == 40
    for row, call in zip(r["history"], script.calls):
        e, start = row["expert"], row["start_epoch"]
        assert torch.equal(call["theta0"], trajs[e][start]) and torch.equal(call["target"], trajs[e][start + 2])
        assert call["denom"] == pytest.approx(float(((trajs[e][start] - trajs[e][start + 2]) ** 2).sum()), rel=1e-6)
    assert {row["start_epoch"] for row in r["history"]} == {0, 1, 2}
    assert {row["expert"] for row in r["history"]} == {0, 1}


def test_stm_loop_probes_before_the_update_and_grows_per_epoch_alpha_as_guan(tmp_path, tiny_data, monkeypatch):
    script = _Script([3.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    monkeypatch.setattr(distill_module, "matching_loss", script)
    experts = fake_experts(tmp_path, tiny_data, epochs=4)
    from gzmorph.experts import load_expert

    trajs = [load_expert(p)["trajectory"] for p in experts]
    lr, a0 = 1e-3, 0.01
    cfg = DistillConfig(method="stm", ipc=1, syn_steps=2, iterations=6, lr_img=1.0, lr_alpha=lr, alpha0=a0,
                        stm=STMConfig(check_every=3, r_down=0.5, r_up=100.0, patience=100, alpha_per_epoch=True))
    r = distill(tiny_data, experts, cfg, MC, augment=False)
    starts = [row["start_epoch"] for row in r["history"]]
    assert starts == [0, 0, 0, 1, 0, 1]  # it % cap; the cap grows after iteration 2
    calls = script.calls
    assert [c["probe"] for c in calls] == [True, False] * 6  # the next-epoch loss first ...
    for it in range(6):
        probe, main = calls[2 * it], calls[2 * it + 1]
        assert torch.equal(probe["syn"], main["syn"])  # ... on the images before this iteration's update
        e, start = r["history"][it]["expert"], starts[it]
        assert torch.equal(main["theta0"], trajs[e][start]) and torch.equal(main["target"], trajs[e][start + 1])
        cap = 1 if it < 3 else 2
        assert torch.equal(probe["theta0"], trajs[e][cap])  # the same expert, at epoch cap
        assert torch.equal(probe["target"], trajs[e][cap + 1])  # ... and its next epoch
    assert not torch.equal(calls[1]["syn"], calls[3]["syn"])  # (the images do change)
    # α: SGD with momentum 0.5, one momentum buffer per start epoch; the gradient is -1
    al = [a0]
    buf0 = 0.0
    for _ in range(3):  # iterations 0-2: α_0 at lr · cap = lr
        buf0 = 0.5 * buf0 + 1.0
        al[0] += lr * buf0
    al.append(al[0])  # the cap grows: α_1 starts as a copy of the last α, every α lr is now lr · 2
    buf1 = 1.0
    al[1] += 2 * lr * buf1  # iteration 3: α_1
    buf0 = 0.5 * buf0 + 1.0
    al[0] += 2 * lr * buf0  # iteration 4: α_0
    buf1 = 0.5 * buf1 + 1.0
    al[1] += 2 * lr * buf1  # iteration 5: α_1
    assert r["alpha"].tolist() == pytest.approx(al, rel=1e-5) and r["alpha_epochs_used"] == 2
    # the α each call used: the start epoch's (main), the last epoch's (probe)
    assert calls[7]["alpha"] == pytest.approx(r["history"][3]["alpha"] - 2 * lr, rel=1e-5)
    assert calls[6]["alpha"] == pytest.approx(calls[7]["alpha"], rel=1e-6)
    # iteration 4 starts at epoch 0 with the cap at 2: its probe still takes the last α (α_1, as
    # Guan's test_syn_lr = exp(log_syn_lr_list[-1])), its matching α_0
    assert calls[8]["alpha"] == pytest.approx(r["history"][3]["alpha"], rel=1e-5)
    assert calls[9]["alpha"] != pytest.approx(calls[8]["alpha"], rel=1e-3)


def test_stm_evaluation_runs_the_pieces_then_a_tail_at_a_tenth(monkeypatch, tiny_data):
    """Per-epoch α: max(N, (E/2) / pieces) epochs per piece, then E/2 epochs at the last α × 0.1."""
    got = {}

    class Stop(Exception):
        pass

    def fake_fit(net, loss, train, val, *, epochs, optimizer, scheduler, **kw):
        got["epochs"], got["optimizer"], got["scheduler"] = epochs, optimizer, scheduler
        raise Stop

    monkeypatch.setattr(train_module, "fit", fake_fit)

    def lrs(alpha, syn_steps, epochs, per_epoch=3):
        syn = {"images": torch.zeros(3, 3, 8, 8), "labels": torch.arange(3), "model_config": MC,
               "alpha": torch.tensor(alpha), "alpha_epochs_used": len(alpha), "config": {"syn_steps": syn_steps}}
        with pytest.raises(Stop):
            eval_module.evaluate_synthetic(syn, tiny_data, EvalConfig(n_nets=1, epochs=epochs), 0)
        p = torch.zeros(1, requires_grad=True)
        opt = got["optimizer"]([p])
        sched = got["scheduler"](opt, per_epoch, got["epochs"])
        out = []
        for _ in range(got["epochs"]):
            out.append(opt.param_groups[0]["lr"])
            for _ in range(per_epoch):
                opt.step()
                sched.step()
        return out

    a = [0.03, 0.02, 0.01]
    assert lrs(a, 4, 20) == pytest.approx([0.03] * 4 + [0.02] * 4 + [0.01] * 4 + [0.001] * 10)
    assert lrs(a, 50, 1000) == pytest.approx([0.03] * 166 + [0.02] * 166 + [0.01] * 166 + [0.001] * 500)
    assert lrs([0.05], 4, 20) == pytest.approx([0.05] * 10 + [0.005] * 10)  # one α: x 0.1 halfway


# --------------------------------------------------------------------------- log α


def _alpha_gradient(alpha=1e-4):
    """∂loss/∂α of a small matching problem at α (a target 20 SGD steps of lr 1e-3 away)."""
    from gzmorph.augment import BatchTransform
    from gzmorph.matching import matching_loss
    from gzmorph.models import build_convnet

    torch.manual_seed(0)
    net = build_convnet(3, 16, width=8)
    st, th = Student(net), flat_params(net)
    x2, y2 = torch.randn(30, 3, 16, 16), torch.arange(3).repeat(10)
    target = th.clone()
    for _ in range(20):
        target.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(st(target, x2), y2), target)
        target = (target - 1e-3 * g).detach()
    syn = torch.randn(3, 3, 16, 16)
    plan = [(torch.arange(3), None)] * 20
    loss, _, g_alpha = matching_loss(st, th, target, float(((th - target) ** 2).sum()), syn, torch.arange(3),
                                     torch.tensor(alpha), plan, BatchTransform([0.5] * 3, [0.25] * 3))
    return loss, float(g_alpha)


def test_paper_settings_need_log_alpha():
    """Guan et al.'s α0 1e-4 and α lr 0.01 are for learning log α: learned directly, one step of a
    typical gradient throws α far below zero; as log α it stays positive and near α0."""
    from gzmorph.distill import _Synthetic
    from gzmorph.distill_settings import distill_settings

    paper = distill_settings({"preset": "paper"})
    for method in ("mtt", "stm"):
        assert paper[method]["alpha_param"] == "log"
        assert (paper[method]["alpha0"], paper[method]["lr_alpha"]) == (1e-4, 0.01)
    assert distill_settings({})["mtt"]["alpha_param"] == "direct"

    loss, g_alpha = _alpha_gradient(1e-4)
    assert math.isfinite(loss) and g_alpha > 100  # the premise: a typical gradient at α = 1e-4
    images = torch.zeros(3, 3, 8, 8)
    g_img = torch.zeros_like(images)
    direct = _Synthetic(images.clone(), 1, DistillConfig(alpha0=1e-4, lr_alpha=0.01, alpha_param="direct"))
    why = direct.step(loss, g_img, torch.tensor(g_alpha), 0)
    assert why and "alpha" in why and direct.alpha_at(0) < -1e-2  # negative, by far
    log = _Synthetic(images.clone(), 1, DistillConfig(alpha0=1e-4, lr_alpha=0.01, alpha_param="log"))
    for _ in range(200):
        assert log.step(loss, g_img, torch.tensor(g_alpha), 0) is None
        assert 0 < log.alpha_at(0) < 1e-4 and math.isfinite(log.alpha_at(0))
    assert log.alpha_at(0) > 1e-6
    # the learned parameter is log α; what the run reports and evaluates with is α
    assert float(log.values()[0]) == pytest.approx(log.alpha_at(0))
    with pytest.raises(InputError, match="alpha_param"):
        DistillConfig.from_dict({"alpha_param": "exp"})


# --------------------------------------------------------------------------- balanced accuracy


def test_balanced_accuracy_in_the_evaluation_records(tiny_data):
    from gzmorph.distill_eval import balanced_accuracy, eval_record, evaluate_baseline

    logits = torch.tensor([[1.0, 0, 0]] * 8 + [[0, 1.0, 0], [1.0, 0, 0]])
    y = torch.tensor([0] * 8 + [1, 1])
    assert balanced_accuracy(logits, y) == pytest.approx((1.0 + 0.5) / 2)  # plain accuracy: 0.9
    ec = EvalConfig(n_nets=2, epochs=1)
    rec = evaluate_baseline("random", 1, tiny_data, MC, ec, 0)
    assert {"mean", "sd", "runs", "balanced_accuracy_mean", "balanced_accuracy_sd",
            "balanced_accuracy_runs"} <= set(rec)
    assert len(rec["balanced_accuracy_runs"]) == 2 and all(0 <= v <= 1 for v in rec["balanced_accuracy_runs"])
    syn = {"method": "mtt", "ipc": 1, "alpha": torch.tensor([0.01]), "image_size": 8}
    acc = {"mean": 0.5, "sd": 0.1, "runs": [0.4, 0.6], "balanced_accuracy_mean": 0.45,
           "balanced_accuracy_sd": 0.05, "balanced_accuracy_runs": [0.4, 0.5]}
    out = eval_record(syn, acc, {"random": rec}, 12, {"mean": 0.7, "runs": [0.7], "balanced_accuracy_mean": 0.6,
                                                      "balanced_accuracy_runs": [0.6]})
    assert (out["accuracy_mean"], out["balanced_accuracy_mean"], out["balanced_accuracy_sd"]) == (0.5, 0.45, 0.05)
    assert out["balanced_accuracy_runs"] == [0.4, 0.5]
    b = out["baselines"]["random"]
    assert (b["mean"], b["balanced_accuracy_mean"]) == (rec["mean"], rec["balanced_accuracy_mean"])
    assert out["experts_final_test_accuracy"]["balanced_accuracy_mean"] == 0.6


def test_alpha_param_is_checked_when_the_dag_is_built():
    from test_config_check import errors

    from gzmorph.config_check import _CHOICES
    from gzmorph.distill_settings import ALPHA_PARAMS

    assert _CHOICES["alpha_param"] == ALPHA_PARAMS
    assert errors({"distill": {"stm": {"alpha_param": "exp"}}}) == [
        "config distill.stm.alpha_param: 'exp' is not one of ['direct', 'log']"]
    assert errors({"distill": {"ipc_overrides": {1: {"alpha_param": "log"}}}}) == []


def test_matching_gradient_is_exact_with_dsa_single_mode():
    """The bounded-memory reverse sweep re-applies each step's DSA draw: the same gradient as autograd
    through the unrolled steps, whichever families the steps drew."""
    from gzmorph.augment import DSATransform
    from gzmorph.experts import step_generator
    from gzmorph.matching import matching_loss
    from gzmorph.models import build_convnet

    torch.manual_seed(0)
    net = build_convnet(3, 8, width=4).double()
    st, th = Student(net), flat_params(net).double()
    t = DSATransform([0.5] * 3, [0.25] * 3)
    syn, lab = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 0, 1, 1, 2, 2])
    plan = [(torch.arange(6), t.sample(6, step_generator(0, 0, k))) for k in range(12)]
    assert len({int(p["op"]) for _, p in plan}) >= 4
    plan = [(i, {"op": p["op"], "u": p["u"].double()}) for i, p in plan]
    target = th + 0.05 * torch.randn_like(th)
    a = torch.tensor(0.05, dtype=torch.float64)
    l0, gx0, ga0 = matching_loss(st, th, target, 1.3, syn, lab, a, plan, t, "unroll")
    l1, gx1, ga1 = matching_loss(st, th, target, 1.3, syn, lab, a, plan, t, "constant", leaf=2)
    assert l1 == pytest.approx(l0, rel=1e-9)
    assert float((gx1 - gx0).norm() / gx0.norm()) < 1e-8 and abs(float(ga1 - ga0)) / abs(float(ga0)) < 1e-8


def test_the_full_baseline_trains_by_the_same_protocol_and_stops_on_validation(tiny_data, monkeypatch, caplog):
    """full: the evaluation nets' optimiser and augmentation, stopping on the validation split with
    its best epoch kept; the random baseline trains its fixed epochs as a distilled set does."""
    import dataclasses

    import gzmorph.train as train_module
    from gzmorph import distill_eval
    from gzmorph.distill_settings import EvalConfig

    calls = []
    real_fit = train_module.fit

    def spy(model, loss_fn, train, val=None, **kw):
        calls.append({"val": val, **kw})
        return real_fit(model, loss_fn, train, val, **kw)

    monkeypatch.setattr(train_module, "fit", spy)
    data = dataclasses.replace(tiny_data, x_val=tiny_data.x_test[:6], y_val=tiny_data.y_test[:6])
    model = {"name": "convnet_d3", "num_classes": 3, "image_size": 8, "width": 4, "depth": 1, "norm": "instance"}
    cfg = EvalConfig(n_nets=1, epochs=2, full_epochs=30, full_patience=2, batch_size=12, full_batch_size=12)
    with caplog.at_level("INFO", logger="gzmorph.train"):
        full = distill_eval.evaluate_baseline("full", 1, data, model, cfg, seed=0)
    assert "epoch=1 train_loss=" in caplog.text  # the long nets log each epoch (nothing showed they ran)
    random = distill_eval.evaluate_baseline("random", 2, data, model, cfg, seed=0)
    f, r = calls
    assert f["val"][0] is data.x_val and f["patience"] == 2 and f["monitor"] == "val_accuracy"
    assert f["mode"] == "max" and f["restore_best"] is True
    assert r["val"] is None and r["restore_best"] is False and r["epochs"] == 2
    opt_f, opt_r = f["optimizer"]([torch.zeros(1, requires_grad=True)]), r["optimizer"]([torch.zeros(1)])
    assert opt_f.defaults["momentum"] == opt_r.defaults["momentum"] == cfg.momentum
    assert opt_f.defaults["weight_decay"] == opt_r.defaults["weight_decay"] == cfg.weight_decay
    assert {"mean", "balanced_accuracy_mean"} <= set(full) and {"mean", "balanced_accuracy_mean"} <= set(random)
    # whether the full-data net converged can be read from full.json: it stopped on validation, or hit the cap
    (net,) = full["training"]["nets"]
    assert full["training"]["epochs_cap"] == 30 and full["training"]["patience"] == 2
    assert net["stopped_early"] == (net["epochs_run"] < 30) and 1 <= net["best_epoch"] <= net["epochs_run"]
    assert "training" not in random


def test_class_weighted_experts_weigh_every_class_the_same():
    from gzmorph.experts import Data, expert_loss

    y = torch.tensor([0] * 6 + [1] * 2 + [2] * 1)
    data = Data(["a", "b", "c"], torch.zeros(9, 8, 8, 3, dtype=torch.uint8), y, None, None, [0.5] * 3, [0.2] * 3, 8, "x")
    assert expert_loss(data, False, "cpu") is F.cross_entropy
    loss = expert_loss(data, True, "cpu")
    logits = torch.randn(9, 3)
    per = F.cross_entropy(logits, y, reduction="none")
    w = torch.tensor([9 / 18, 9 / 6, 9 / 3])  # N / (K · count)
    assert torch.allclose(loss(logits, y), (w[y] * per).sum() / w[y].sum())
    assert torch.allclose(w[y].view(-1, 1).mul(torch.nn.functional.one_hot(y)).sum(0), torch.full((3,), 3.0))
