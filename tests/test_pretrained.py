"""Pretrained encoders from local files (gzmorph.pretrained): timm backbones in the registry, weights
from a Hugging Face/timm folder, a safetensors file, a timm/torch checkpoint or a gzmorph model file;
never a download, never code run from a file.  The encoders are built here with timm and random
weights (resnet10t: ~5 M parameters, 32 px inputs)."""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gzmorph.io import InputError, save_bundle
from gzmorph.models import create_model, list_models, load_encoder

torch.set_num_threads(1)
ARCH = "resnet10t"
REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs ``touch <marker>``: what a crafted encoder file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A timm resnet10t with random weights and a 7-class head, saved as timm's Hugging Face folder
    (config.json + model.safetensors), a bare .safetensors file and a timm training checkpoint."""
    import timm
    from safetensors.torch import save_file
    from timm.models import save_for_hf

    root = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(3)
    net = timm.create_model(ARCH, pretrained=False, num_classes=7)
    with torch.no_grad():  # BN statistics that are not the defaults, so that loading them shows
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    save_for_hf(net, root / "folder", safe_serialization=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(root / "encoder.safetensors"))
    # as timm's train.py writes it: the EMA weights, the argparse arguments, an optimizer
    torch.save({"epoch": 3, "arch": ARCH, "args": argparse.Namespace(model=ARCH, lr=0.1),
                "state_dict": {f"module.{k}": torch.zeros_like(v) for k, v in state.items()},
                "state_dict_ema": state, "optimizer": {"state": {}, "param_groups": []}},
               root / "checkpoint.pth.tar")
    return {"net": net, "state": state, "root": root, "folder": root / "folder",
            "safetensors": root / "encoder.safetensors", "checkpoint": root / "checkpoint.pth.tar"}


def backbone_matches(model, state) -> bool:
    """Every backbone weight of ``model`` equals the encoder's (whose classifier ``fc`` is dropped)."""
    own = model.backbone.state_dict()
    return set(own) == {k for k in state if not k.startswith("fc.")} and all(
        torch.equal(v, state[k]) for k, v in own.items())


# ----------------------------------------------------------------------------- the registry


def test_timm_architectures_are_backbones():
    assert "timm/<any timm architecture>" in list_models()
    torch.manual_seed(0)
    m = create_model(f"timm/{ARCH}", 3, 32, dropout=0.1).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert m(x).shape == (2, 3) and m.features(x).shape == (2, m.num_features) == (2, 512)
    assert m.config == {"name": f"timm/{ARCH}", "num_classes": 3, "image_size": 32, "dropout": 0.1}
    assert m.pretrained_from is None
    assert create_model(f"timm/{ARCH}", 2).config["image_size"] == 176  # timm's default input size
    # a ViT (fixed input size) is built for the image size asked for
    vit = create_model("timm/vit_tiny_patch16_224", 2, 32, depth=1)
    assert vit(torch.zeros(1, 3, 32, 32)).shape == (1, 2)


@pytest.mark.parametrize("name, message", [
    ("timm/resnet10", "unknown timm architecture 'resnet10'; did you mean"),
    ("timm/hf-hub:timm/resnet18.a1_in1k", "hub and local-dir names are not accepted.*never downloads"),
    ("timm/local-dir:/tmp/x", "hub and local-dir names are not accepted"),
])
def test_unknown_and_hub_names_are_refused(name, message):
    with pytest.raises(InputError, match=message):
        create_model(name, 2, 32)


def test_timm_options_that_the_architecture_lacks_are_one_error():
    with pytest.raises(InputError, match=f"timm/{ARCH}: .*no_such_option.*model_kwargs"):
        create_model(f"timm/{ARCH}", 2, 32, no_such_option=1)


# ----------------------------------------------------------------------------- the encoder files


@pytest.mark.parametrize("kind", ["folder", "safetensors", "checkpoint"])
def test_backbone_weights_come_from_each_kind_of_file(encoder, kind):
    m = create_model(f"timm/{ARCH}", 3, 32, pretrained=str(encoder[kind]))
    assert backbone_matches(m, encoder["state"])
    assert m.head[-1].out_features == 3  # a new head, not the encoder's 7 classes
    assert "pretrained" not in m.config and m.pretrained_from == str(encoder[kind])


