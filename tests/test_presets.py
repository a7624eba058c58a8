"""The paper presets run: classify (HIWL: EfficientNet-B1 at 240 px), represent (Zoobot: EfficientNet-B0
at 224 px, greyscale) and distill (Guan et al.: learned log α).

Each preset goes through the real settings path (the config block -> its settings class -> the
options the workflow passes -> the training function) and is shrunk only in counts (galaxies,
steps, experts, epochs, batch): the architectures, image sizes, learning rates, momentum, weight
decay, schedules and α settings are the paper's.  EfficientNet-B1 at 240 px takes ~1 s per step of
4 images on 2 CPU cores, so each run is a few optimiser steps.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import gzmorph.train as train_module
from gzmorph.classify_settings import (
    CLASSIFY_PRESETS,
    ClassifySettings,
    curated_image_size,
)
from gzmorph.io import InputError, load_bundle
from gzmorph.represent_settings import (
    REPRESENT_PRESETS,
    RepresentSettings,
    representation_image_size,
    workflow_options,
)

torch.set_num_threads(1)  # as tests/test_classify.py: the machine's other jobs keep their cores
HIWL = ["round", "in-between", "cigar", "edge-on", "spiral"]


@pytest.fixture
def spy_fit(monkeypatch):
    """``gzmorph.train.fit`` as it is, recording per call the model, optimiser, scheduler, the lr
    after every step, every training input the model saw and the history."""
    calls = []
    real_fit = train_module.fit

    def fit(model, loss_fn, *args, optimizer, scheduler=None, **kw):
        seen = {"model": model, "lrs": [], "inputs": []}

        def make_opt(params):
            seen["opt"] = optimizer(params)
            return seen["opt"]

        def make_sched(opt, steps_per_epoch, epochs):
            seen["sched"], seen["total_steps"] = scheduler(opt, steps_per_epoch, epochs), steps_per_epoch * epochs
            return seen["sched"]

        def on_step(epoch, step, loss):
            seen["lrs"].append(seen["opt"].param_groups[0]["lr"])

        hook = model.register_forward_pre_hook(
            lambda m, inp: seen["inputs"].append(inp[0].detach().clone()) if m.training else None)
        try:
            seen["result"] = real_fit(model, loss_fn, *args, optimizer=make_opt,
                                      scheduler=make_sched if scheduler else None, on_step=on_step, **kw)
        finally:
            hook.remove()
        calls.append(seen)
        return seen["result"]

    monkeypatch.setattr(train_module, "fit", fit)
    return calls


def cosine_lrs(lr: float, total: int) -> list[float]:
    """The lr after each of ``total`` steps of a cosine schedule without warm-up."""
    return [lr * 0.5 * (1 + math.cos(math.pi * k / total)) for k in range(1, total + 1)]


def finite_history(history: list[dict]) -> None:
    assert history
    for row in history:
        for key in ("train_loss", "val_loss"):
            assert math.isfinite(row[key]), (key, row)


# --------------------------------------------------------------------------- the settings


def test_presets_are_deltas_and_explicit_keys_override_them():
    for presets, cls in ((CLASSIFY_PRESETS, ClassifySettings), (REPRESENT_PRESETS, RepresentSettings)):
        assert presets["default"] == {}  # the defaults are the settings class, stated once
        fields = set(cls.__dataclass_fields__)
        for name, delta in presets.items():
            assert set(delta) <= fields, name
            assert all(getattr(cls(), k) != v for k, v in delta.items()), f"{name} restates a default"
    paper = ClassifySettings.from_config({"preset": "paper", "lr": 0.01, "batch_size": 32})
    assert (paper.backbone, paper.image_size, paper.lr, paper.batch_size) == ("efficientnet_b1", 240, 0.01, 32)
    rep = RepresentSettings.from_config({"preset": "paper", "greyscale": False})
    assert (rep.backbone, rep.image_size, rep.greyscale) == ("efficientnet_b0", 224, False)
    with pytest.raises(InputError, match=r"classify.preset: 'zoobot' is not one of \['default', 'paper'\]"):
        ClassifySettings.from_config({"preset": "zoobot"})
    with pytest.raises(InputError, match="represent.image_size: 4 must be 0"):
        RepresentSettings.from_config({"image_size": 4})


def test_one_key_selects_a_preset_over_config_yaml():
    """Snakemake merges a user's config over config.yaml: the keys a preset sets are not in config.yaml
    (shown commented out), so ``preset: paper`` alone takes effect, and a key the user gives wins,
    also one given at its default value."""
    from test_config_check import BASE

    from gzmorph.settings import deep_merge

    def merged(over):
        return deep_merge(BASE, over)

    assert curated_image_size(BASE) == 64 and representation_image_size(BASE) == 64
    both = merged({"classify": {"preset": "paper"}, "represent": {"preset": "paper"}})
    assert curated_image_size(both) == 240 and representation_image_size(both) == 224
    cls = ClassifySettings.from_config(both["classify"])
    assert (cls.backbone, cls.lr, cls.batch_size, cls.nesterov, cls.warmup_epochs) == ("efficientnet_b1", 0.005, 16,
                                                                                        False, 0)
    rep, opts = workflow_options(both["represent"])
    assert (rep["backbone"], rep["greyscale"], opts["greyscale"], opts["image_size"]) == ("efficientnet_b0", True,
                                                                                         True, 224)
    mine = merged({"classify": {"preset": "paper", "warmup_epochs": 1, "image_size": 0}})
    assert ClassifySettings.from_config(mine["classify"]).warmup_epochs == 1 and curated_image_size(mine) == 64


def test_image_sizes_of_the_stages_and_the_dag_checks():
    from test_config_check import errors
    assert errors({"classify": {"preset": "paper"}, "represent": {"preset": "paper"},
                   "distill": {"preset": "paper"}}) == []
    assert errors({"classify": {"amp": False}, "represent": {"amp": "off"}}) == []  # YAML reads `off` as false
    assert ClassifySettings.from_config({"amp": False}).amp == "off"
    assert errors({"classify": {"preset": "hiwl"}})[0].startswith("config classify.preset: 'hiwl' is not one of")
    assert errors({"classify": {"image_size": 32}, "distill": {"preset": "paper"}}) == [
        ("config distill.image_size: 64 px is larger than the curated images (32 px: classify.image_size, else "
         "image_size); the experts only shrink them")]
    assert errors({"represent": {"amp": "fp8"}})[0].startswith("config represent.amp: 'fp8'")


# --------------------------------------------------------------------------- classify: HIWL


def test_classify_paper_preset_trains_efficientnet_b1_at_240px(tmp_path, spy_fit):
    from test_classify import write_curated

    from gzmorph import classify as C

    paper = ClassifySettings.from_config({"preset": "paper"})
    assert (paper.backbone, paper.image_size, paper.batch_size, paper.warmup_epochs) == ("efficientnet_b1", 240, 16, 0)
    assert (paper.lr, paper.momentum, paper.nesterov, paper.weight_decay) == (0.005, 0.9, False, 1e-4)
    assert paper.amp == "auto"  # mixed precision stays on by default on a GPU
    # shrunk in counts only: 1 epoch, batches of 4, 2 training galaxies per class
    block = {"preset": "paper", "epochs": 1, "batch_size": 4}
    cfg = ClassifySettings.from_config(block)
    params = {**cfg.identity(), "device": "cpu", "amp": cfg.amp, "seed": 0, "progress": False}  # as classify.smk
    cat, images = write_curated(tmp_path, HIWL, {c: (2, 1, 1) for c in HIWL}, size=240)
    summary = C.train(cat, images, tmp_path / "model.pt", kind="hiwl", **params)

    assert [c["model"].config["name"] for c in spy_fit] == ["efficientnet_b1"] * 2  # coarse, fine
    for call, n_train in zip(spy_fit, (10, 4)):
        assert call["model"].config["image_size"] == 240
        assert all(x.shape[-2:] == (240, 240) for x in call["inputs"])
        opt = call["opt"]
        assert type(opt) is torch.optim.SGD
        group = opt.param_groups[0]
        assert (group["initial_lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
            0.005, 0.9, False, 1e-4)
        total = call["total_steps"]
        assert total == -(-n_train // 4) and len(call["lrs"]) == total
        assert call["lrs"] == pytest.approx(cosine_lrs(0.005, total))  # cosine from the first step, no warm-up
        finite_history(call["result"].history)
    bundle = load_bundle(tmp_path / "model.pt", C.MODEL_FORMAT, "classifier")
    assert bundle["image_size"] == 240 and bundle["config"]["preset"] == "paper"
    assert [lv["model"] for lv in bundle["levels"]] == ["efficientnet_b1"] * 2
    assert all(torch.isfinite(v).all() for lv in bundle["levels"] for v in lv["state_dict"].values()
               if v.is_floating_point())
    assert summary["levels"][0]["epochs_run"] == 1
    # a curated store at another size is one error naming the key
    cat64, images64 = write_curated(tmp_path / "s64", HIWL, {c: (2, 1, 1) for c in HIWL}, size=16)
    with pytest.raises(InputError, match="images are 16 px but classify.image_size is 240"):
        C.train(cat64, images64, tmp_path / "m64.pt", kind="flat", **params)


# --------------------------------------------------------------------------- represent: Zoobot


def vote_catalogue(path, ids):
    from test_represent import kaggle_row

    rows = [kaggle_row({"Class1.1": 0.8, "Class1.2": 0.2, "Class2.2": 1.0, "Class3.2": 1.0, "Class4.2": 1.0,
                        "Class5.2": 1.0, "Class7.1": 1.0, "Class6.2": 1.0})] * len(ids)
    cat = pd.concat(rows, ignore_index=True)
    cat.insert(0, "id", ids)
    cat.to_parquet(path)
    return path


def test_represent_paper_preset_trains_efficientnet_b0_at_224px_on_greyscale(tmp_path, spy_fit):
    from gzmorph.imageset import write_images
    from gzmorph.represent import (
        MODEL_FORMAT,
        load_representation,
        train_representation,
    )

    rep, opts = workflow_options({"preset": "paper", "epochs": 1, "batch_size": 4}, seed=0)  # as represent.smk
    assert (rep["backbone"], rep["image_size"], rep["greyscale"]) == ("efficientnet_b0", 224, True)
    assert (opts["backbone"], opts["image_size"], opts["greyscale"], opts["amp"]) == ("efficientnet_b0", 224, True,
                                                                                      "auto")
    n = 8  # 7 train (batches of 4 and 3), 1 validation galaxy
    ids = np.arange(100, 100 + n)
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    colour[..., 0] //= 4  # channels that differ: greyscale must make them equal
    write_images(tmp_path / "images.parquet", ids, colour)
    vote_catalogue(tmp_path / "source.parquet", ids)
    train_representation(tmp_path / "images.parquet", tmp_path / "source.parquet", tmp_path / "model.pt",
                         **{**opts, "device": "cpu", "progress": False})

    (call,) = spy_fit
    assert call["model"].config["name"] == "efficientnet_b0" and call["model"].config["image_size"] == 224
    opt = call["opt"]
    assert type(opt) is torch.optim.AdamW
    group = opt.param_groups[0]
    assert (group["initial_lr"], group["weight_decay"]) == (RepresentSettings.lr, RepresentSettings.weight_decay)
    assert len(call["lrs"]) == call["total_steps"] == 2
    finite_history(call["result"].history)
    assert call["inputs"]
    for x in call["inputs"]:  # the model sees three equal channels: the grey image
        assert x.shape[1:] == (3, 224, 224)
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    # recorded in the model file (JSON header), so embedding and prediction apply it too
    bundle = load_bundle(tmp_path / "model.pt", MODEL_FORMAT, "representation")
    assert bundle["norm"]["greyscale"] is True and bundle["config"]["greyscale"] is True
    assert len(bundle["norm"]["mean"]) == len(bundle["norm"]["std"]) == 1  # the grey image's statistics
    grey = colour.astype(np.float64).mean(-1) / 255
    assert bundle["norm"]["mean"][0] == pytest.approx(grey.mean(), abs=0.02)
    model = load_representation(tmp_path / "model.pt", device="cpu")
    assert model.greyscale and model.transform.greyscale
    vec = model.embed(np.concatenate([colour[:1], colour[:1, :, :, ::-1]]))  # an image, its channels reversed
    assert np.isfinite(vec).all() and vec.shape == (2, 1280)
    np.testing.assert_allclose(vec[1], vec[0], atol=1e-5)  # the same grey image: the colours are not seen


def test_greyscale_transform_and_statistics():
    from gzmorph.augment import (
        AugmentConfig,
        BatchTransform,
        channel_stats,
        input_transform,
    )

    x = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8)
    mean, std = channel_stats(x, greyscale=True)
    g = x.double().mean(-1) / 255
    assert mean == pytest.approx([g.mean().item()]) and std == pytest.approx([g.std(unbiased=False).item()])
    t = input_transform({"mean": mean, "std": std, "greyscale": True}, AugmentConfig())
    out = t(x, torch.Generator().manual_seed(0), True)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 0], out[:, 2])
    assert torch.allclose(out.mean(), torch.tensor(0.0), atol=1.0)
    colour = BatchTransform([0.5] * 3, [0.2] * 3)(x)
    assert not torch.allclose(colour[:, 0], colour[:, 1])
    assert input_transform({"mean": [0.5] * 3, "std": [0.2] * 3}).greyscale is False


# --------------------------------------------------------------------------- distill: Guan et al.


def test_distill_paper_preset_learns_log_alpha_and_alpha_stays_positive(tmp_path):
    from gzmorph.augment import channel_stats
    from gzmorph.distill import DistillConfig, distill
    from gzmorph.distill_settings import distill_method_options, distill_settings
    from gzmorph.experts import Data, ExpertConfig, train_expert

    over = {"preset": "paper", "n_experts": 1, "ipc": [1], "expert": {"epochs": 3},
            "mtt": {"syn_steps": 2, "iterations": 2, "max_start_epoch": 1},
            "stm": {"syn_steps": 2, "iterations": 2}}
    s = distill_settings(over)  # the config block as distill.smk reads it
    assert (s["image_size"], s["width"], s["depth"], s["norm"]) == (64, 128, 3, "instance")
    assert (s["expert"]["lr"], s["expert"]["batch_size"]) == (0.001, 256)
    size, classes = s["image_size"], ["round", "edge-on", "spiral"]
    g = torch.Generator().manual_seed(0)
    y = torch.arange(12) % 3
    x = (torch.rand(12, size, size, 3, generator=g) * 80).to(torch.uint8)
    for c in range(3):
        x[y == c, 8 * c:8 * c + 16, :, c] = 250
    mean, std = channel_stats(x[:9])
    data = Data(classes, x[:9], y[:9], x[9:], y[9:], mean, std, size, "presets")
    ecfg = ExpertConfig(**s["expert"], width=s["width"], depth=s["depth"], norm=s["norm"], augment=s["augment"],
                        cutout=s["cutout"], seed=0, device="cpu")  # as train_expert.py
    expert = tmp_path / "expert_000.pt"
    train_expert(data, expert, ecfg, index=0)
    model_config = {"name": "convnet_d3", "num_classes": 3, "image_size": size,
                    **{k: s[k] for k in ("width", "depth", "norm")}}
    for method in ("mtt", "stm"):
        opts = distill_method_options(s, method, 1)
        assert (opts["alpha_param"], opts["alpha0"], opts["lr_alpha"], opts["lr_img"]) == ("log", 1e-4, 0.01, 1e4)
        cfg = DistillConfig.from_dict({**opts, "method": method, "ipc": 1, "memory": s["memory"],
                                       "leaf": s["leaf"], "seed": 0, "device": "cpu"})  # as distill.py
        r = distill(data, [expert], cfg, model_config, augment=s["augment"], cutout=s["cutout"])
        assert len(r["history"]) == 2, (method, r["events"])  # no iteration rolled back
        for row in r["history"]:
            assert math.isfinite(row["loss"]) and math.isfinite(row["alpha"]) and row["alpha"] > 0, (method, row)
        assert torch.isfinite(r["alpha"]).all() and (r["alpha"] > 0).all()
        assert torch.isfinite(r["images"]).all()


def test_greyscale_reaches_every_consumer_of_a_model_files_norm_record():
    """A greyscale representation's ``norm`` (``greyscale: true``) is applied wherever a model file's
    normalisation is: embedding, fine-tuning's frozen features, and a classifier fine-tuned from it."""
    from gzmorph.classify import TrainedClassifier
    from gzmorph.finetune import _features
    from gzmorph.models import create_model
    from gzmorph.represent import Representation

    norm, CPU = {"mean": [0.4], "std": [0.2], "greyscale": True}, torch.device("cpu")
    torch.manual_seed(0)
    model = create_model("cnn", 37, 16, widths=[4, 8])
    rep = Representation({"model_config": model.config, "state_dict": model.state_dict(), "image_size": 16,
                          "norm": norm}, device="cpu")
    images = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    images[..., 2] //= 3
    swapped = images[..., ::-1].copy()
    np.testing.assert_allclose(rep.embed(swapped), rep.embed(images), atol=1e-5)
    np.testing.assert_allclose(_features(rep.model, norm, swapped, CPU), _features(rep.model, norm, images, CPU),
                               atol=1e-5)
    head = create_model("cnn", 2, 16, widths=[4, 8])
    clf = TrainedClassifier({"kind": "flat", "classes": ["a", "b"], "image_size": 16, "norm": norm,
                             "levels": [{"name": "flat", "classes": ["a", "b"], "model_config": head.config,
                                         "state_dict": head.state_dict()}]}, device="cpu")
    np.testing.assert_allclose(clf.predict_proba(swapped)[0], clf.predict_proba(images)[0], atol=1e-5)
    colour = {"mean": [0.4] * 3, "std": [0.2] * 3}
    assert not np.allclose(_features(rep.model, colour, swapped, CPU), _features(rep.model, colour, images, CPU))
