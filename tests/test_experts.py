"""ConvNet-D3, the functional student, the shared input pipeline and resumable expert training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gzmorph.experts as experts_module
import gzmorph.train as train_module
from gzmorph.augment import AugmentConfig, BatchTransform
from gzmorph.experts import Data, ExpertConfig, expected_meta, load_expert, segment_noise, step_generator, train_expert
from gzmorph.io import InputError
from gzmorph.models import build_convnet, list_models
from gzmorph.student import Student, flat_params


@pytest.fixture(scope="session")
def tiny_data():
    g = torch.Generator().manual_seed(0)
    n, classes = 48, ["round", "edge-on", "spiral"]
    y = torch.arange(n) % 3
    x = (torch.rand(n, 8, 8, 3, generator=g) * 80).to(torch.uint8)
    for c in range(3):  # a class-dependent bright patch: learnable
        x[y == c, 2 * c:2 * c + 3, :, c] = 250
    return Data(classes, x[:36], y[:36], x[36:], y[36:], [0.2] * 3, [0.3] * 3, 8, "tiny")


def test_convnet_registered_and_functional_student_matches():
    assert "convnet_d3" in list_models()
    for norm in ("instance", "layer", "none"):
        net = build_convnet(5, 16, width=6, norm=norm)
        st = Student(net)
        x = torch.randn(4, 3, 16, 16)
        assert torch.allclose(st(flat_params(net), x), net(x), atol=1e-6)
    with pytest.raises(InputError, match="divisible"):
        build_convnet(5, 12)
    with pytest.raises(InputError, match="norm"):
        build_convnet(5, 16, norm="batch")


def test_same_draw_same_transform_for_real_and_synthetic():
    t = BatchTransform([0.3] * 3, [0.2] * 3, AugmentConfig(), cutout=0.5)
    real = (torch.rand(4, 8, 8, 3) * 255).to(torch.uint8)
    syn = t.apply(real, None)  # the same images in normalised space (as synthetic images are stored)
    p = t.sample(4, step_generator(1, 2, 3))
    assert torch.allclose(t.apply(real, p), t.apply(syn, p), atol=1e-5)
    q = t.sample(4, step_generator(1, 2, 3))
    assert all(torch.equal(p[k], q[k]) for k in p)
    s = syn.clone().requires_grad_(True)
    t.apply(s, p).sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_expert_trajectory_and_resume(tmp_path, tiny_data, monkeypatch, caplog):
    cfg = ExpertConfig(epochs=3, lr=0.05, batch_size=16, width=4)
    full = train_expert(tiny_data, tmp_path / "a.pt", cfg, index=0)
    assert full["trajectory"].shape[0] == 4
    assert {"train_accuracy", "test_accuracy"} <= set(full["history"][0])
    # "killed" after 2 epochs (its checkpoint left behind), then resumed to 3: the same trajectory
    # as the uninterrupted run
    with monkeypatch.context() as m:
        m.setattr(train_module, "discard_checkpoints", lambda d: None)
        train_expert(tiny_data, tmp_path / "b.pt", ExpertConfig(**{**cfg.__dict__, "epochs": 2}), index=0,
                     work_dir=tmp_path / "b.work")
    with caplog.at_level("INFO", logger="gzmorph.train"):
        resumed = train_expert(tiny_data, tmp_path / "b.pt", cfg, index=0, work_dir=tmp_path / "b.work")
    assert "after epoch 2" in caplog.text
    assert torch.equal(resumed["trajectory"], full["trajectory"])  # bit for bit, as an uninterrupted run


def test_experts_train_with_plain_sgd_no_momentum_no_weight_decay(tmp_path, tiny_data, monkeypatch):
    """The references' experts: SGD at the expert lr, momentum 0, no weight decay (trajectory
    matching assumes it); nothing else pinned it, as full-batch tests stay deterministic with momentum."""
    seen = []
    real = train_module.fit

    def spy(model, loss_fn, train, val=None, **kw):
        opt = kw["optimizer"]([torch.zeros(1, requires_grad=True)])
        seen.append((type(opt), opt.defaults["lr"], opt.defaults["momentum"], opt.defaults["weight_decay"],
                     opt.defaults["nesterov"]))
        return real(model, loss_fn, train, val, **kw)

    monkeypatch.setattr(train_module, "fit", spy)
    train_expert(tiny_data, tmp_path / "e.pt", ExpertConfig(epochs=1, lr=0.05, batch_size=16, width=4))
    assert seen == [(torch.optim.SGD, 0.05, 0.0, 0.0, False)]


def test_expert_never_resumes_a_checkpoint_of_other_settings(tmp_path, tiny_data, caplog, monkeypatch):
    cfg = ExpertConfig(epochs=2, lr=0.05, batch_size=16, width=4)
    with monkeypatch.context() as m:  # a run with another lr, killed before it could clean up
        m.setattr(train_module, "discard_checkpoints", lambda d: None)
        train_expert(tiny_data, tmp_path / "b.pt", ExpertConfig(**{**cfg.__dict__, "lr": 0.2}), index=0,
                     work_dir=tmp_path / "b.work")
    assert (tmp_path / "b.work" / "last.pt").exists()
    fresh = train_expert(tiny_data, tmp_path / "a.pt", cfg, index=0)
    again = train_expert(tiny_data, tmp_path / "b.pt", cfg, index=0, work_dir=tmp_path / "b.work")
    assert "training from scratch" in caplog.text  # logged (gzmorph.experts), not printed
    assert torch.allclose(again["trajectory"], fresh["trajectory"], atol=1e-6)
    assert again["meta"]["lr"] == 0.05
    assert not (tmp_path / "b.work").exists()  # a finished expert leaves no checkpoint behind
    # a longer run (3 epochs) killed after its 3rd, then this 2-epoch run: it trained nothing and
    # failed on every rerun ("trajectory has 3 epochs, expected 2") until the folder was deleted
    with monkeypatch.context() as m:
        m.setattr(train_module, "discard_checkpoints", lambda d: None)
        m.setattr(experts_module, "save_bundle", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            train_expert(tiny_data, tmp_path / "c.pt", ExpertConfig(**{**cfg.__dict__, "epochs": 3}), index=0,
                         work_dir=tmp_path / "c.work")
    shorter = train_expert(tiny_data, tmp_path / "c.pt", cfg, index=0, work_dir=tmp_path / "c.work")
    assert "longer run than this one's 2 epochs" in caplog.text
    assert torch.allclose(shorter["trajectory"], fresh["trajectory"], atol=1e-6)


def test_load_expert_errors(tmp_path, tiny_data):
    cfg = ExpertConfig(epochs=1, lr=0.05, batch_size=16, width=4)
    train_expert(tiny_data, tmp_path / "e.pt", cfg)
    mc = cfg.model_config(3, 8)
    with pytest.raises(InputError, match="does not exist"):
        load_expert(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="has 1 epochs but 3"):
        load_expert(tmp_path / "e.pt", min_epochs=3)
    with pytest.raises(InputError, match="another set-up.*model_config"):
        load_expert(tmp_path / "e.pt", expect=expected_meta(tiny_data, {**mc, "width": 8}))
    other = Data(["a", "b"], *[getattr(tiny_data, k) for k in ("x_train", "y_train", "x_test", "y_test")],
                 tiny_data.mean, tiny_data.std, 8, "tiny")
    with pytest.raises(InputError, match="another set-up"):
        load_expert(tmp_path / "e.pt", expect=expected_meta(other, mc))
    (tmp_path / "junk.pt").write_text("x")
    with pytest.raises(InputError, match="cannot be read"):
        load_expert(tmp_path / "junk.pt")


def test_segment_noise_is_zero_for_full_batch_descent_and_grows_with_sgd_noise(tmp_path, tiny_data):
    """Full-batch gradient descent without augmentation is deterministic (noise ~0); mini-batches of
    4 with DSA augmentation redraw a different segment (noise well above 0); both stay within [0, 1]
    in practice and a segment past the trajectory's end is an error."""
    exact = ExpertConfig(epochs=3, lr=0.05, batch_size=36, width=4, augment=False)
    ex = train_expert(tiny_data, tmp_path / "gd.pt", exact, index=0)
    assert segment_noise(tiny_data, ex, exact, start=1, epochs=2) < 1e-6
    noisy = ExpertConfig(epochs=3, lr=0.05, batch_size=4, width=4)
    ex = train_expert(tiny_data, tmp_path / "sgd.pt", noisy, index=0)
    assert 0.01 < segment_noise(tiny_data, ex, noisy, start=0, epochs=2) < 1.5
    with pytest.raises(InputError, match="outside"):
        segment_noise(tiny_data, ex, noisy, start=2, epochs=2)


