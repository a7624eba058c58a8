"""The ``gzmorph predict``, ``embed`` and ``finetune`` commands, and the image stream under them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gzmorph.cli import main
from gzmorph.imagestream import image_batches, image_ids
from gzmorph.io import InputError, save_bundle
from gzmorph.preprocess import load_image
from gzmorph.tree import GZ2_TREE

SIZE = 16


def galaxy(k: int, rng) -> np.ndarray:
    """A 64 px JPEG-able galaxy: a bright round blob (class 0) or a thin bar (class 1), with noise."""
    yy, xx = np.mgrid[:64, :64] - 31.5
    q = 1.0 if k == 0 else 0.25
    r2 = xx**2 + (yy / q) ** 2
    img = 200 * np.exp(-r2 / 60) + rng.normal(0, 8, (64, 64))
    return np.repeat(img.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 JPEGs named by integer ids, half round and half bars, plus a labels CSV of them."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        k = i % 2
        Image.fromarray(galaxy(k, rng)).save(d / f"{1000 + i}.jpg", quality=95)
        rows.append({"path": f"{1000 + i}.jpg", "label": ["round", "bar"][k]})
    pd.DataFrame(rows[:16]).to_csv(d / "train.csv", index=False)
    pd.DataFrame(rows[16:]).to_csv(d / "test.csv", index=False)
    return d


@pytest.fixture(scope="module")
def representation(tmp_path_factory):
    """A tiny representation model file, as train_representation writes one."""
    from gzmorph.models import create_model
    from gzmorph.represent import MODEL_FORMAT

    torch.manual_seed(0)
    model = create_model("cnn", len(GZ2_TREE.kaggle_columns), SIZE, widths=(4, 8))
    path = tmp_path_factory.mktemp("rep") / "model.pt"
    save_bundle(path, {"format": MODEL_FORMAT, "answers": GZ2_TREE.kaggle_columns, "image_size": SIZE,
                       "norm": {"mean": [0.2] * 3, "std": [0.3] * 3}, "model_config": model.config,
                       "num_features": model.num_features, "state_dict": model.state_dict()}, MODEL_FORMAT)
    return path


def jpegs(folder):
    return sorted(folder.glob("*.jpg"))


def test_image_batches_stream_in_order_and_fail_only_when_the_bad_file_is_reached(folder, tmp_path):
    paths = jpegs(folder)[:5]
    got = list(image_batches(paths, SIZE, 0.5, batch_size=2, workers=2))
    assert [len(p) for p, _ in got] == [2, 2, 1]
    stacked = np.concatenate([x for _, x in got])
    np.testing.assert_array_equal(stacked, np.stack([load_image(p, SIZE, 0.5) for p in paths]))
    bad = tmp_path / "9.jpg"
    bad.write_bytes(b"\xff\xd8 no jpeg")
    stream = image_batches([*paths[:2], bad], SIZE, 0.5, batch_size=2, workers=1)
    assert len(next(stream)[0]) == 2  # lazy: the good batch first
    with pytest.raises(InputError, match=r"9\.jpg: cannot decode image"):
        next(stream)


def test_unreadable_images_are_left_out_up_to_the_fraction_given(folder, representation, tmp_path, caplog):
    """One corrupt file among many stopped the whole command, its work lost; --max-bad-fraction
    leaves such files out (listed in the log) as the workflow's max_bad_image_fraction does."""
    caplog.set_level("INFO")
    paths = jpegs(folder)[:4]
    bad = tmp_path / "9.jpg"
    bad.write_bytes(b"\xff\xd8 no jpeg")
    mixed = [paths[0], bad, *paths[1:]]
    got = list(image_batches(mixed, SIZE, 0.5, batch_size=2, workers=0, max_bad_fraction=0.25))
    assert np.concatenate([p for p, _ in got]).tolist() == [0, 2, 3, 4]
    assert "1 unreadable image(s) left out" in caplog.text and "9.jpg: cannot decode image" in caplog.text
    with pytest.raises(InputError, match=r"1 of 5 images \(20\.0%\) are missing or undecodable, more than "
                                         r"--max-bad-fraction=10\.0%"):
        list(image_batches(mixed, SIZE, 0.5, batch_size=2, workers=0, max_bad_fraction=0.1))
    images = tmp_path / "imgs"
    images.mkdir()
    for p in [*paths, bad]:
        (images / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "pred.parquet"
    assert main(["embed", str(representation), str(images), "-o", str(out), "--workers", "0",
                 "--max-bad-fraction", "0.25"]) == 0
    assert sorted(pd.read_parquet(out)["id"]) == sorted(int(p.stem) for p in paths)
    assert f"4 images -> {out}" in caplog.text  # those written, not those found
    assert main(["embed", str(representation), str(images), "-o", str(out), "--workers", "0"]) == 2


def test_image_ids_from_file_names():
    assert image_ids(["a/12.jpg", "b/7.png"]) == [12, 7]
    assert image_ids(["12.jpg", "NGC 4414.png"]) == ["12", "NGC 4414"]
    with pytest.raises(InputError, match="share the id"):
        image_ids(["a/12.jpg", "b/12.png"])
    # 20 digits do not fit an int64 (an OverflowError traceback when the ids were written): all strings
    assert image_ids(["99999999999999999999.jpg", "5.jpg"]) == ["99999999999999999999", "5"]


def test_misused_commands_are_one_line_exit_2(folder, representation, tmp_path, capsys):
    """--device mps or meta (a torch RuntimeError traceback), the Kaggle CSV over the Parquet output
    (exit 0, the Parquet file silently lost), a header-only labels CSV (an IndexError) and a folder
    as the labels file (exit 1)."""
    header_only = tmp_path / "header.csv"
    header_only.write_text("path,label\n")
    same = tmp_path / "same.out"
    for argv, message in (
            (["predict", str(representation), str(folder), "-o", str(tmp_path / "v.parquet"), "--device", "mps"],
             "--device mps: the commands run on cpu or cuda"),
            (["embed", str(representation), str(folder), "-o", str(tmp_path / "e.parquet"), "--device", "meta"],
             "--device meta: the commands run on cpu or cuda"),
            (["predict", str(representation), str(folder), "-o", str(same), "--kaggle-csv", str(same)],
             "the same file as -o"),
            (["finetune", str(representation), str(header_only), "-o", str(tmp_path / "ft.pt")],
             "header.csv: a header and no rows"),
            (["finetune", str(representation), str(folder), "-o", str(tmp_path / "ft.pt")],
             "a folder, not a labels CSV")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".parquet", ".pt", ".out")]


