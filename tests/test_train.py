"""The shared training loop: learning, seeding, kill-and-resume, early stopping, metrics table."""

import csv
import logging

import numpy as np
import pytest
import torch
from torch import nn

import gzmorph.train as train_module

from gzmorph.augment import AugmentConfig, BatchTransform
from gzmorph.models import create_model
from gzmorph.train import cosine_schedule, fingerprint, fit

torch.set_num_threads(1)


def toy(n=96, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def acc(out, y):
    return {"accuracy": (out.argmax(1) == y).float().mean().item()}


def images(n=32, size=16, seed=0):
    """Tiny uint8 image classification: class 1 has a bright centre."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 60, (n, size, size, 3), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 2
    c = size // 4
    x[y == 1, c:-c, c:-c] += 120
    return x, y


def img_fit(model, tmp, **kw):
    x, y = images()
    opts = dict(epochs=3, batch_size=8, seed=3, transform=BatchTransform([0.2] * 3, [0.2] * 3, AugmentConfig()),
                optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), scheduler=cosine_schedule(2),
                sample_weights=torch.where(y == 1, 3.0, 1.0), checkpoint_dir=tmp, progress=False,
                metrics_fn=acc, device="cpu")
    opts.update(kw)
    return fit(model, nn.CrossEntropyLoss(), (x, y), images(16, seed=1), **opts)


def tiny_cnn():
    torch.manual_seed(0)
    return create_model("cnn", 2, 16, widths=(4, 8))


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_weighted_epochs_draw_by_weight_and_plain_ones_permute():
    from gzmorph.train import batch_order

    only_two = torch.tensor([0, 0, 1.0, 0, 0, 0], dtype=torch.double)
    assert [b.tolist() for b in batch_order(6, 3, torch.Generator().manual_seed(0), only_two)] == [[2, 2, 2]] * 2
    plain = batch_order(8, 3, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(plain).tolist()) == list(range(8)) and [len(b) for b in plain] == [3, 3, 2]
    assert [len(b) for b in batch_order(7, 3, torch.Generator().manual_seed(0))] == [3, 3]  # no batch of 1


def test_loss_decreases_on_learnable_problem():
    x, y = toy()
    model = mlp()
    res = fit(model, nn.CrossEntropyLoss(), (x, y), toy(48, seed=1), epochs=15, batch_size=16, metrics_fn=acc,
              optimizer=lambda p: torch.optim.Adam(p, lr=0.02), progress=False, device="cpu")
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < 0.6 * losses[0]
    assert res.history[-1]["val_accuracy"] > 0.85


def test_same_seed_same_weights_different_seed_differs(tmp_path):
    a, b, c = tiny_cnn(), tiny_cnn(), tiny_cnn()
    img_fit(a, tmp_path / "a", epochs=2)
    img_fit(b, tmp_path / "b", epochs=2)
    img_fit(c, tmp_path / "c", epochs=2, seed=4)
    assert same_weights(a, b)
    assert not same_weights(a, c)


class Kill(Exception):
    pass


def test_kill_and_resume_gives_the_uninterrupted_result(tmp_path):
    full = tiny_cnn()
    ref = img_fit(full, tmp_path / "full", restore_best=False)

    def kill(epoch, step, loss):
        if epoch == 2 and step == 1:
            raise Kill

    killed = tiny_cnn()
    with pytest.raises(Kill):
        img_fit(killed, tmp_path / "run", restore_best=False, on_step=kill)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["state"]["epoch"] == 1

    resumed = tiny_cnn()  # a fresh process: new model, same arguments
    res = img_fit(resumed, tmp_path / "run", restore_best=False)
    assert same_weights(full, resumed)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in res.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in ref.history]
    assert len(res.history) == 3


def test_finished_run_is_not_retrained(tmp_path):
    m = tiny_cnn()
    img_fit(m, tmp_path, epochs=2)
    again = tiny_cnn()
    calls = []
    img_fit(again, tmp_path, epochs=2, on_step=lambda *a: calls.append(a))
    assert calls == [] and same_weights(m, again)


def killed_run(tmp, meta, epoch=2):
    """A run killed during ``epoch``: its checkpoint of epoch - 1 stays behind."""
    def kill(e, step, loss):
        if e == epoch and step == 1:
            raise Kill
    with pytest.raises(Kill):
        img_fit(tiny_cnn(), tmp, restore_best=False, on_step=kill, meta=meta)


@pytest.mark.parametrize("change", ["classes", "fingerprint", "code_version", "precision"])
def test_a_checkpoint_of_another_run_is_set_aside(tmp_path, monkeypatch, caplog, change):
    """Another model, other data or settings (the fingerprint), other code, or epochs run in another
    precision (amp: bf16 on a GPU, then off): train afresh, say why."""
    meta = {"model": "cnn", "classes": ["a", "b"], "fingerprint": "f1"}
    with monkeypatch.context() as m:
        if change == "precision":  # bf16 autocast, as amp gives on a GPU (CPU autocast runs it here)
            m.setattr(train_module, "amp_dtype", lambda device, amp: torch.bfloat16)
        killed_run(tmp_path / "run", meta)
    if change == "code_version":
        monkeypatch.setattr(train_module, "package_hash", lambda: "edited")
    elif change != "precision":
        meta = {**meta, change: "other"}
    fresh = tiny_cnn()
    img_fit(fresh, tmp_path / "fresh", restore_best=False, meta=meta)
    with caplog.at_level(logging.INFO, logger="gzmorph.train"):
        again = tiny_cnn()
        img_fit(again, tmp_path / "run", restore_best=False, meta=meta)
    assert same_weights(again, fresh)
    assert f"checkpoint of another run ({change} differ); training from scratch" in caplog.text


def test_a_truncated_checkpoint_is_set_aside(tmp_path, caplog):
    killed_run(tmp_path, {"fingerprint": "f"})
    (tmp_path / "last.pt").write_bytes((tmp_path / "last.pt").read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="gzmorph.train"):
        res = img_fit(tiny_cnn(), tmp_path, meta={"fingerprint": "f"})
    assert len(res.history) == 3 and "unreadable checkpoint" in caplog.text


def test_fingerprint_depends_on_every_part():
    ids = np.arange(5)
    base = fingerprint(ids, {"lr": 0.1}, "pixels-a")
    assert base == fingerprint(ids.copy(), {"lr": 0.1}, "pixels-a")
    assert len({base, fingerprint(ids + 1, {"lr": 0.1}, "pixels-a"), fingerprint(ids, {"lr": 0.2}, "pixels-a"),
                fingerprint(ids, {"lr": 0.1}, "pixels-b")}) == 4


def test_early_stopping_stops_and_keeps_best(tmp_path):
    scores = iter([0.1, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    snapshots = {}
    x, y = toy()
    model = mlp()
    res = fit(model, nn.CrossEntropyLoss(), (x, y), toy(16, seed=1), epochs=8, batch_size=16,
              metrics_fn=lambda o, t: {"score": next(scores)}, monitor="val_score", mode="max", patience=2,
              checkpoint_dir=tmp_path, progress=False, device="cpu",
              on_epoch_end=lambda e, row, m: snapshots.__setitem__(e, {k: v.clone() for k, v in m.state_dict().items()}))
    assert res.stopped_early and len(res.history) == 4  # epochs 3 and 4 without improvement
    assert res.best_epoch == 2 and res.best_metric == 0.9
    assert all(torch.equal(v, snapshots[2][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, snapshots[4][k]) for k, v in model.state_dict().items())
    # a rerun of the finished run restores the best weights from best.pt
    again = mlp()
    fit(again, nn.CrossEntropyLoss(), (x, y), toy(16, seed=1), epochs=8, batch_size=16,
        metrics_fn=lambda o, t: {"score": 0.0}, monitor="val_score", mode="max", patience=2,
        checkpoint_dir=tmp_path, progress=False, device="cpu")
    assert same_weights(again, model)
    # a best.pt of another epoch than the run's best (left by an attempt killed before its last.pt) is
    # not restored as if it were the best: the last epoch's weights are kept, and the log says so
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    torch.save({**best, "model": snapshots[3], "epoch": 3}, tmp_path / "best.pt")
    third = mlp()
    res3 = fit(third, nn.CrossEntropyLoss(), (x, y), toy(16, seed=1), epochs=8, batch_size=16,
               metrics_fn=lambda o, t: {"score": 0.0}, monitor="val_score", mode="max", patience=2,
               checkpoint_dir=tmp_path, progress=False, device="cpu")
    assert all(torch.equal(v, snapshots[4][k]) for k, v in third.state_dict().items())
    # ... and the record names the epoch the weights are (it named epoch 2 for epoch 4's weights)
    assert (res3.best_epoch, res3.best_metric) == (4, 0.4)
    (tmp_path / "best.pt").unlink()  # a clean-up cut short between best.pt and last.pt: the same
    fourth = mlp()
    res4 = fit(fourth, nn.CrossEntropyLoss(), (x, y), toy(16, seed=1), epochs=8, batch_size=16,
               metrics_fn=lambda o, t: {"score": 0.0}, monitor="val_score", mode="max", patience=2,
               checkpoint_dir=tmp_path, progress=False, device="cpu")
    assert same_weights(fourth, third) and (res4.best_epoch, res4.best_metric) == (4, 0.4)


def test_a_tie_of_the_metric_with_a_lower_validation_loss_is_an_improvement():
    from gzmorph.train import improves

    row = lambda acc, loss: {"val_accuracy": acc, "val_loss": loss}  # noqa: E731
    assert improves(row(0.5, 9.0), "val_accuracy", -1, None, None)  # the first epoch
    assert improves(row(0.6, 9.0), "val_accuracy", -1, 0.5, 1.0)
    assert improves(row(0.5, 0.9), "val_accuracy", -1, 0.5, 1.0)  # tie, lower loss
    assert not improves(row(0.5, 1.0), "val_accuracy", -1, 0.5, 1.0)  # tie, same loss
    assert not improves(row(0.4, 0.1), "val_accuracy", -1, 0.5, 1.0)  # worse, whatever the loss
    assert not improves(row(0.5, 0.9), "val_accuracy", -1, 0.5, None)  # no loss recorded for the best
    assert not improves(row(0.5, 0.5), "val_loss", 1, 0.5, 0.5) and improves(row(0.5, 0.4), "val_loss", 1, 0.5, 0.5)
    assert not improves({"val_loss": 0.1}, "val_accuracy", -1, 0.5, 1.0)  # no metric: never


def test_a_model_still_learning_at_a_tied_accuracy_is_not_stopped():
    """A validation accuracy stuck at one value (a small split) while the loss falls: training goes on,
    and the epoch kept is the one of the lowest loss among the tied ones."""
    x, y = toy()
    model = mlp()
    res = fit(model, nn.CrossEntropyLoss(), (x, y), toy(16, seed=1), epochs=6, batch_size=16,
              optimizer=lambda p: torch.optim.SGD(p, lr=0.05), metrics_fn=lambda o, t: {"score": 0.5},
              monitor="val_score", mode="max", patience=2, progress=False, device="cpu")
    losses = [row["val_loss"] for row in res.history]
    assert losses[-1] < losses[0] and len(res.history) > 3  # the old rule stopped after epoch 3
    assert res.best_epoch == 1 + int(np.argmin(losses))


def test_metrics_table_written_next_to_checkpoint(tmp_path):
    img_fit(tiny_cnn(), tmp_path, epochs=2)
    with open(tmp_path / "metrics.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "seconds"} <= set(rows[0])
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "state", "meta"} <= set(ck)
    assert (tmp_path / "best.pt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
