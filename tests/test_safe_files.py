"""Files gzmorph reads cannot run code (issue 14).

Model files (classifier and representation ``model.pt``, ``experts/*.pt``, ``synthetic.pt``) are
safetensors files written by :func:`gzmorph.io.save_bundle`; a pickle under any of those names is
refused unread with one line naming the file.  Training checkpoints stay torch files but are
read weights-only, so a crafted one is set aside as unreadable.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import shlex
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import gzmorph
import gzmorph.train as train_module
from gzmorph.classify import MODEL_FORMAT as CLASSIFIER_FORMAT
from gzmorph.classify import load_model
from gzmorph.distill import SYNTHETIC_FORMAT, load_synthetic
from gzmorph.experts import EXPERT_FORMAT, Data, ExpertConfig, load_expert, train_expert
from gzmorph.io import BUNDLE_HEADER_KEY, InputError, load_bundle, save_bundle
from gzmorph.represent import MODEL_FORMAT as REPRESENTATION_FORMAT
from gzmorph.represent import load_representation
from gzmorph.train import fit, load_checkpoint

torch.set_num_threads(1)


class Payload:
    """Unpickling this runs ``touch <marker>``: what a crafted model file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def write_crafted(path, marker, how: str = "torch") -> None:
    """A crafted file at ``path``: ``torch.save``'s zip (as old gzmorph model files) or a bare pickle."""
    if how == "torch":
        torch.save({"format": CLASSIFIER_FORMAT, "levels": Payload(marker)}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(Payload(marker), f, protocol=2)


def one_line_naming(err: str, path) -> bool:
    return "\n" not in err.strip() and str(path) in err


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "pwned"
    yield m


def test_the_crafted_file_really_runs_code_when_unpickled(tmp_path, marker):
    """The payload works: what the other tests see not happening would happen with weights_only=False."""
    for how in ("torch", "pickle"):
        write_crafted(tmp_path / f"{how}.pt", marker, how)
        with open(tmp_path / f"{how}.pt", "rb") as f:
            torch.load(f, weights_only=False) if how == "torch" else pickle.load(f)
        assert marker.exists(), how
        marker.unlink()


LOADERS = {
    "classifier": (lambda p: load_model(p, device="cpu"), "classifier model file", "train_classifier"),
    "representation": (lambda p: load_representation(p, "cpu"), "representation model file",
                       "train_representation"),
    "expert": (load_expert, "expert trajectory", "train_expert"),
    "synthetic": (load_synthetic, "synthetic set", "distill"),
}


@pytest.mark.parametrize("how", ["torch", "pickle"])
@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_a_pickled_model_file_is_refused_unread(tmp_path, marker, kind, how):
    load, what, rule = LOADERS[kind]
    path = tmp_path / "model.pt"
    write_crafted(path, marker, how)
    with pytest.raises(InputError) as info:
        load(path)
    msg = str(info.value)
    assert not marker.exists()
    assert one_line_naming(msg, path), msg
    assert f"not a gzmorph {what}: a pickled file" in msg
    assert msg.endswith(f"give a {what} written by this gzmorph (in the workflow: snakemake --forcerun {rule})"), \
        msg  # for the console commands' users too


def test_gzmorph_classify_refuses_a_crafted_model(tmp_path, marker):
    from PIL import Image

    path = tmp_path / "model.pt"
    write_crafted(path, marker)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "1.png")
    proc = subprocess.run([sys.executable, "-m", "gzmorph.cli", "classify", str(path), str(tmp_path / "1.png"),
                           "-o", str(tmp_path / "pred.parquet")], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert not marker.exists() and not (tmp_path / "pred.parquet").exists()
    err = proc.stderr.strip()
    assert one_line_naming(err, path), err
    assert err.startswith("gzmorph classify: error: ") and "snakemake --forcerun train_classifier" in err


@pytest.mark.parametrize("content, reason", [(b"", "the file is empty"), (b"x", "not a safetensors file"),
                                             (b"GIF89a" + bytes(100), "not a safetensors file")])
def test_other_files_are_one_line_too(tmp_path, content, reason):
    path = tmp_path / "synthetic.pt"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_synthetic(path)
    msg = str(info.value)
    assert one_line_naming(msg, path) and f"synthetic set cannot be read: {reason}" in msg
    assert msg.endswith("give a synthetic set written by this gzmorph (in the workflow: snakemake --forcerun "
                        "distill)")


def test_truncated_foreign_and_wrong_format_files(tmp_path):
    path = tmp_path / "model.pt"
    save_bundle(path, {"weights": torch.ones(1000), "classes": ["a"]}, EXPERT_FORMAT)
    with pytest.raises(InputError, match=r"not a gzmorph classifier model file \(gzmorph.expert/1\)"):
        load_model(path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(InputError) as info:
        load_expert(path)
    assert one_line_naming(str(info.value), path) and "expert trajectory cannot be read (" in str(info.value)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path))  # a safetensors file, but not gzmorph's
    with pytest.raises(InputError, match="without a gzmorph header.*forcerun train_representation"):
        load_representation(path)


