"""HIWL and flat classifiers: planning, probability composition, the model file, errors, predict/evaluate, CLI."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gzmorph import classify as C
from gzmorph.apply import classify_table
from gzmorph.imageset import read_images, write_images
from gzmorph.io import InputError, load_bundle
from gzmorph.report.classify import report_section

torch.set_num_threads(1)
HIWL = C.HIWL_CLASSES
TINY = dict(epochs=2, batch_size=8, lr=0.05, patience=None, model_kwargs={"widths": [4, 8]}, progress=False,
            device="cpu")


def blob_images(labels, size=16, seed=0):
    """Class k: an ellipse with axis ratio depending on k, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((len(labels), size, size, 3), np.uint8)
    for i, k in enumerate(labels):
        q = 1.0 - 0.18 * k
        r = np.sqrt(xx ** 2 + (yy / q) ** 2)
        img = 200 * np.exp(-r / 3)[..., None] + rng.normal(0, 10, (size, size, 3))
        out[i] = np.clip(img, 0, 255)
    return out


def write_curated(d, classes=HIWL, counts=None, size=16, cut="hiwl5", label_names=None):
    """A curated catalogue + image table like the curation stage writes."""
    counts = counts or {c: (8, 2, 2) for c in classes}
    counts = {c: counts.get(c, (8, 2, 2)) for c in classes}
    rows = []
    for k, c in enumerate(classes):
        for split, n in zip(("train", "val", "test"), counts[c]):
            rows += [{"label": k, "label_name": c, "split": split}] * n
    df = pd.DataFrame(rows)
    df.insert(0, "id", np.arange(1000, 1000 + len(df), dtype=np.int64))
    df["confidence"] = 0.9
    d.mkdir(parents=True, exist_ok=True)
    t = pa.Table.from_pandas(df, preserve_index=False)
    t = t.replace_schema_metadata({**t.schema.metadata, b"gzmorph.classes": json.dumps(classes).encode(),
                                   b"gzmorph.cut": json.dumps(cut).encode()})
    pq.write_table(t, d / "catalogue.parquet")
    write_images(d / "images.parquet", df["id"], blob_images(df["label"], size), {"crop_fraction": 0.5})
    return d / "catalogue.parquet", d / "images.parquet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("curated")
    cat, imgs = write_curated(d, counts={"cigar": (2, 1, 2), "edge-on": (10, 2, 2)})  # cigar rare: 2 < 0.25 * 10
    out = {}
    for kind in ("hiwl", "flat"):
        k = d / kind
        summary = C.train(cat, imgs, k / "model.pt", kind=kind, checkpoint_dir=k / "checkpoints",
                          metrics_path=k / "training.tsv", **TINY, fine_threshold="val",
                          tta=8 if kind == "hiwl" else 1)
        out[kind] = (k / "model.pt", summary)
    return cat, imgs, out


def test_accuracy_metrics_by_hand():
    """Balanced accuracy (the mean recall of the classes present) picks the weighted levels' best
    epoch; on an imbalanced case it differs from plain accuracy."""
    y = torch.tensor([0, 0, 0, 0, 1, 2])
    out = torch.eye(3)[[0, 0, 0, 0, 0, 2]]  # the rare class 1 missed
    m = C.accuracy_metrics(out, y)
    assert m["accuracy"] == pytest.approx(5 / 6) and m["balanced_accuracy"] == pytest.approx((1 + 0 + 1) / 3)
    m = C.accuracy_metrics(torch.eye(3)[[1, 0, 0, 0, 1, 2]], y)
    assert m["accuracy"] == pytest.approx(5 / 6) and m["balanced_accuracy"] == pytest.approx((0.75 + 1 + 1) / 3)