def test_a_folder_with_pytorch_model_bin_and_a_torchvision_backbone(encoder, tmp_path):
    """timm's resnet and torchvision's share their weight names: a torchvision resnet18 starts from
    a timm-layout folder holding pytorch_model.bin (read weights-only)."""
    import timm

    torch.manual_seed(1)
    ref = timm.create_model("resnet18", pretrained=False)
    (tmp_path / "r18").mkdir()
    torch.save(ref.state_dict(), tmp_path / "r18" / "pytorch_model.bin")
    m = create_model("resnet18", 4, 32, pretrained=tmp_path / "r18")
    assert torch.equal(m.backbone[0].weight, ref.conv1.weight)
    assert torch.equal(m.backbone[1].running_var, ref.bn1.running_var)


def test_load_encoder_builds_the_model_from_the_folder_alone(encoder):
    m = load_encoder(encoder["folder"], num_classes=2, image_size=32)
    assert backbone_matches(m, encoder["state"]) and m.head[-1].out_features == 2
    assert m.config["name"] == f"timm/{ARCH}" and m.config["image_size"] == 32
    assert "pretrained" not in m.config and m.pretrained_from == str(encoder["folder"])
    # model.config rebuilds it without the file
    cfg = dict(m.config)
    again = create_model(cfg.pop("name"), cfg.pop("num_classes"), cfg.pop("image_size"), **cfg)
    again.load_state_dict(m.state_dict())
    assert load_encoder(encoder["folder"]).config["image_size"] == 176  # the encoder's input size
    features = load_encoder(encoder["folder"], image_size=32).eval()  # num_classes=0: features
    assert features(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    # a timm training checkpoint names its architecture
    assert backbone_matches(load_encoder(encoder["checkpoint"], 2, 32), encoder["state"])


def test_a_file_that_names_no_architecture_is_one_error(encoder):
    with pytest.raises(InputError, match=f"{encoder['safetensors']}: no config.json names"):
        load_encoder(encoder["safetensors"])


def test_an_encoder_of_another_architecture_is_one_error_naming_the_file(encoder):
    with pytest.raises(InputError, match=r"pretrained encoder of timm architecture 'resnet10t' .*not 'resnet14t'"):
        create_model("timm/resnet14t", 2, 32, pretrained=encoder["folder"])
    for arch in ("resnet14t", "efficientnet_b0"):
        with pytest.raises(InputError) as err:
            create_model(f"timm/{arch}", 2, 32, pretrained=encoder["safetensors"])
        text = str(err.value)
        assert "\n" not in text and text.startswith(f"{encoder['safetensors']}: pretrained encoder does not fit")
        assert "missing [" in text or "unexpected [" in text or "shapes " in text
    with pytest.raises(InputError, match=r"does not fit torchvision resnet18 \(another architecture\?\): missing"):
        create_model("resnet18", 2, 32, pretrained=encoder["checkpoint"])


@pytest.mark.parametrize("what", ["missing", "empty folder"])
def test_an_absent_encoder_is_one_error_and_no_download(tmp_path, what):
    path = tmp_path / "zoobot-encoder"
    if what == "empty folder":
        path.mkdir()
    message = (f"{path}: pretrained encoder not found .gzmorph never downloads weights" if what == "missing"
               else f"{path}: pretrained encoder folder holds none of model.safetensors, pytorch_model.bin")
    for build in (lambda: create_model(f"timm/{ARCH}", 2, 32, pretrained=str(path)),
                  lambda: create_model("efficientnet_b0", 2, 32, pretrained=str(path)),
                  lambda: load_encoder(path)):
        with pytest.raises(InputError, match=message):
            build()


@pytest.mark.parametrize("name", ["encoder.pth", "folder/pytorch_model.bin"])
def test_a_crafted_pickle_is_refused_and_never_run(tmp_path, name):
    marker, path = tmp_path / "pwned", tmp_path / name
    path.parent.mkdir(exist_ok=True)
    (path.parent / "config.json").write_text(f'{{"architecture": "{ARCH}"}}')
    torch.save({"state_dict": {"conv1.0.weight": torch.zeros(1)}, "x": Payload(marker)}, path)
    builds = [lambda: create_model(f"timm/{ARCH}", 2, 32, pretrained=str(path)), lambda: load_encoder(path)]
    if path.name == "pytorch_model.bin":  # the encoder named by its folder
        builds += [lambda: create_model(f"timm/{ARCH}", 2, 32, pretrained=str(path.parent)),
                   lambda: load_encoder(path.parent)]
    for build in builds:
        with pytest.raises(InputError) as err:
            build()
        text = str(err.value)
        assert "\n" not in text and str(path) in text and "refused" in text, text
    assert not marker.exists()


def test_no_network_is_touched(encoder, monkeypatch, tmp_path):
    """Building timm backbones and loading every kind of encoder opens no connection."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for kind in ("folder", "safetensors", "checkpoint"):
        create_model(f"timm/{ARCH}", 2, 32, pretrained=encoder[kind])
    load_encoder(encoder["folder"], 2)
    create_model("timm/convnext_atto", 2, 32)


@pytest.mark.parametrize("key", ["checkpoint_path", "pretrained_cfg_overlay"])
def test_a_model_files_header_cannot_make_timm_load_a_file(tmp_path, key):
    """A model file's model_config went to timm.create_model whole: ``checkpoint_path`` made timm open
    a file of the header's choosing (and an older timm unpickled it).  Every loader refuses it,
    naming the file, before timm sees it."""
    from gzmorph.classify import MODEL_FORMAT as CLASSIFIER
    from gzmorph.classify import load_model
    from gzmorph.represent import MODEL_FORMAT as REPRESENTATION
    from gzmorph.represent import load_representation

    marker = tmp_path / "pwned"
    torch.save({"x": Payload(marker)}, tmp_path / "evil.pth")
    value = str(tmp_path / "evil.pth") if key == "checkpoint_path" else {"file": str(tmp_path / "evil.pth")}
    config = {"name": f"timm/{ARCH}", "num_classes": 3, "image_size": 32, key: value}
    norm = {"mean": [0.5] * 3, "std": [0.25] * 3}
    rep, clf = tmp_path / "representation.pt", tmp_path / "classifier.pt"
    save_bundle(rep, {"format": REPRESENTATION, "image_size": 32, "norm": norm, "model_config": config,
                      "state_dict": {}}, REPRESENTATION)
    save_bundle(clf, {"format": CLASSIFIER, "kind": "flat", "cut": "t", "classes": ["a", "b", "c"], "image_size": 32,
                      "norm": norm, "levels": [{"name": "flat", "classes": ["a", "b", "c"], "model_config": config,
                                                "state_dict": {}}]}, CLASSIFIER)
    for path, load in ((rep, load_representation), (clf, load_model), (rep, load_encoder), (clf, load_encoder)):
        with pytest.raises(InputError) as err:
            load(path)
        text = str(err.value)
        assert text.startswith(f"{path}: timm/{ARCH}: {key} cannot be model settings") and "\n" not in text, text
    with pytest.raises(InputError, match=f"{key} cannot be model settings"):  # nor through model_kwargs
        create_model(f"timm/{ARCH}", 3, 32, **{key: value})
    assert not marker.exists()


# ----------------------------------------------------------------------------- gzmorph model files


def test_a_gzmorph_classifier_with_a_timm_backbone_rebuilds_from_its_header(encoder, tmp_path):
    """A flat classifier file saved as the classifier stage does: classify.load_model rebuilds the
    timm backbone from model_config (the encoder file may be gone); it is itself an encoder."""
    from gzmorph.classify import MODEL_FORMAT, load_model

    model = create_model(f"timm/{ARCH}", 3, 32, pretrained=encoder["folder"]).eval()
    classes = ["a", "b", "c"]
    bundle = {"format": MODEL_FORMAT, "kind": "flat", "cut": "test", "classes": classes, "image_size": 32,
              "norm": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
              "levels": [{"name": "flat", "classes": classes, "model": model.config["name"],
                          "model_config": model.config, "state_dict": model.state_dict()}]}
    path = tmp_path / "model.pt"
    save_bundle(path, bundle, MODEL_FORMAT)
    clf = load_model(path, device="cpu")
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    probs, _ = clf.predict_proba(images)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        assert np.allclose(probs, torch.softmax(model(x), 1).numpy(), atol=1e-5)
    # the classifier file as an encoder: by load_encoder, and as pretrained of the same backbone
    enc = load_encoder(path, num_classes=5)
    assert backbone_matches(enc, encoder["state"]) and enc.head[-1].out_features == 5
    # the options timm saved in the folder's config.json (model_args), which built it
    assert enc.config == {"name": f"timm/{ARCH}", "num_classes": 5, "image_size": 32, "in_chans": 3,
                          "global_pool": "avg"}
    assert backbone_matches(create_model(f"timm/{ARCH}", 2, 32, pretrained=path), encoder["state"])
    with pytest.raises(InputError, match=f"{path}: pretrained encoder of model 'timm/{ARCH}', not 'cnn'"):
        create_model("cnn", 2, 32, pretrained=path)


def test_the_classifier_stage_trains_a_timm_backbone_from_a_local_folder(encoder, tmp_path):
    """classify.train with ``backbone: timm/...`` and ``pretrained: <folder>`` (as the classify rule
    calls it); the model file rebuilds after the encoder folder is gone."""
    import shutil

    from test_classify import write_curated

    from gzmorph import classify as C

    cat, imgs = write_curated(tmp_path / "curated", classes=["a", "b"], counts={"a": (4, 2, 1), "b": (4, 2, 1)},
                              size=32, cut="two")
    folder = shutil.copytree(encoder["folder"], tmp_path / "encoder")
    C.train(cat, imgs, tmp_path / "model.pt", kind="flat", epochs=1, batch_size=4, lr=0.0, momentum=0.0,
            weight_decay=0.0, patience=None, backbone=f"timm/{ARCH}", pretrained=str(folder), augment=False,
            progress=False, device="cpu")
    shutil.rmtree(folder)
    clf = C.load_model(tmp_path / "model.pt", device="cpu")
    assert clf.bundle["levels"][0]["model_config"] == {"name": f"timm/{ARCH}", "num_classes": 2, "image_size": 32,
                                                       "in_chans": 3, "global_pool": "avg"}  # the folder's model_args
    weights = {k: v for k, v in clf.models["flat"].backbone.state_dict().items() if "running" not in k
               and "num_batches" not in k}  # lr 0: the encoder's weights (BN statistics move in training)
    assert all(torch.equal(v, encoder["state"][k]) for k, v in weights.items())


def test_a_checkpoint_is_never_resumed_onto_an_encoder_replaced_in_place(encoder, tmp_path, monkeypatch, caplog):
    """The encoder's path alone was the checkpoint's identity: after a killed run, another encoder
    copied over the same file had its run resume the old encoder's epochs."""
    import shutil

    from safetensors.torch import save_file
    from test_classify import write_curated

    from gzmorph import classify as C

    cat, imgs = write_curated(tmp_path / "curated", classes=["a", "b"], counts={"a": (4, 2, 1), "b": (4, 2, 1)},
                              size=32, cut="two")
    path = tmp_path / "encoder.safetensors"
    shutil.copy(encoder["safetensors"], path)
    run = dict(kind="flat", epochs=2, batch_size=4, lr=0.01, momentum=0.0, weight_decay=0.0, patience=None,
               backbone=f"timm/{ARCH}", pretrained=str(path), augment=False, progress=False, device="cpu")
    with monkeypatch.context() as m:  # killed after its last epoch, before the model file
        m.setattr(C, "save_model", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            C.train(cat, imgs, tmp_path / "model.pt", checkpoint_dir=tmp_path / "ck", **run)
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in encoder["state"].items()}, str(path))
    with caplog.at_level("INFO", logger="gzmorph.train"):
        C.train(cat, imgs, tmp_path / "model.pt", checkpoint_dir=tmp_path / "ck", **run)
    assert "resumed from" not in caplog.text
    C.train(cat, imgs, tmp_path / "fresh.pt", checkpoint_dir=tmp_path / "fresh", **run)
    got, fresh = (C.load_model(tmp_path / f, device="cpu").models["flat"].state_dict()
                  for f in ("model.pt", "fresh.pt"))
    assert all(torch.equal(got[k], fresh[k]) for k in fresh)