# --------------------------------------------------------------------------- checkpoints


def tiny_fit(ckdir, epochs=2):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    return fit(model, nn.CrossEntropyLoss(), (x, y), (x[:8], y[:8]), epochs=epochs, batch_size=8,
               scheduler=train_module.cosine_schedule(2), checkpoint_dir=ckdir, meta={"model": "mlp"},
               progress=False, device="cpu")


def test_checkpoints_load_weights_only(tmp_path):
    result = tiny_fit(tmp_path)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "state", "meta"} <= set(ck)
    assert ck["state"]["epoch"] == 2 and ck["state"]["history"] == result.history
    assert isinstance(ck["rng"]["numpy"]["key"], list) and len(ck["rng"]["numpy"]["key"]) == 624
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == result.best_epoch
    assert load_checkpoint(tmp_path / "last.pt", result.meta) is not None


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_a_crafted_checkpoint_is_set_aside(tmp_path, marker, caplog, how):
    last = tmp_path / "last.pt"
    write_crafted(last, marker, how)
    with caplog.at_level(logging.WARNING, logger="gzmorph.train"):
        assert load_checkpoint(last, {}) is None
    assert not marker.exists()
    (record,) = [r for r in caplog.records if r.name == "gzmorph.train"]
    msg = record.getMessage()
    assert one_line_naming(msg, last) and "unreadable checkpoint (refused by the weights-only loader: " in msg
    assert "posix.system" in msg and "weights_only" not in msg  # the reason, not torch's advice to run it
    # fit over it: trains from scratch, never runs the file
    write_crafted(last, marker, how)
    tiny_fit(tmp_path, epochs=1)
    assert not marker.exists()


@pytest.fixture(scope="module")
def tiny_data():
    g = torch.Generator().manual_seed(0)
    n = 24
    y = torch.arange(n) % 3
    x = (torch.rand(n, 8, 8, 3, generator=g) * 255).to(torch.uint8)
    return Data(["a", "b", "c"], x[:18], y[:18], x[18:], y[18:], [0.5] * 3, [0.3] * 3, 8, "tiny")


def test_expert_resume_never_runs_a_crafted_work_file(tmp_path, tiny_data, marker, monkeypatch, caplog):
    cfg = ExpertConfig(epochs=2, lr=0.05, batch_size=8, width=4, train_eval_images=8)
    fresh = train_expert(tiny_data, tmp_path / "fresh.pt", cfg, index=0)
    work = tmp_path / "e.work"
    for name in ("last.pt", "trajectory.pt"):
        with monkeypatch.context() as m:  # a killed run: its work folder left behind
            m.setattr(train_module, "discard_checkpoints", lambda d: None)
            train_expert(tiny_data, tmp_path / "e.pt", ExpertConfig(**{**cfg.__dict__, "epochs": 1}), index=0,
                         work_dir=work)
        write_crafted(work / name, marker)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            again = train_expert(tiny_data, tmp_path / "e.pt", cfg, index=0, work_dir=work)
        assert not marker.exists(), name
        (record,) = [r for r in caplog.records if r.name == "gzmorph.experts"]
        assert "training from scratch" in record.getMessage() and "\n" not in record.getMessage(), caplog.text
        assert torch.equal(again["trajectory"], fresh["trajectory"]), name


# --------------------------------------------------------------------------- the file format