def test_compose_hiwl_on_a_hand_made_case():
    classes = ["round", "in-between", "cigar", "edge-on", "spiral"]
    # coarse order: in-between, cigar|edge-on, round, spiral
    p4 = np.array([[0.1, 0.6, 0.2, 0.1],     # merged -> fine decides: cigar
                   [0.1, 0.4, 0.35, 0.15],   # merged argmax although edge-on prob 0.2 < round 0.35
                   [0.7, 0.1, 0.1, 0.1]])    # in-between
    p2 = np.array([[0.8, 0.2], [0.5 - 1e-3, 0.5 + 1e-3], [0.9, 0.1]])
    probs, pred = C.compose_hiwl(p4, p2, classes)
    np.testing.assert_allclose(probs[0], [0.2, 0.1, 0.48, 0.12, 0.1])
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert [classes[i] for i in pred] == ["cigar", "edge-on", "in-between"]
    # class order of the catalogue is respected
    probs2, pred2 = C.compose_hiwl(p4, p2, classes[::-1])
    np.testing.assert_allclose(probs2, probs[:, ::-1])
    assert [classes[::-1][i] for i in pred2] == ["cigar", "edge-on", "in-between"]


def test_compose_hiwl_threshold_moves_the_fine_decision_and_keeps_probabilities_consistent():
    classes = ["round", "in-between", "cigar", "edge-on", "spiral"]
    p4 = np.array([[0.1, 0.8, 0.05, 0.05]] * 3)  # all routed to the fine level
    p2 = np.array([[0.6, 0.4], [0.75, 0.25], [0.2, 0.8]])
    names = lambda pred: [classes[i] for i in pred]  # noqa: E731
    assert names(C.compose_hiwl(p4, p2, classes)[1]) == ["cigar", "cigar", "edge-on"]
    probs, pred = C.compose_hiwl(p4, p2, classes, threshold=0.7)
    assert names(pred) == ["edge-on", "cigar", "edge-on"]  # cigar only where P2(cigar) >= 0.7
    np.testing.assert_allclose(probs.sum(1), 1.0)
    # the log-odds of cigar move by -logit(0.7); at P2(cigar) = threshold the two fine classes tie
    odds = probs[:, 2] / probs[:, 3]
    np.testing.assert_allclose(odds, (p2[:, 0] / p2[:, 1]) * (0.3 / 0.7))
    tie = C.compose_hiwl(p4[:1], np.array([[0.7, 0.3]]), classes, threshold=0.7)
    np.testing.assert_allclose(tie[0][0, 2], tie[0][0, 3])
    assert names(tie[1]) == ["cigar"]
    np.testing.assert_allclose(C.compose_hiwl(p4, p2, classes, 0.5)[0], C.compose_hiwl(p4, p2, classes)[0])


def test_choose_fine_threshold_picks_the_most_accurate_hierarchy_on_validation():
    classes = ["round", "in-between", "cigar", "edge-on", "spiral"]
    # 2 cigars and 8 edge-ons, all routed to the fine level; a balanced-sampled fine level gives the
    # edge-ons P2(cigar) up to 0.6, the cigars 0.8 and 0.9: argmax calls 3 edge-ons cigar
    p_cigar = np.array([0.8, 0.9, 0.55, 0.6, 0.52, 0.3, 0.2, 0.1, 0.4, 0.45])
    labels = np.array([2, 2] + [3] * 8)
    p4 = np.tile([0.05, 0.85, 0.05, 0.05], (10, 1))
    p2 = np.stack([p_cigar, 1 - p_cigar], 1)
    t, curve = C.choose_fine_threshold(p4, p2, labels, classes)
    assert curve["0.50"] == pytest.approx(0.7) and max(curve.values()) == 1.0
    assert t == 0.61  # 0.61 to 0.80 are all perfect: the one nearest the argmax
    assert len(curve) == 99 and set(curve) >= {"0.01", "0.99"}
    # nothing to gain: the argmax stays
    assert C.choose_fine_threshold(p4, p2, np.where(p_cigar >= 0.5, 2, 3), classes)[0] == 0.5


def test_fine_threshold_setting():
    assert C.TrainConfig().fine_threshold == 0.5 and C.TrainConfig().fine_from_coarse
    assert C.TrainConfig.from_params({"fine_threshold": 0.3}).fine_threshold == 0.3
    for bad in ("auto", 0, 1.0, True):
        with pytest.raises(InputError, match="fine_threshold"):
            C.TrainConfig.from_params({"fine_threshold": bad})