def test_predict_writes_vote_fractions_and_the_kaggle_submission(folder, representation, tmp_path):
    from gzmorph.represent import load_representation

    out, csv = tmp_path / "votes.parquet", tmp_path / "submission.csv"
    paths = jpegs(folder)
    assert main(["predict", str(representation), str(folder), "-o", str(out), "--kaggle-csv", str(csv),
                 "--batch-size", "5", "--workers", "1", "--device", "cpu"]) == 0
    votes = pd.read_parquet(out)
    assert votes["id"].tolist() == [int(p.stem) for p in paths] and votes["id"].dtype == "int64"
    cols = GZ2_TREE.kaggle_columns
    # cumulative Kaggle columns: question 1 sums to 1; conditional GZ2 columns: every question sums to 1
    np.testing.assert_allclose(votes[["Class1.1", "Class1.2", "Class1.3"]].sum(axis=1), 1, atol=1e-5)
    cond = votes[[f"{a.gz2}_fraction" for a in GZ2_TREE.answers]].to_numpy()
    expected = load_representation(representation, "cpu").predict(
        np.stack([load_image(p, SIZE, 0.5) for p in paths]))
    np.testing.assert_allclose(cond, expected, atol=1e-5)  # batches of 5 = one batch of all
    np.testing.assert_allclose(votes[cols].to_numpy(),
                               GZ2_TREE.to_cumulative(pd.DataFrame(expected, columns=cols)).to_numpy(), atol=1e-5)
    sub = pd.read_csv(csv)
    assert list(sub.columns) == ["GalaxyID", *cols]
    assert sub["GalaxyID"].tolist() == votes["id"].tolist()
    np.testing.assert_allclose(sub[cols].to_numpy(), votes[cols].to_numpy(), atol=1e-6)


