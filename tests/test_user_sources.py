"""End-to-end (issue 13, must-show 1): users' own galaxies through the real snakemake command.

A table source whose catalogue has string ids and FITS images that the test writes (3-band cubes,
two shapes of galaxy, no vote fractions) is curated by its label column, classified (flat),
distilled (MTT and STM, the default preset), embedded and searched for similar galaxies with a
representation trained elsewhere (on synthetic galaxies, named in represent.model); the ids are
unchanged in every output, the report included, and the report says why the stages that need vote
fractions did not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workdirs import copy_workflow, own_library

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e




def smk(workdir: Path, config: dict, *args, check: bool = True):
    (workdir / "test-config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config.yaml", "test-config.yaml",
           *args]
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900,
                         env=own_library({**os.environ, "PYTHONUNBUFFERED": "1"}, workdir))
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    return out


def write_fits_set(root: Path, n: int = 48, size: int = 40, seed: int = 1) -> list[str]:
    """``n`` 3-band FITS cubes named by string ids, half round and half elongated (edge-on-like),
    and ``catalogue.csv`` with the ids (some look like numbers with leading zeros), labels and paths."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    (root / "cutouts").mkdir(parents=True)
    y, x = np.mgrid[:size, :size] - size / 2
    ids, labels = [], []
    for i in range(n):
        gid = f"{i:04d}" if i % 3 == 0 else f"SDSS J{i:03d}+{(7 * i) % 100:02d}.5"
        kind = ("round", "edge-on")[i % 2]
        sx, sy = (4.0, 4.0) if kind == "round" else (9.0, 1.6)
        angle = rng.uniform(0, np.pi)
        xr, yr = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
        blob = np.exp(-(xr**2 / (2 * sx**2) + yr**2 / (2 * sy**2)))
        cube = np.stack([a * blob + rng.normal(0, 0.02, blob.shape) for a in (1.0, 0.8, 0.5)]).astype(np.float32)
        fits.PrimaryHDU(cube).writeto(root / "cutouts" / f"{gid}.fits")
        ids.append(gid)
        labels.append(kind)
    pd.DataFrame({"galaxy": ids, "morphology": labels,
                  "file": [f"cutouts/{g}.fits" for g in ids]}).to_csv(root / "catalogue.csv", index=False)
    return ids


def train_representation_elsewhere(root: Path, image_size: int) -> Path:
    """A representation trained on another dataset: synthetic galaxies with votes, 1 epoch."""
    from gzmorph.imageset import write_images
    from gzmorph.preprocess import preprocess_images
    from gzmorph.represent import train_representation
    from gzmorph.sources import read_source
    from gzmorph.sources.synthetic import generate

    data = generate(root / "synthetic", n=40, seed=3, stamp_size=96, workers=1, progress=False)
    table = read_source("synthetic", data)
    table.to_parquet(root / "source.parquet", index=False)
    images, bad = preprocess_images(table["image_path"], image_size, 0.5, workers=1, progress=False)
    assert not bad
    write_images(root / "images.parquet", table["id"].to_numpy(), images)
    out = root / "representation.pt"
    train_representation(root / "images.parquet", root / "source.parquet", out, epochs=1, batch_size=16,
                         device="cpu", progress=False, seed=0)
    return out


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("user")
    ids = write_fits_set(base / "mine")
    model = train_representation_elsewhere(base / "elsewhere", 32)
    wd = copy_workflow(base / "run")
    config = {
        "source": "table", "data_dir": str(base / "mine"), "cut": "morph", "dataset": "mine",
        "cuts": {"morph": {"kind": "label", "column": "morphology"}},
        "table": {"catalogue": "catalogue.csv", "id_column": "galaxy", "image_column": "file",
                  "label_columns": ["morphology"], "fits": {"bands": 3, "stretch": 0.5, "Q": 8}},
        "image_size": 32, "stages": ["classify", "distill", "represent"], "report": {"examples_per_class": 4},
        "classify": {"models": ["flat"], "epochs": 2, "patience": 0},
        "represent": {"model": str(model), "similarity": {"k": 5}},
    }
    smk(wd, config)
    return wd / "results" / "mine", ids, model