def test_dihedral_views_are_the_eight_symmetries_of_the_square():
    from gzmorph.augment import dihedral

    x = torch.arange(9.0).view(1, 1, 3, 3)  # no symmetry of its own: 8 distinct views
    views = [dihedral(x, v) for v in range(8)]
    assert torch.equal(views[0], x)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert torch.equal(views[1], torch.rot90(x, 1, dims=(-2, -1))) and torch.equal(views[4], x.flip(-1))
    # closed under a quarter turn and a mirror: the set of views of a turned image is the same set
    turned = {tuple(dihedral(torch.rot90(x, 1, dims=(-2, -1)), v).flatten().tolist()) for v in range(8)}
    assert turned == {tuple(v.flatten().tolist()) for v in views}


def test_view_average_is_invariant_to_the_views_it_averages():
    from gzmorph.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn", 4, 16, widths=[4, 8]).eval()
    x = torch.randn(3, 3, 16, 16)
    turn, mirror = torch.rot90(x, 1, dims=(-2, -1)), x.flip(-1)
    probs = lambda m, y: torch.softmax(m(y), 1)  # noqa: E731
    with torch.no_grad():
        assert torch.equal(C.ViewAverage(model, 1)(x), model(x))
        assert not torch.allclose(probs(model, x), probs(model, turn), atol=1e-4)  # the model alone is not
        eight, four = C.ViewAverage(model, 8), C.ViewAverage(model, 4)
        for y in (turn, mirror, torch.rot90(mirror, 3, dims=(-2, -1))):
            torch.testing.assert_close(probs(eight, y), probs(eight, x), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(probs(four, turn), probs(four, x), atol=1e-6, rtol=1e-5)
        # the average of the views' probabilities, as probabilities
        mean = sum(probs(model, torch.rot90(x, k, dims=(-2, -1))) for k in range(4)) / 4
        torch.testing.assert_close(probs(four, x), mean, atol=1e-6, rtol=1e-5)
    for bad in (3, 8.0):
        with pytest.raises(InputError, match="views"):
            C.ViewAverage(model, bad)


def test_tta_setting():
    assert C.TrainConfig().tta == 1 and C.TrainConfig.from_params({"tta": 8}).tta == 8
    for bad in (2, 0, True, "8", 8.0):
        with pytest.raises(InputError, match="tta"):
            C.TrainConfig.from_params({"tta": bad})


def test_levels_smoothing_and_weighted_sampling_configured():
    cfg = C.TrainConfig()
    labels = np.repeat(np.arange(5), [80, 80, 5, 40, 80])  # cigar rare
    coarse, fine = C.plan_levels("hiwl", HIWL, labels, cfg)
    assert coarse.classes == C.COARSE_CLASSES and fine.classes == ["cigar", "edge-on"]
    assert coarse.label_smoothing == fine.label_smoothing == 0.05
    assert fine.weighted and not coarse.weighted
    assert list(coarse.target) == [2, 0, 1, 1, 3] and list(fine.target) == [-1, -1, 0, 1, -1]
    (flat,) = C.plan_levels("flat", HIWL, labels, cfg)
    assert flat.label_smoothing == 0.0 and not flat.weighted
    never = C.plan_levels("hiwl", HIWL, labels, C.TrainConfig(weighted_sampling="never", label_smoothing=0.1))
    assert not any(lv.weighted for lv in never) and never[0].label_smoothing == 0.1
    w = C.sample_weights(np.array([0, 0, 0, 1]), 2)
    assert w.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])