def test_a_hierarchical_classifier_is_no_encoder(tmp_path):
    from gzmorph.classify import MODEL_FORMAT

    m = create_model("cnn", 2, 32, widths=(4, 8))
    lv = {"model_config": m.config, "state_dict": m.state_dict()}
    path = tmp_path / "hiwl.pt"
    save_bundle(path, {"kind": "hiwl", "levels": [{"name": "coarse", **lv}, {"name": "fine", **lv}]}, MODEL_FORMAT)
    with pytest.raises(InputError, match="holds 2 models .levels coarse, fine.; an encoder is a representation"):
        load_encoder(path)


def test_importing_the_models_does_not_import_timm():
    code = "import gzmorph.models, gzmorph.config_check, sys; print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ----------------------------------------------------------------------------- the configuration


def config_errors_of(over: dict) -> list[str]:
    from gzmorph.config_check import config_errors
    from gzmorph.settings import deep_merge

    base = yaml.safe_load((REPO / "config.yaml").read_text())
    return config_errors(deep_merge(copy.deepcopy(base), over), REPO / "workflow" / "schemas" / "config.schema.yaml")


def test_the_config_takes_timm_backbones_and_local_encoder_folders(encoder):
    assert config_errors_of({"classify": {"backbone": f"timm/{ARCH}", "pretrained": str(encoder["folder"])},
                             "represent": {"backbone": f"timm/{ARCH}", "pretrained": str(encoder["checkpoint"])}}) == []
    bad = config_errors_of({"classify": {"backbone": "vit"}})
    assert len(bad) == 1 and bad[0].startswith("config classify.backbone: 'vit'")