def test_ids_are_unchanged_in_every_output(user_run):
    from gzmorph.curate import read_catalogue
    from gzmorph.imageset import read_images
    from gzmorph.represent import read_embeddings

    res, ids, _ = user_run
    every = set(ids)
    assert any(i.startswith("0") for i in ids)  # "0003" must not become 3
    source = pd.read_parquet(res / "source" / "catalogue.parquet")
    assert source["id"].tolist() == ids and pd.api.types.is_string_dtype(source["id"])
    cat, classes = read_catalogue(res / "curated" / "catalogue.parquet")
    assert sorted(classes) == ["edge-on", "round"] and set(cat["id"]) == every
    assert pd.api.types.is_string_dtype(cat["id"]) and set(cat["split"]) == {"train", "val", "test"}
    assert dict(zip(cat["id"], cat["label_name"])) == dict(zip(source["id"], source["morphology"]))
    store_ids, images = read_images(res / "curated" / "images.parquet")
    assert set(store_ids) == every and images.shape[1:] == (32, 32, 3) and images.max() > 0
    pred = pd.read_parquet(res / "classify" / "flat" / "predictions.parquet")
    assert set(pred["id"]) <= every and set(pred["id"]) == set(cat.loc[cat["split"] == "test", "id"])
    emb_ids, vec = read_embeddings(res / "embed" / "embeddings.parquet")
    assert set(emb_ids) == every and len(vec) == len(ids)
    assert set(pd.read_parquet(res / "embed" / "map.parquet")["id"]) == every
    nb = pd.read_parquet(res / "similarity" / "neighbours.parquet")
    assert set(nb["query_id"]) <= every and set(nb["neighbour_id"]) <= every
    metrics = json.loads((res / "similarity" / "metrics.json").read_text())
    assert set(metrics["query_ids"]) <= every and all(isinstance(q, str) for q in metrics["query_ids"])
    assert metrics["n_labelled"] == len(ids)
    html = (res / "report" / "index.html").read_text()
    import html as _html

    for q in metrics["query_ids"]:
        assert _html.escape(q) in html, q


def test_stages_ran_as_the_data_allow_and_the_report_says_why(user_run):
    from gzmorph.distill import load_synthetic

    res, _, model = user_run
    assert (res / "classify" / "flat" / "metrics.json").exists()
    assert not (res / "classify" / "hiwl").exists()  # not the hiwl5 cut
    assert not (res / "anomalies").exists() and not (res / "finetune").exists()
    for method in ("mtt", "stm"):  # distillation runs on the label cut of a catalogue with string ids
        rec = json.loads((res / "distill" / method / "ipc1" / "eval.json").read_text())
        assert rec["method"] == method and rec["ipc"] == 1 and 0 <= rec["accuracy_mean"] <= 1
        syn = load_synthetic(res / "distill" / method / "ipc1" / "synthetic.pt")
        assert syn["classes"] == ["edge-on", "round"] and tuple(syn["images"].shape[:2]) == (2, 3)
    assert (res / "represent" / "model.pt").read_bytes() == Path(model).read_bytes()
    assert not (res / "represent" / "checkpoints").exists()
    html = (res / "report" / "index.html").read_text()
    assert 'id="stages"' in html and 'id="represent-embeddings"' in html and 'id="represent-similarity"' in html
    assert 'id="distillation"' in html
    assert "Class6.1" in html and "represent.model" in html


def test_a_second_run_has_nothing_to_do(user_run):
    res, _, _ = user_run
    wd = res.parent.parent
    out = smk(wd, yaml.safe_load((wd / "test-config.yaml").read_text()), "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.parametrize("case, message", [
    ("clash", "sources 'a' and 'b' both have the id 5"),
    ("nested", "a folder inside the class folder 'round'"),
    ("one_class_only", "class 'spiral' exists in source 'a' only (cut 'folders'), not in 'b'"),
])
def test_bad_sources_fail_with_one_clear_error_and_no_output(tmp_path, case, message):
    from PIL import Image

    for src, names in (("a", ("5", "6")), ("b", ("5" if case == "clash" else "7", "8"))):
        for cls, name in zip(("round", "bar" if case == "one_class_only" and src == "b" else "spiral"), names):
            (tmp_path / src / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16)).save(tmp_path / src / cls / f"{name}.png")
    if case == "nested":
        (tmp_path / "a" / "round" / "extra").mkdir()
    wd = copy_workflow(tmp_path / "run")
    config = {"dataset": "bad", "cut": "folders", "cuts": {"folders": {"kind": "label", "column": "class"}},
              "stages": ["classify"],
              "sources": {s: {"source": "table", "data_dir": str(tmp_path / s), "table": {"layout": "folder"}}
                          for s in ("a", "b")}}
    out = smk(wd, config, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and message in text, text[-3000:]
    done = wd / "results" / "bad"
    written = {p.relative_to(done).as_posix() for p in done.rglob("*") if p.is_file()} if done.exists() else set()
    # nothing that looks complete: no curated output; a bad source leaves no source table either
    assert not {w for w in written if w.startswith(("curated/", "classify/", "report/"))}, written
    if case != "one_class_only":
        assert "source/catalogue.parquet" not in written, written
    else:
        assert "2 such class(es): ['spiral', 'bar']" in text