def test_each_level_trains_with_its_smoothing_sampling_and_stopping_metric(tmp_path, monkeypatch):
    """What reaches the training loop, not only what the model file records: HIWL's levels train with
    label smoothing 0.05; the fine level, whose cigars are rare (2 against 10 edge-on), draws by
    1/class count and keeps its best balanced accuracy; the flat model has neither."""
    import gzmorph.train as train_module

    cat, imgs = write_curated(tmp_path, counts={"cigar": (2, 1, 2), "edge-on": (10, 2, 2)})
    calls, real_fit = [], train_module.fit

    def spy(model, loss, train, val=None, **kw):
        weights = kw.get("sample_weights")
        calls.append((loss.label_smoothing, None if weights is None else sorted(set(weights.tolist())),
                      kw["monitor"], np.bincount(train[1].numpy()).tolist()))
        return real_fit(model, loss, train, val, **{**kw, "epochs": 1})

    monkeypatch.setattr(train_module, "fit", spy)
    for kind in ("hiwl", "flat"):
        C.train(cat, imgs, tmp_path / kind / "model.pt", kind=kind, **TINY)
    coarse, fine, flat = calls
    assert coarse[:3] == (0.05, None, "val_accuracy")
    assert fine[0] == 0.05 and fine[2] == "val_balanced_accuracy"
    assert sorted(fine[3]) == [2, 10] and fine[1] == [1 / 10, 1 / 2]
    assert flat[:3] == (0.0, None, "val_accuracy")


def test_trained_model_file_and_training_outputs(trained):
    cat, imgs, out = trained
    path, summary = out["hiwl"]
    bundle = read_model_file(path)
    assert bundle["format"] == C.MODEL_FORMAT and bundle["cut"] == "hiwl5" and bundle["classes"] == HIWL
    assert bundle["image_size"] == 16 and len(bundle["norm"]["mean"]) == 3
    assert bundle["preprocess"] == {"crop_fraction": 0.5}
    coarse, fine = bundle["levels"]
    assert (coarse["name"], fine["name"]) == ("coarse", "fine")
    assert fine["weighted_sampling"] and fine["label_smoothing"] == 0.05 and fine["n_train"] == 2 + 10
    # the fine threshold was chosen on the validation split (3 galaxies of the merged class) and kept
    assert bundle["fine_threshold"] in C.FINE_THRESHOLDS and bundle["fine_threshold_val"]["n"] == 9
    best = max(bundle["fine_threshold_val"]["accuracy"].values())
    assert bundle["fine_threshold_val"]["accuracy"][f"{bundle['fine_threshold']:.2f}"] == best
    assert C.load_model(path).fine_threshold == bundle["fine_threshold"]
    # the model file keeps its test-time views (8 for hiwl here; flat has the default, 1)
    assert bundle["tta"] == C.load_model(path).tta == 8 and read_model_file(out["flat"][0])["tta"] == 1
    assert "fine_threshold" not in read_model_file(out["flat"][0])
    # the fine level started from the coarse level's backbone; the coarse level from random weights
    assert (coarse["init"], fine["init"]) == ("random", "coarse")
    assert out["flat"][1]["levels"][0]["label_smoothing"] == 0.0
    tsv = pd.read_csv(path.parent / "training.tsv", sep="\t")
    assert list(tsv["level"].unique()) == ["coarse", "fine"] and {"epoch", "train_loss", "val_accuracy"} <= set(tsv)
    assert not (path.parent / "checkpoints").exists()  # a finished run keeps no checkpoint


def test_copy_backbone_copies_all_but_the_head():
    from gzmorph.models import create_model

    torch.manual_seed(0)
    donor, model = (create_model("cnn", n, 16, widths=[4, 8]) for n in (4, 2))
    h = C.copy_backbone(donor, model)
    for k, v in model.state_dict().items():
        same = torch.equal(v, donor.state_dict()[k]) if not k.startswith("head.") else None
        assert same is None or same, k
    assert model.head[-1].weight.shape[0] == 2 and len(h) == 16
    assert C.copy_backbone(donor, create_model("cnn", 2, 16, widths=[4, 8])) == h  # the same weights, the same hash
    with pytest.raises(InputError, match="backbone differs"):
        C.copy_backbone(donor, create_model("cnn", 2, 16, widths=[4, 16]))