def test_an_absent_encoder_fails_the_dag_build_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    errs = config_errors_of({"classify": {"pretrained": str(tmp_path / "nope")},
                             "represent": {"pretrained": str(tmp_path / "empty")}})
    nowhere = ("(gzmorph never downloads weights: give a local folder with config.json and model.safetensors, "
               "a .safetensors file, a timm/torch checkpoint or a gzmorph model file)")
    assert errs == [f"config classify.pretrained: {tmp_path / 'nope'}: pretrained encoder not found {nowhere}",
                    (f"config represent.pretrained: {tmp_path / 'empty'}: pretrained encoder folder holds none of "
                    f"model.safetensors, pytorch_model.bin {nowhere}")]


# ----------------------------------------------------------------------------- one decision per encoder


def save_folder(path, model_args: dict, seed: int = 5):
    """A timm folder of ``ARCH`` built (and saved, config.json ``model_args``) with ``model_args``."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    net = timm.create_model(ARCH, pretrained=False, num_classes=0, **model_args)
    save_for_hf(net, path, model_args=model_args, safe_serialization=True)
    return net


def test_a_folders_model_args_build_the_backbone_in_the_workflow_as_in_load_encoder(tmp_path):
    """The workflow's classify/represent.pretrained (create_model by name) takes the architecture's options
    of the folder's config.json as load_encoder (gzmorph finetune) does, and records them in model.config."""
    net = save_folder(tmp_path / "narrow", {"stem_width": 16})
    by_name = create_model(f"timm/{ARCH}", 3, 32, pretrained=tmp_path / "narrow")
    by_file = load_encoder(tmp_path / "narrow", 3, 32)
    for m in (by_name, by_file):
        assert m.config["stem_width"] == 16
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in m.backbone.state_dict().items())
    cfg = dict(by_name.config)  # rebuilds without the folder
    create_model(cfg.pop("name"), cfg.pop("num_classes"), cfg.pop("image_size"), **cfg).load_state_dict(
        by_name.state_dict())
    # model_kwargs override the folder's (and then its weights do not fit: one error)
    with pytest.raises(InputError, match="does not fit"):
        create_model(f"timm/{ARCH}", 3, 32, pretrained=tmp_path / "narrow", stem_width=32)