def test_load_data_shrinks_the_splits_a_batch_at_a_time(tmp_path):
    """The splits are read and resized batch by batch (never the whole curated-size split at once),
    and give exactly what resizing the whole split does."""
    from test_classify import write_curated

    from gzmorph.curate import read_catalogue
    from gzmorph.experts import load_data, read_resized, resize_uint8
    from gzmorph.imageset import ImageStore, read_images

    cat, imgs = write_curated(tmp_path, size=32)
    data = load_data(cat, imgs, image_size=8)
    df, _ = read_catalogue(cat)
    for split, x in (("train", data.x_train), ("test", data.x_test), ("val", data.x_val)):
        ids = df[df["split"] == split]["id"].to_numpy()
        assert torch.equal(x, torch.from_numpy(resize_uint8(read_images(imgs, ids)[1], 8))), split
    store, ids = ImageStore(imgs), df["id"].to_numpy()[::-1]
    read = []
    original = store.read_rows
    store.read_rows = lambda rows: read.append(len(rows)) or original(rows)
    small = read_resized(store, ids, 8, batch_size=7)
    assert max(read) == 7 and sum(read) == len(ids)
    assert np.array_equal(small, resize_uint8(read_images(imgs, ids)[1], 8))
    with pytest.raises(InputError, match="distill.image_size 64 is larger than the curated images"):
        load_data(cat, imgs, image_size=64)