@pytest.mark.parametrize("kind", ["hiwl", "flat"])
def test_predict_and_evaluate(trained, kind):
    cat, imgs, out = trained
    pred = C.predict(out[kind][0], cat, imgs)
    assert list(pred.columns[:3]) == ["id", "label", "label_name"]
    assert {"pred_label", "pred_name", "correct", *(f"p_{c}" for c in HIWL)} <= set(pred.columns)
    assert len(pred) == 10 and pred["label_name"].value_counts()["cigar"] == 2
    np.testing.assert_allclose(pred[[f"p_{c}" for c in HIWL]].sum(axis=1), 1.0, atol=1e-5)
    m = C.evaluate(out[kind][0], cat, imgs)
    assert m["tta"] == (8 if kind == "hiwl" else 1)
    if kind == "hiwl":  # 8 views: a galaxy turned by 90° and mirrored gets the same probabilities
        x = C.load_images(imgs, pred["id"])
        turned = np.ascontiguousarray(np.rot90(x, 1, axes=(1, 2))[:, :, ::-1])
        p = [f"p_{c}" for c in HIWL]
        np.testing.assert_allclose(C.predict_images(out[kind][0], turned, pred["id"])[p], pred[p], atol=1e-5)
        one_view = C.load_model(out[kind][0])
        one_view.tta = 1  # the same weights seen once: the turn changes what they say
        assert not np.allclose(C.predict_images(one_view, turned)[p], C.predict_images(one_view, x)[p], atol=1e-4)
    assert {"accuracy", "per_class", "confusion", "classes", "n_test", "macro_f1"} <= set(m)
    assert m["classes"] == HIWL and m["n_test"] == 10
    assert np.array(m["confusion"]).sum() == 10
    assert np.array(m["confusion"]).sum(1).tolist() == [m["per_class"][c]["support"] for c in HIWL]
    assert m["accuracy"] == pytest.approx(pred["correct"].mean())
    assert set(m["per_class"]["cigar"]) == {"precision", "recall", "f1", "support"}


def test_metrics_from_predictions_by_hand():
    pred = pd.DataFrame({"label": [0, 0, 1, 1], "pred_label": [0, 1, 1, 1]})
    m = C.metrics_from_predictions(pred, ["a", "b"])
    assert m["accuracy"] == 0.75 and m["confusion"] == [[1, 1], [0, 2]]
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}


def test_hiwl_needs_the_hiwl5_classes(tmp_path):
    cat, imgs = write_curated(tmp_path, classes=["smooth", "disk"], cut="two")
    with pytest.raises(InputError, match="hiwl.*use 'flat'"):
        C.train(cat, imgs, tmp_path / "m.pt", kind="hiwl", **TINY)
    assert not (tmp_path / "m.pt").exists()


def test_too_few_examples_names_the_class(tmp_path):
    cat, imgs = write_curated(tmp_path, counts={"cigar": (1, 1, 1), "spiral": (5, 0, 2)})
    with pytest.raises(InputError, match=r"'cigar' \(train 1, val 1, test 1\).*'spiral' \(train 5, val 0"):
        C.train(cat, imgs, tmp_path / "m.pt", kind="flat", **TINY)
    assert not (tmp_path / "m.pt").exists() and not list(tmp_path.glob("*.tmp"))


def test_wrong_image_size_is_a_clear_error(trained, tmp_path):
    cat, _, out = trained
    _, big = write_curated(tmp_path, counts={"cigar": (3, 1, 2)}, size=24)
    with pytest.raises(InputError, match="24×24 px but the model expects 16×16"):
        C.evaluate(out["flat"][0], cat, big)
    clf = C.load_model(out["flat"][0])
    with pytest.raises(InputError, match="expects 16×16"):
        clf.predict_proba(np.zeros((1, 32, 32, 3), np.uint8))


def test_labels_the_model_does_not_know(trained, tmp_path):
    _, _, out = trained
    cat, imgs = write_curated(tmp_path, classes=["round", "merger", "spiral"], cut="other")
    with pytest.raises(InputError, match=r"labels \['merger'\] are not classes of model"):
        C.evaluate(out["flat"][0], cat, imgs)