def test_embed_writes_one_vector_per_image_with_string_ids(folder, representation, tmp_path):
    from gzmorph.represent import load_representation

    named = tmp_path / "named"
    named.mkdir()
    for p, name in zip(jpegs(folder)[:3], ["NGC 1300", "M51", "1234"]):
        (named / f"{name}.jpg").write_bytes(p.read_bytes())
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(representation), str(named), "-o", str(out), "--workers", "0"]) == 0
    emb = pd.read_parquet(out)
    assert emb["id"].tolist() == ["1234", "M51", "NGC 1300"]  # sorted file names, ids as strings
    vec = np.stack(emb["embedding"].to_numpy())
    rep = load_representation(representation, "cpu")
    ref = rep.embed(np.stack([load_image(named / f"{i}.jpg", SIZE, 0.5) for i in emb["id"]]))
    np.testing.assert_allclose(vec, ref, atol=1e-5)


@pytest.mark.parametrize("mode", ["frozen", "full", "scratch"])
def test_finetune_writes_a_classifier_that_gzmorph_classify_applies(folder, representation, tmp_path, mode, caplog):
    from gzmorph.classify import load_model

    caplog.set_level("INFO")
    model = tmp_path / "ft.pt"
    assert main(["finetune", str(representation), str(folder / "train.csv"), "-o", str(model), "--mode", mode,
                 "--test", str(folder / "test.csv"), "--steps", "40", "--workers", "0", "--device", "cpu"]) == 0
    assert "test (8): accuracy" in caplog.text
    clf = load_model(model)
    assert clf.classes == ["bar", "round"] and clf.bundle["finetune"]["mode"] == mode
    test = clf.bundle["finetune"]["test"]
    assert 0 <= test["accuracy"] <= 1 and 0 <= test["roc_auc"] <= 1
    if mode == "frozen":  # the encoder is unchanged
        enc = load_bundle_state(representation)
        head_free = {k: v for k, v in clf.models["flat"].state_dict().items() if not k.startswith("head")}
        for k, v in head_free.items():
            torch.testing.assert_close(v, enc[k])
    pred = tmp_path / "pred.parquet"
    assert main(["classify", str(model), str(folder), "-o", str(pred), "--workers", "0"]) == 0
    out = pd.read_parquet(pred)
    assert len(out) == 24 and set(out["pred_name"]) <= {"bar", "round"}
    # the test images as classify sees them give the accuracy finetune recorded
    labels = pd.read_csv(folder / "test.csv")
    ids = [int(p.split(".")[0]) for p in labels["path"]]
    acc = (out.set_index("id").loc[ids, "pred_name"].to_numpy() == labels["label"].to_numpy()).mean()
    assert acc == pytest.approx(test["accuracy"])


def load_bundle_state(path):
    from gzmorph.io import load_bundle
    from gzmorph.represent import MODEL_FORMAT

    return load_bundle(path, MODEL_FORMAT, "representation")["state_dict"]


def test_frozen_head_folds_into_one_linear_layer():
    from gzmorph.finetune import StandardisedHead

    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3)
    mu, sd = torch.randn(5), torch.rand(5) + 0.5
    head = StandardisedHead(lin, mu, sd)
    f = torch.randn(7, 5)
    with torch.no_grad():
        torch.testing.assert_close(head.folded()(f), head(f))