def nested_bundle():
    dtypes = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
              torch.int8, torch.uint8, torch.bool]
    shared = torch.arange(12.0)
    return {
        "format": CLASSIFIER_FORMAT,
        "classes": ["round", "edge-on"],
        "levels": [{"name": "flat", "state_dict": {str(d).removeprefix("torch."): (torch.arange(6) % 3).to(d)
                                                   .reshape(2, 3) for d in dtypes},
                    "model_config": {"name": "cnn", "widths": (4, 8), "dropout": 0.1, "bias": True, "extra": None}}],
        "norm": {"mean": [0.1, 0.2, 0.3], "std": (0.5, 0.5, 0.5)},
        "scalars": {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "big": 2 ** 70, "s": "é ∑"},
        "numpy": {"f4": np.linspace(0, 1, 5, dtype=np.float32), "i8": np.arange(6, dtype=np.int64).reshape(2, 3),
                  "u2": np.arange(3, dtype=np.uint16), "bool": np.array([True, False]),
                  "be": np.arange(3, dtype=">f8"), "str": np.array(["a", "bcd"]), "c8": np.array([1 + 2j], np.complex64),
                  "empty": np.zeros((0, 4), np.float32)},
        "numpy_scalars": [np.float64(1.5), np.float32(np.nan), np.int64(-3), np.uint8(7), np.bool_(True), np.str_("x")],
        "keys": {1: "one", (2, "b"): "tuple", "$tensor": "a dollar key", None: 0},
        "tensors": {"scalar": torch.tensor(0.05), "empty": torch.zeros(0, 3), "view": shared[2:5],
                    "strided": shared.reshape(3, 4).t(), "whole": shared, "grad": torch.ones(2, requires_grad=True)},
        "history": [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": None}],
    }


def same(a, b) -> bool:
    """Equal values of the same types (NaN equals NaN), recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.detach(), b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, (float, np.floating)) and math.isnan(a):
        return math.isnan(b) and (not isinstance(a, np.generic) or a.dtype == b.dtype)
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a == b
    return a == b


def test_bundle_round_trip(tmp_path):
    bundle = nested_bundle()
    path = tmp_path / "model.pt"
    save_bundle(path, bundle, CLASSIFIER_FORMAT)
    back = load_bundle(path, CLASSIFIER_FORMAT, "classifier model file")
    assert same(bundle, back)
    assert not back["tensors"]["grad"].requires_grad
    assert not [p for p in tmp_path.iterdir() if p.name != "model.pt"]  # no temporary file left


def test_header_is_readable_json_with_the_versions(tmp_path):
    import safetensors
    from safetensors.torch import load_file

    path = tmp_path / "model.pt"
    bundle = nested_bundle()
    save_bundle(path, bundle, CLASSIFIER_FORMAT)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    st_header = json.loads(raw[8:8 + n])  # the safetensors header: plain JSON
    header = json.loads(st_header["__metadata__"][BUNDLE_HEADER_KEY])
    assert header["format"] == CLASSIFIER_FORMAT
    assert header["versions"] == {"gzmorph": gzmorph.__version__, "torch": torch.__version__,
                                  "safetensors": safetensors.__version__}
    assert header["bundle"]["classes"] == ["round", "edge-on"]  # readable without gzmorph
    assert header["bundle"]["levels"][0]["model_config"]["name"] == "cnn"
    assert header["bundle"]["levels"][0]["state_dict"]["float32"] == {"$tensor": "levels/0/state_dict/float32"}
    assert st_header["levels/0/state_dict/bfloat16"]["dtype"] == "BF16"
    # any safetensors reader gets the weights
    weights = load_file(str(path))
    assert torch.equal(weights["levels/0/state_dict/int64"], bundle["levels"][0]["state_dict"]["int64"])


def test_what_cannot_be_stored_is_named_and_nothing_is_written(tmp_path):
    path = tmp_path / "model.pt"
    with pytest.raises(TypeError, match=r"levels/0/fn: cannot store a function"):
        save_bundle(path, {"levels": [{"fn": lambda: 0}]}, CLASSIFIER_FORMAT)
    with pytest.raises(TypeError, match=r"a: cannot store a numpy array of dtype object"):
        save_bundle(path, {"a": np.array([{}], dtype=object)}, CLASSIFIER_FORMAT)
    with pytest.raises(ValueError, match="format"):
        save_bundle(path, {"format": SYNTHETIC_FORMAT}, CLASSIFIER_FORMAT)
    assert not list(tmp_path.iterdir())


def test_real_writers_use_the_format(tmp_path, tiny_data):
    """An expert file as train_expert writes it is a gzmorph safetensors file; its loader reads it."""
    path = tmp_path / "expert_000.pt"
    out = train_expert(tiny_data, path, ExpertConfig(epochs=1, lr=0.05, batch_size=8, width=4, train_eval_images=8))
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert json.loads(json.loads(raw[8:8 + n])["__metadata__"][BUNDLE_HEADER_KEY])["format"] == EXPERT_FORMAT
    back = load_expert(path)
    assert same(out, back)
    assert REPRESENTATION_FORMAT != CLASSIFIER_FORMAT  # the two model.pt kinds are told apart by the header