def test_model_file_errors(trained, tmp_path):
    _, _, out = trained
    checkpoint = tmp_path / "last.pt"  # what gzmorph.train.fit writes during training
    torch.save({"model": {}, "optimizer": {}, "state": {"epoch": 1}, "meta": {}}, checkpoint)
    with pytest.raises(InputError, match="not a gzmorph classifier model file.*training checkpoint"):
        C.load_model(checkpoint)
    with pytest.raises(InputError, match="model file not found"):
        C.load_model(tmp_path / "nope.pt")
    with pytest.raises(InputError, match="differ from the expected"):
        C.load_model(out["flat"][0], expect_classes=["round", "spiral"])
    bundle = read_model_file(out["flat"][0])
    bundle["levels"][0]["model_config"]["num_classes"] = 3  # weights of a 5-way head, a 3-way model
    C.save_model(bundle, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="do not fit model 'cnn'"):
        C.load_model(tmp_path / "bad.pt")
    bundle = read_model_file(out["flat"][0]) | {"tta": 5}
    C.save_model(bundle, tmp_path / "views.pt")
    with pytest.raises(InputError, match="views.pt: tta 5 is not one of 1, 4, 8"):
        C.load_model(tmp_path / "views.pt")


def read_model_file(path):
    return load_bundle(path, C.MODEL_FORMAT, "classifier model file")


def level_weights(path):
    return read_model_file(path)["levels"][0]["state_dict"]


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_finished_training_leaves_no_checkpoint(trained):
    _, _, out = trained
    for kind in ("hiwl", "flat"):
        assert not (out[kind][0].parent / "checkpoints").exists(), kind


def test_rerun_after_an_epochs_change_trains_afresh(trained, tmp_path):
    """A changed setting never meets a checkpoint that blocks it or that it resumes."""
    cat, imgs, _ = trained
    ck = tmp_path / "checkpoints"
    C.train(cat, imgs, tmp_path / "two.pt", kind="flat", checkpoint_dir=ck, **TINY)
    C.train(cat, imgs, tmp_path / "three.pt", kind="flat", checkpoint_dir=ck, **{**TINY, "epochs": 3})
    C.train(cat, imgs, tmp_path / "fresh.pt", kind="flat", checkpoint_dir=tmp_path / "fresh", **{**TINY, "epochs": 3})
    assert same_state(level_weights(tmp_path / "three.pt"), level_weights(tmp_path / "fresh.pt"))


def test_new_pixels_of_the_same_galaxies_train_a_new_model(trained, tmp_path):
    """Changing crop_fraction (or image_size) changes only the pixels: the model must follow them."""
    cat, imgs, _ = trained
    ids, _ = read_images(imgs)
    labels = pd.read_parquet(cat).set_index("id").loc[ids, "label"].to_numpy()
    other = tmp_path / "images-crop09.parquet"
    write_images(other, ids, blob_images(labels, seed=7), {"crop_fraction": 0.9})
    ck = tmp_path / "checkpoints"
    C.train(cat, imgs, tmp_path / "a.pt", kind="flat", checkpoint_dir=ck, **TINY)
    C.train(cat, other, tmp_path / "b.pt", kind="flat", checkpoint_dir=ck, **TINY)
    C.train(cat, other, tmp_path / "fresh.pt", kind="flat", checkpoint_dir=tmp_path / "fresh", **TINY)
    assert same_state(level_weights(tmp_path / "b.pt"), level_weights(tmp_path / "fresh.pt"))
    assert not same_state(level_weights(tmp_path / "a.pt"), level_weights(tmp_path / "b.pt"))