@pytest.mark.parametrize("rows, message", [
    ([{"path": "1000.jpg", "label": "round"}, {"path": "1001.jpg", "label": ""}], r"train\.csv line 3: empty 'label'"),
    ([{"path": "1000.jpg", "label": "round"}, {"path": "1002.jpg", "label": "round"}], "one class only"),
    ([{"path": "nope.jpg", "label": "round"}, {"path": "1001.jpg", "label": "bar"}],
     r"line 2: image .*nope\.jpg not found \(1 of 2 listed images missing\)"),
])
def test_finetune_bad_labels_are_one_line_exit_2(folder, representation, tmp_path, rows, message, capsys):
    labels = tmp_path / "train.csv"
    pd.DataFrame(rows).assign(path=lambda d: [str(folder / p) for p in d["path"]]).to_csv(labels, index=False)
    model = tmp_path / "ft.pt"
    assert main(["finetune", str(representation), str(labels), "-o", str(model), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gzmorph finetune: error:")
    assert pytest.importorskip("re").search(message, err), err
    assert not model.exists()


def test_finetune_from_a_local_timm_folder(folder, tmp_path):
    """A pretrained encoder from local files (timm's Hugging Face layout, random weights here):
    its backbone starts the fine-tuning, its config.json's mean/std normalise, and the result
    classifies without the encoder folder."""
    import shutil

    import timm
    from timm.models import save_for_hf

    from gzmorph.classify import load_model

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    enc = tmp_path / "encoder"
    save_for_hf(net, enc, safe_serialization=True)
    model = tmp_path / "ft.pt"
    assert main(["finetune", str(enc), str(folder / "train.csv"), "-o", str(model), "--mode", "frozen",
                 "--image-size", "32", "--steps", "20", "--workers", "0", "--test", str(folder / "test.csv")]) == 0
    shutil.rmtree(enc)
    clf = load_model(model)
    assert clf.bundle["levels"][0]["model_config"]["name"] == "timm/resnet10t" and clf.image_size == 32
    assert clf.norm["mean"] == pytest.approx(list(net.pretrained_cfg["mean"]))  # ImageNet's, from config.json
    frozen = {k: v for k, v in clf.models["flat"].state_dict().items() if k.startswith("backbone.")}
    for k, v in net.state_dict().items():
        if not k.startswith("fc."):
            torch.testing.assert_close(frozen[f"backbone.{k}"], v)
    pred = tmp_path / "pred.parquet"
    assert main(["classify", str(model), str(folder), "-o", str(pred), "--workers", "0"]) == 0
    assert len(pd.read_parquet(pred)) == 24


def test_export_encoder_round_trips_a_timm_representation(folder, tmp_path):
    """A representation with a timm backbone exports as a timm folder (its own normalisation in
    config.json) that load_encoder and gzmorph finetune read back, weights unchanged."""
    from gzmorph.models import create_model, load_encoder
    from gzmorph.represent import MODEL_FORMAT

    torch.manual_seed(0)
    model = create_model("timm/resnet10t", len(GZ2_TREE.kaggle_columns), 32)
    rep = tmp_path / "rep.pt"
    norm = {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    save_bundle(rep, {"format": MODEL_FORMAT, "image_size": 32, "norm": norm, "model_config": model.config,
                      "num_features": model.num_features, "state_dict": model.state_dict(),
                      "preprocess": {"crop_fraction": 0.8}}, MODEL_FORMAT)
    enc = tmp_path / "encoder"
    assert main(["export-encoder", str(rep), "-o", str(enc)]) == 0
    assert sorted(p.name for p in enc.iterdir()) == ["config.json", "model.safetensors"]
    back = load_encoder(enc)
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(back.backbone.state_dict()[k], v)
    assert back.config["image_size"] == 32
    out = tmp_path / "ft.pt"
    assert main(["finetune", str(enc), str(folder / "train.csv"), "-o", str(out), "--mode", "frozen",
                 "--steps", "5", "--workers", "0"]) == 0
    from gzmorph.classify import load_model

    clf = load_model(out)
    assert clf.norm == norm and clf.image_size == 32
    assert clf.bundle["preprocess"]["crop_fraction"] == 0.8  # the exported folder keeps the crop (it fell to 0.5)
    cnn = tmp_path / "cnn.pt"
    m2 = create_model("cnn", 37, 16, widths=(4, 8))
    save_bundle(cnn, {"format": MODEL_FORMAT, "image_size": 16, "norm": norm, "model_config": m2.config,
                      "state_dict": m2.state_dict()}, MODEL_FORMAT)
    assert main(["export-encoder", str(cnn), "-o", str(tmp_path / "no")]) == 2
    # another architecture exported over it and cut short after the weights: no pair that mismatches
    import gzmorph.pretrained as P

    other = create_model("timm/mobilenetv3_small_050", len(GZ2_TREE.kaggle_columns), 32)
    save_bundle(rep, {"format": MODEL_FORMAT, "image_size": 32, "norm": norm, "model_config": other.config,
                      "num_features": other.num_features, "state_dict": other.state_dict()}, MODEL_FORMAT)

    def cut_short(*args, **kwargs):
        raise KeyboardInterrupt

    real = P.json.dumps
    P.json.dumps = cut_short
    try:
        with pytest.raises(KeyboardInterrupt):
            P.export_encoder(rep, enc)
    finally:
        P.json.dumps = real
    assert sorted(p.name for p in enc.iterdir()) == ["model.safetensors"]  # the old config.json is gone
    with pytest.raises(InputError, match="config.json"):
        load_encoder(enc)
    (enc / ".model.safetensors.ab12cd.tmp").write_bytes(b"")  # what a SIGKILL leaves: the export runs again
    assert main(["export-encoder", str(rep), "-o", str(enc)]) == 0
    assert load_encoder(enc).config["name"] == "timm/mobilenetv3_small_050"


def test_finetune_help_says_which_encoders_it_takes(capsys):
    """Exactly what the command reads: not "any local encoder" (torchvision weights name no architecture)."""
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for words in ("representation or flat classifier model file", "a folder written by gzmorph export-encoder",
                  "timm encoder whose config.json names its architecture", "a timm training checkpoint",
                  "Not torchvision .pth weights", "nor 1-channel encoders"):
        assert words in out, words


def test_export_encoder_of_a_missing_file_says_it_does_not_exist(tmp_path, capsys):
    assert main(["export-encoder", str(tmp_path / "nothing.pt"), "-o", str(tmp_path / "enc")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{tmp_path / 'nothing.pt'}: model file not found: the file "
                                                    "does not exist")
    assert not (tmp_path / "enc").exists()


def test_an_exported_greyscale_representation_stays_greyscale(tmp_path):
    """A greyscale representation's mean/std are the grey image's: its exported folder says it is greyscale,
    so gzmorph finetune makes the images grey as the model file does, and the features are the same (they
    were colour images normalised with grey statistics).  An export of an older gzmorph, without the key,
    is read as greyscale by its one-value mean."""
    import json

    from gzmorph.augment import input_transform
    from gzmorph.finetune_cli import _folder_norm, load_encoder_file
    from gzmorph.models import create_model
    from gzmorph.represent import MODEL_FORMAT

    torch.manual_seed(0)
    model = create_model("timm/resnet10t", len(GZ2_TREE.kaggle_columns), 32)
    rep, enc = tmp_path / "rep.pt", tmp_path / "encoder"
    norm = {"mean": [0.1], "std": [0.2], "greyscale": True}
    save_bundle(rep, {"format": MODEL_FORMAT, "image_size": 32, "norm": norm, "model_config": model.config,
                      "num_features": model.num_features, "state_dict": model.state_dict()}, MODEL_FORMAT)
    assert main(["export-encoder", str(rep), "-o", str(enc)]) == 0
    assert json.loads((enc / "config.json").read_text())["gzmorph"] == {"greyscale": True}
    assert _folder_norm(enc) == norm
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    features = []
    for path in (rep, enc):
        net, got, size, _, _ = load_encoder_file(path)
        assert got == norm and size == 32
        with torch.no_grad():
            features.append(net.eval().features(input_transform(got)(images)))
    torch.testing.assert_close(features[1], features[0])
    config = json.loads((enc / "config.json").read_text())
    del config["gzmorph"]
    (enc / "config.json").write_text(json.dumps(config))
    assert _folder_norm(enc) == norm
    colour = tmp_path / "colour"  # and a colour model's export is not
    save_bundle(rep, {"format": MODEL_FORMAT, "image_size": 32, "norm": {"mean": [0.1] * 3, "std": [0.2] * 3},
                      "model_config": model.config, "num_features": model.num_features,
                      "state_dict": model.state_dict()}, MODEL_FORMAT)
    assert main(["export-encoder", str(rep), "-o", str(colour)]) == 0
    assert _folder_norm(colour) == {"mean": [0.1] * 3, "std": [0.2] * 3}


def test_an_output_that_is_an_input_is_refused_before_anything_runs(representation, folder, tmp_path, capsys):
    """`-o model.pt` typed for the model, an image of the folder being read, the labels CSV: each
    was replaced (atomically, and without a word); an export over a folder of other files too."""
    before = {p: p.read_bytes() for p in (representation, folder / "1000.jpg", folder / "train.csv")}
    cases = [["embed", str(representation), str(folder), "-o", str(representation)],
             ["predict", str(representation), str(folder), "-o", str(tmp_path / "out.parquet"),
              "--kaggle-csv", str(representation)],
             ["embed", str(representation), str(folder), "-o", str(folder / "1000.jpg")],
             ["finetune", str(representation), str(folder / "train.csv"), "-o", str(folder / "train.csv")]]
    for argv in cases:
        assert main(argv) == 2, argv
        assert "an input of this command" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "out.parquet").exists()
    # Parquet into preds.csv was unreadable in TOPCAT or a spreadsheet
    assert main(["embed", str(representation), str(folder), "-o", str(tmp_path / "preds.csv")]) == 2
    assert "is written as Parquet, not .csv" in capsys.readouterr().err
    assert main(["predict", str(representation), str(folder), "-o", str(tmp_path / "v.parquet"),
                 "--kaggle-csv", str(tmp_path / "k.parquet")]) == 2
    assert "is written as CSV, not .parquet" in capsys.readouterr().err
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"my": "settings"}')
    assert main(["export-encoder", str(representation), "-o", str(project)]) == 2
    assert "a config.json of no encoder" in capsys.readouterr().err
    assert (project / "config.json").read_text() == '{"my": "settings"}'


def test_finetune_names_a_missing_test_image_before_training(representation, folder, tmp_path, capsys, monkeypatch):
    import gzmorph.finetune as F

    monkeypatch.setattr(F, "train_arm", lambda *a, **k: pytest.fail("trained before the test set was checked"))
    test = folder / "test_missing.csv"
    test.write_text("path,label\n1016.jpg,round\nmissing.jpg,bar\n")
    try:
        assert main(["finetune", str(representation), str(folder / "train.csv"), "-o", str(tmp_path / "f.pt"),
                     "--test", str(test), "--workers", "0"]) == 2
    finally:
        test.unlink()
    err = capsys.readouterr().err
    assert f"{test} line 3: image {folder / 'missing.jpg'} not found (1 of 2 listed images missing)" in err


def test_a_folder_skips_hidden_files_and_says_which_sub_folders_it_does_not_read(tmp_path, caplog):
    from gzmorph.imagestream import find_images

    rng = np.random.default_rng(0)
    (tmp_path / "inner").mkdir()
    for name in ("1.png", "._1.png", "inner/2.png"):
        Image.fromarray(galaxy(0, rng)).save(tmp_path / name)
    (tmp_path / "._1.png").write_bytes(b"\0\5\x16\7AppleDouble")  # macOS metadata, no image
    (tmp_path / "locked").mkdir()  # a sub-folder that cannot be listed (lost+found) is no error
    real = Path.iterdir

    def iterdir(self):
        if self.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Path, "iterdir", iterdir)
        assert find_images([tmp_path]) == [tmp_path / "1.png"]
    assert "1 sub-folder(s) with images not read (e.g. inner)" in caplog.text
    (tmp_path / "1.png").unlink()
    with pytest.raises(InputError, match="its sub-folders are not read: name them"):
        find_images([tmp_path])


def test_reader_processes_keep_to_the_rules_threads(monkeypatch):
    """A rule's threads (OMP_NUM_THREADS, set by rule_context) bound the image-store readers and the
    decoders; they took the machine's CPUs, beyond what Snakemake counted the job as."""
    import os

    from gzmorph.imagestream import default_workers
    from gzmorph.stream import window_workers

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_workers() == max(0, min(8, cpus - 1))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_workers() == 0 and window_workers() == 0  # one thread: read in the training process
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert default_workers() == min(1, cpus - 1)