def test_a_one_channel_encoder_is_refused_in_one_line_when_loaded_and_at_the_dag_build(tmp_path):
    """A greyscale encoder with a 1-channel stem (model_args.in_chans: 1, as Zoobot's): gzmorph feeds
    three channels, so it is refused naming the folder, before any image is read; not a torch traceback."""
    from gzmorph.finetune_cli import load_encoder_file

    grey = tmp_path / "zoobot-grey"
    save_folder(grey, {"in_chans": 1})
    calls = [lambda: load_encoder(grey), lambda: load_encoder_file(grey, 32),
             lambda: create_model(f"timm/{ARCH}", 2, 32, pretrained=grey)]
    for call in calls:
        with pytest.raises(InputError) as err:
            call()
        text = str(err.value)
        assert "\n" not in text and text.startswith(f"{grey}: an encoder of 1 input channel(s)"), text
        assert "config.json model_args.in_chans" in text
    with pytest.raises(InputError, match="in_chans 1 .model_kwargs.: gzmorph feeds 3-channel images"):
        create_model(f"timm/{ARCH}", 2, 32, in_chans=1)
    errs = config_errors_of({"classify": {"backbone": f"timm/{ARCH}", "pretrained": str(grey)},
                             "represent": {"backbone": f"timm/{ARCH}", "model_kwargs": {"in_chans": 1}}})
    assert errs == [f"config classify.pretrained: {text}",
                    "config represent.model_kwargs.in_chans: 1: gzmorph feeds 3-channel images (a greyscale model "
                    "its grey image as three equal channels)"]