def test_cli_classifies_a_folder_of_jpegs(trained, tmp_path):
    from PIL import Image

    from gzmorph.cli import main

    _, _, out = trained
    folder = tmp_path / "mine"
    folder.mkdir()
    big = blob_images([0, 2, 3], size=32, seed=3)
    for name, img in zip(["587", "12345", "my galaxy"], big):
        Image.fromarray(np.pad(img, ((16, 16), (16, 16), (0, 0)))).save(folder / f"{name}.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    dest = tmp_path / "pred.parquet"
    assert main(["classify", str(out["hiwl"][0]), str(folder), "-o", str(dest), "--device", "cpu"]) == 0
    pred = pd.read_parquet(dest)
    assert sorted(pred["id"]) == sorted(["12345", "587", "my galaxy"])  # the file names' stems, all strings
    assert {"path", "pred_name", *(f"p_{c}" for c in HIWL)} <= set(pred.columns)
    assert set(pred["pred_name"]) <= set(HIWL)
    # numeric names only -> int64 ids
    assert main(["classify", str(out["flat"][0]), str(folder / "587.jpg"), str(folder / "12345.jpg"),
                 "-o", str(dest)]) == 0
    assert pd.read_parquet(dest)["id"].tolist() == [587, 12345]


def test_cli_on_real_jpegs_matches_predictions_on_the_curated_tensors(trained, kaggle_dir, tmp_path):
    """What ``gzmorph classify`` sees of a JPEG is what the curation stage stored for it: the same
    galaxies give the same labels and probabilities either way (hence the same accuracy)."""
    from gzmorph.cli import main
    from gzmorph.preprocess import preprocess_images

    _, _, out = trained
    jpegs = sorted((kaggle_dir / "images_training_rev1").glob("*.jpg"))[:40]
    tensors, bad = preprocess_images(jpegs, 16, 0.5, workers=1, progress=False)  # as rule preprocess_images
    assert not bad
    ids = [int(p.stem) for p in jpegs]
    dest = tmp_path / "cli.parquet"
    for kind in ("hiwl", "flat"):
        ref = C.predict_images(out[kind][0], tensors, ids)
        assert main(["classify", str(out[kind][0]), *map(str, jpegs), "-o", str(dest), "--device", "cpu"]) == 0
        cli = pd.read_parquet(dest).set_index("id").loc[ids]
        assert cli["pred_name"].tolist() == ref["pred_name"].tolist()
        np.testing.assert_allclose(cli[[f"p_{c}" for c in HIWL]].to_numpy(),
                                   ref[[f"p_{c}" for c in HIWL]].to_numpy(), atol=1e-6)


def test_cli_bad_image_names_the_file(trained, tmp_path, capsys):
    from gzmorph.cli import main

    _, _, out = trained
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    dest = tmp_path / "pred.parquet"
    assert main(["classify", str(out["flat"][0]), str(bad), "-o", str(dest)]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert not dest.exists()
    assert main(["classify", str(out["flat"][0]), str(tmp_path / "missing"), "-o", str(dest)]) == 2


def test_classify_table_applies_the_model_to_a_real_catalogue_in_batches(trained, tiny_kaggle, tmp_path, caplog):
    from gzmorph.sources import read_source

    _, _, out = trained
    first = sorted((tiny_kaggle / "images_training_rev1").glob("*.jpg"))[0]
    first.write_bytes(b"garbage")
    cat = read_source("kaggle", tiny_kaggle)
    dest = tmp_path / "apply.parquet"
    with pytest.raises(InputError, match=first.name):
        classify_table(out["hiwl"][0], cat, dest, workers=1)
    assert not dest.exists()
    with caplog.at_level("WARNING", logger="gzmorph.apply"):
        done = classify_table(out["hiwl"][0], cat, dest, workers=1, max_bad_image_fraction=0.05)
    assert "1 unreadable image(s) skipped" in caplog.text and first.name in caplog.text
    pred = pd.read_parquet(dest)
    assert len(pred) == 59 and int(first.stem) not in set(pred["id"])
    assert done == {"galaxies": 59, "predicted": pred["pred_name"].value_counts(sort=False).to_dict()}
    assert {"id", "image_path", "pred_name", "p_cigar"} <= set(pred.columns)
    # streamed a few images at a time (blocks of 32 decoded, classified in batches of 5, each block
    # written as it comes): the same table, in one row group per block
    cat.to_parquet(tmp_path / "source.parquet")
    classify_table(out["hiwl"][0], tmp_path / "source.parquet", tmp_path / "small.parquet", workers=1,
                   max_bad_image_fraction=0.05, batch_size=5)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "small.parquet").metadata.num_row_groups == 2
    small = pd.read_parquet(tmp_path / "small.parquet")
    pd.testing.assert_frame_equal(small, pred, check_exact=False, atol=1e-5)
    assert small["image_path"].tolist() == cat["image_path"].drop(index=cat.index[cat["id"] == int(first.stem)]
                                                                    ).tolist()


def test_a_class_without_test_galaxies_is_evaluated_and_noted_not_an_error(trained, tmp_path):
    """A class too small for every split has no test galaxies: the others are evaluated (the job used to
    fail, and with it the whole report), the metrics name it, and the report section says why its
    recall is 0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cat, imgs, out = trained
    table = pq.read_table(cat)
    df = table.to_pandas()
    df.loc[(df["label_name"] == "cigar") & (df["split"] == "test"), "split"] = "val"
    moved = tmp_path / "catalogue.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata), moved)
    m = C.evaluate(out["flat"][0], moved, imgs, predictions_out=tmp_path / "p.parquet")
    assert m["classes_without_test"] == ["cigar"] and m["per_class"]["cigar"]["support"] == 0
    assert m["n_test"] == int(((df["split"] == "test")).sum())
    d = out["flat"][0].parent
    report_section({"flat": m}, {"flat": d / "training.tsv"}, {"flat": tmp_path / "p.parquet"}, imgs,
                   tmp_path / "c.html", n_mistakes=2, tables_dir=tmp_path / "t")
    html = (tmp_path / "c.html").read_text()
    assert "No test galaxies of cigar (too few to curate into every split" in html


def test_report_section_fragment(trained, tmp_path):
    cat, imgs, out = trained
    metrics, preds, tables = {}, {}, {}
    for kind in ("hiwl", "flat"):
        d = out[kind][0].parent
        metrics[kind] = C.evaluate(out[kind][0], cat, imgs, predictions_out=tmp_path / f"{kind}.parquet")
        preds[kind], tables[kind] = tmp_path / f"{kind}.parquet", d / "training.tsv"
    frag = tmp_path / "classification.html"
    report_section(metrics, tables, preds, imgs, frag, n_mistakes=4, tables_dir=tmp_path / "tables")
    text = frag.read_text()
    assert text.startswith("<!-- gzmorph-section") and "hiwl accuracy" in text and "flat accuracy" in text
    assert "fine level (cigar vs edge-on) started from the coarse level&#x27;s trained backbone" in text or \
        "fine level (cigar vs edge-on) started from the coarse level's trained backbone" in text
    assert "hiwl averages the class probabilities of 8 views of each galaxy" in text and "flat average" not in text
    assert text.count("<img") >= 3 + 2  # 2 confusion matrices + curves + mistakes
    only_flat = tmp_path / "flat_only.html"
    report_section({"flat": metrics["flat"]}, {"flat": tables["flat"]}, {"flat": preds["flat"]}, imgs, only_flat,
                   hiwl_skipped="models")
    # the rule says why (the cut did not rule hiwl out: the user left it out)
    assert "Only the flat classifier ran: classify.models leaves out hiwl." in only_flat.read_text()
    report_section({"flat": metrics["flat"]}, {"flat": tables["flat"]}, {"flat": preds["flat"]}, imgs, only_flat)
    assert "Only the flat classifier applies: the HIWL hierarchy needs the hiwl5 classes" in only_flat.read_text()
    assert metrics["flat"]["training"] == {"backbone": "cnn", "image_size": 16, **{
        k: v for k, v in metrics["flat"]["training"].items() if k not in ("backbone", "image_size")}}
    assert set(metrics["hiwl"]["training"]["levels"]) == {"coarse", "fine"}
    settings = pd.read_csv(tmp_path / "tables" / "training-settings.tsv", sep="\t")
    assert settings[["model", "level"]].values.tolist() == [["hiwl", "coarse"], ["hiwl", "fine"], ["flat", "flat"]]
    assert (settings["epochs_run"] >= settings["best_epoch"]).all() and (settings["image_size"] == 16).all()


def test_bad_options_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="weighted_sampling"):
        C.TrainConfig.from_params({"weighted_sampling": "yes"})
    with pytest.raises(InputError, match="unknown option.*'lrate'"):
        C.TrainConfig.from_params({"lrate": 0.1})
    with pytest.raises(InputError, match="augment.*'shear'"):
        C.TrainConfig.from_params({"augment": {"shear": 0.1}})
    with pytest.raises(InputError, match="flat"):
        C.plan_levels("deep", HIWL, np.zeros(3, int), C.TrainConfig())