def job_error(backbone: str, pretrained) -> str:
    with pytest.raises(InputError) as err:
        create_model(backbone, 2, 32, pretrained=pretrained)
    return str(err.value)


def test_an_encoder_that_does_not_fit_the_backbone_fails_the_dag_build_with_the_jobs_message(encoder, tmp_path):
    """Read from config.json and the model file's header only: a timm folder for the default cnn, a
    folder of another timm architecture, a gzmorph model file of another backbone."""
    from gzmorph.represent import MODEL_FORMAT

    cnn = create_model("cnn", 3, 32, widths=(4, 8))
    gz = tmp_path / "cnn-representation.pt"
    save_bundle(gz, {"format": MODEL_FORMAT, "image_size": 32, "model_config": cnn.config, "num_features": 8,
                     "state_dict": cnn.state_dict()}, MODEL_FORMAT)
    cases = [({"classify": {"pretrained": str(encoder["folder"])}}, "cnn", encoder["folder"]),
             ({"represent": {"pretrained": str(encoder["checkpoint"])}}, "cnn", encoder["checkpoint"]),
             ({"represent": {"backbone": "timm/resnet14t", "pretrained": str(encoder["folder"])}}, "timm/resnet14t",
              encoder["folder"]),
             ({"represent": {"backbone": f"timm/{ARCH}", "pretrained": str(gz)}}, f"timm/{ARCH}", gz)]
    for over, backbone, path in cases:
        stage = next(iter(over))
        assert config_errors_of(over) == [f"config {stage}.pretrained: {job_error(backbone, path)}"], over
    assert "starts only from a gzmorph model file of a 'cnn'" in job_error("cnn", encoder["folder"])
    assert "of timm architecture 'resnet10t' (its config.json), not 'resnet14t'" in job_error(
        "timm/resnet14t", encoder["folder"])
    assert "pretrained encoder of model 'cnn', not 'timm/resnet10t'" in job_error(f"timm/{ARCH}", gz)
    # what fits passes: the cnn from its own model file; represent.model trains nothing from pretrained
    assert config_errors_of({"classify": {"pretrained": str(gz)}}) == []
    rep_model = {"represent": {"model": str(gz), "pretrained": str(encoder["folder"])}}
    assert not [e for e in config_errors_of(rep_model) if e.startswith("config represent.pretrained")]


def test_options_a_registered_backbone_does_not_take_are_one_line_naming_the_key(tmp_path):
    from gzmorph.models import check_model_kwargs

    with pytest.raises(InputError) as err:
        create_model("cnn", 2, 32, no_such_option=1)
    assert str(err.value) == ("model_kwargs: got an unexpected keyword argument 'no_such_option' for model 'cnn' "
                              "(it takes widths, dropout)")
    with pytest.raises(InputError, match=r"^classify.model_kwargs: got an unexpected keyword argument 'x' for model "
                                         r"'resnet18' \(it takes dropout\)$"):
        check_model_kwargs("resnet18", {"x": 1}, "classify.model_kwargs")
    with pytest.raises(InputError, match=r"^represent.model_kwargs: num_classes cannot be a setting of model 'cnn'"):
        check_model_kwargs("cnn", {"num_classes": 4}, "represent.model_kwargs")
    check_model_kwargs("convnet_d3", {"width": 8, "depth": 2})
    # in the jobs, before any image is read (it was a TypeError traceback when the model was built)
    from gzmorph import classify as C
    from gzmorph.represent import RepresentConfig, fit_representation

    with pytest.raises(InputError, match=r"^classify.model_kwargs: got an unexpected keyword argument 'nope' for "
                                         r"model 'cnn' \(it takes widths, dropout\)$"):
        C.train(tmp_path / "none.parquet", tmp_path / "none", tmp_path / "model.pt", kind="flat",
                model_kwargs={"nope": 1}, progress=False)
    with pytest.raises(InputError, match=r"^represent.model_kwargs: got an unexpected keyword argument 'nope'"):
        fit_representation(np.zeros((8, 16, 16, 3), np.uint8), np.zeros((8, 37)),
                           RepresentConfig(model_kwargs={"nope": 1}, progress=False))
