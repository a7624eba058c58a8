"""Reader (and downloader wiring) of the Zoobot GZ2 release, on a tiny fixture in the real layout."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gzmorph.download import GZ2_FILES, RemoteFile
from gzmorph.io import InputError
from gzmorph.sources.gz2_download import download_gz2
from gzmorph.sources.gz2_remote import ZOOBOT_COUNT_COLUMNS, read_gz2_remote
from gzmorph.tree import GZ2_TREE, KAGGLE_COLUMNS

# question -> answers, in the order of galaxy-datasets' label_metadata.gz2_ortho_pairs
ORTHO_PAIRS = {
    "smooth-or-featured-gz2": ["_smooth", "_featured-or-disk", "_artifact"],
    "disk-edge-on-gz2": ["_yes", "_no"],
    "has-spiral-arms-gz2": ["_yes", "_no"],
    "bar-gz2": ["_yes", "_no"],
    "bulge-size-gz2": ["_dominant", "_obvious", "_just-noticeable", "_no"],
    "something-odd-gz2": ["_yes", "_no"],
    "how-rounded-gz2": ["_round", "_in-between", "_cigar"],
    "bulge-shape-gz2": ["_round", "_boxy", "_no-bulge"],
    "spiral-winding-gz2": ["_tight", "_medium", "_loose"],
    "spiral-arm-count-gz2": ["_1", "_2", "_3", "_4", "_more-than-4", "_cant-tell"],
}
COUNT_COLS = [q + a for q, answers in ORTHO_PAIRS.items() for a in answers]
IDS = [587722981741363294, 588009368545984617, 587732484359913515]


def _jpeg_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _catalogue(ids, seed=0) -> pd.DataFrame:
    """A catalogue with the column layout of the released gz2_*_catalog.parquet."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"ra": rng.uniform(0, 360, len(ids)), "dec": rng.uniform(-10, 70, len(ids))})
    for c in COUNT_COLS:
        df[c] = rng.integers(0, 30, len(ids)).astype(np.int64)
    for q, answers in ORTHO_PAIRS.items():  # as gz2_a_modernize.ipynb computes them
        df[q + "_total-votes"] = df[[q + a for a in answers]].sum(axis=1)
        for a in answers:
            df[q + a + "_fraction"] = df[q + a] / df[q + "_total-votes"]
    sub = [str(i)[:6] for i in ids]
    df["file_loc"] = [f"/home/walml/repos/galaxy-datasets/roots/gz2/images/{s}/{i}.jpg" for s, i in zip(sub, ids)]
    df["subfolder"] = sub
    df["iauname"] = [f"J{i:06d}.00+000000.0" for i in range(len(ids))]
    for q in ORTHO_PAIRS:
        df[q + "_semantic"] = "-"
    df["summary"] = "smooth_round"
    df["leaf_prob"] = 0.5
    df["label"] = 1
    df["id_str"] = np.asarray(ids, dtype=np.int64)
    df["filename"] = [f"{i}.jpg" for i in ids]
    return df


@pytest.fixture
def gz2_dir(tmp_path):
    d = tmp_path / "gz2"
    d.mkdir()
    train = _catalogue(IDS[:2], seed=1)
    # galaxy with nobody reaching the spiral questions, and an all-zero row for Q1
    for c in COUNT_COLS:
        if c.startswith(("spiral-winding", "spiral-arm-count")):
            train.loc[1, c] = 0
    train.to_parquet(d / "gz2_train_catalog.parquet", index=False)
    _catalogue(IDS[2:], seed=2).to_parquet(d / "gz2_test_catalog.parquet", index=False)
    for k, i in enumerate(IDS):
        p = d / "images" / str(i)[:6] / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_jpeg_bytes(k))
    return d


def test_mapping_covers_the_real_count_columns():
    assert sorted(ZOOBOT_COUNT_COLUMNS.values()) == sorted(COUNT_COLS)
    tree_answers = set(GZ2_TREE.gz2_columns)
    assert set(ZOOBOT_COUNT_COLUMNS) <= tree_answers
    # only question 8 is absent from the Zoobot catalogue
    assert {a for a in tree_answers - set(ZOOBOT_COUNT_COLUMNS)} == \
        {a.gz2 for a in GZ2_TREE.question(8).answers}


def test_read_standard_table(gz2_dir):
    df = read_gz2_remote(gz2_dir)
    assert list(df.columns[:2]) == ["id", "image_path"]
    assert list(df.columns[2:39]) == KAGGLE_COLUMNS
    assert df["id"].dtype == np.int64
    assert df["id"].tolist() == IDS  # exact: no float round trip
    assert df["zoobot_split"].tolist() == ["train", "train", "test"]
    for p, i in zip(df["image_path"], IDS):
        assert Path(p).is_absolute() and Path(p).is_file()
        assert p.endswith(f"images/{str(i)[:6]}/{i}.jpg")
    for c in COUNT_COLS:  # raw counts kept as they are
        assert c in df.columns and df[c].dtype == np.int64
    assert "id_str" not in df.columns and "file_loc" not in df.columns
    assert df["Class8.1"].isna().all() and df["Class8.7"].isna().all()

    raw = pd.read_parquet(gz2_dir / "gz2_train_catalog.parquet")
    r = raw.iloc[0]
    t1 = r["smooth-or-featured-gz2_smooth"] + r["smooth-or-featured-gz2_featured-or-disk"] + \
        r["smooth-or-featured-gz2_artifact"]
    smooth = r["smooth-or-featured-gz2_smooth"] / t1
    featured = r["smooth-or-featured-gz2_featured-or-disk"] / t1
    t7 = sum(r[f"how-rounded-gz2{a}"] for a in ORTHO_PAIRS["how-rounded-gz2"])
    t2 = r["disk-edge-on-gz2_yes"] + r["disk-edge-on-gz2_no"]
    t3 = r["bar-gz2_yes"] + r["bar-gz2_no"]
    g = df.iloc[0]
    assert g["Class1.1"] == pytest.approx(smooth)
    assert g["Class7.1"] == pytest.approx(smooth * r["how-rounded-gz2_round"] / t7)
    not_edge_on = featured * r["disk-edge-on-gz2_no"] / t2
    assert g["Class2.2"] == pytest.approx(not_edge_on)
    assert g["Class3.1"] == pytest.approx(not_edge_on * r["bar-gz2_yes"] / t3)
    t6 = r["something-odd-gz2_yes"] + r["something-odd-gz2_no"]
    assert g["Class6.1"] == pytest.approx(r["something-odd-gz2_yes"] / t6)  # Q6 reach is 1 (Kaggle)
    # the question sums equal the reach, for every question the catalogue has
    known = [c for c in KAGGLE_COLUMNS if not c.startswith("Class8.")]
    viol = GZ2_TREE.sum_violations(df[KAGGLE_COLUMNS].fillna(0.0), tol=1e-9)
    assert viol[viol["question"] != 8].empty
    assert np.isfinite(df[known].to_numpy()).all()


def test_nobody_answered_gives_zero(gz2_dir):
    df = read_gz2_remote(gz2_dir, splits=["train"])
    spiral = [f"Class10.{i}" for i in (1, 2, 3)] + [f"Class11.{i}" for i in range(1, 7)]
    assert (df.loc[1, spiral] == 0).all()


def test_missing_answers_fill_value(gz2_dir):
    df = read_gz2_remote(gz2_dir, missing_answers=0.0)
    assert (df[[f"Class8.{i}" for i in range(1, 8)]] == 0).all().all()


def test_string_ids_are_exact(gz2_dir):
    f = gz2_dir / "gz2_test_catalog.parquet"
    raw = pd.read_parquet(f)
    raw["id_str"] = raw["id_str"].astype(str)
    raw.to_parquet(f, index=False)
    df = read_gz2_remote(gz2_dir)
    assert df["id"].tolist() == IDS


def test_image_path_from_file_loc_when_no_filename(gz2_dir):
    f = gz2_dir / "gz2_train_catalog.parquet"
    pd.read_parquet(f).drop(columns=["filename", "subfolder"]).to_parquet(f, index=False)
    df = read_gz2_remote(gz2_dir, splits=["train"])
    assert all(Path(p).is_file() for p in df["image_path"])
    assert str(gz2_dir) in df["image_path"].iloc[0]  # not the author's /home/walml path


def test_missing_columns_named(gz2_dir):
    f = gz2_dir / "gz2_train_catalog.parquet"
    pd.read_parquet(f).drop(columns=["bar-gz2_yes", "id_str"]).to_parquet(f, index=False)
    with pytest.raises(InputError) as info:
        read_gz2_remote(gz2_dir)
    msg = str(info.value)
    assert "gz2_train_catalog.parquet" in msg and "'bar-gz2_yes'" in msg and "'id_str'" in msg


def test_missing_catalogue_named(gz2_dir):
    (gz2_dir / "gz2_test_catalog.parquet").unlink()
    with pytest.raises(InputError, match="gz2_test_catalog.parquet.*download_gz2"):
        read_gz2_remote(gz2_dir)
    assert len(read_gz2_remote(gz2_dir, splits=["train"])) == 2


def test_bad_count_named(gz2_dir):
    f = gz2_dir / "gz2_test_catalog.parquet"
    raw = pd.read_parquet(f)
    raw["bar-gz2_no"] = -1
    raw.to_parquet(f, index=False)
    with pytest.raises(InputError, match=r"gz2_test_catalog.parquet: row 0, column 'bar-gz2_no'"):
        read_gz2_remote(gz2_dir)


def test_duplicate_ids_named(gz2_dir):
    f = gz2_dir / "gz2_test_catalog.parquet"
    raw = pd.read_parquet(f)
    raw["id_str"] = IDS[0]
    raw.to_parquet(f, index=False)
    with pytest.raises(InputError, match=f"duplicate id_str {IDS[0]}.*gz2_train_catalog.parquet row 0.*"
                                         f"gz2_test_catalog.parquet row 0"):
        read_gz2_remote(gz2_dir)


def test_missing_images_named(gz2_dir):
    (gz2_dir / "images" / str(IDS[2])[:6] / f"{IDS[2]}.jpg").unlink()
    with pytest.raises(InputError, match=rf"1 of 3 GZ2 images not found.*{IDS[2]}\.jpg"):
        read_gz2_remote(gz2_dir)
    assert len(read_gz2_remote(gz2_dir, check_images=False)) == 3


def test_unreadable_parquet_named(gz2_dir):
    (gz2_dir / "gz2_train_catalog.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="gz2_train_catalog.parquet: not a readable parquet"):
        read_gz2_remote(gz2_dir)


# ------------------------------------------------- download_gz2 against a local mirror
@pytest.fixture
def mirror(tmp_path):
    """A static HTTP server on 127.0.0.1 serving a fake release built from the fixture layout."""
    root = tmp_path / "mirror"
    root.mkdir()
    _catalogue(IDS[:2], seed=1).to_parquet(root / "gz2_train_catalog.parquet", index=False)
    _catalogue(IDS[2:], seed=2).to_parquet(root / "gz2_test_catalog.parquet", index=False)
    with tarfile.open(root / "images_gz2.tar.gz", "w:gz") as tf:
        for k, i in enumerate(IDS):
            data = _jpeg_bytes(k)
            info = tarfile.TarInfo(f"images/{str(i)[:6]}/{i}.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    files = {}
    for name in ("gz2_train_catalog.parquet", "gz2_test_catalog.parquet", "images_gz2.tar.gz"):
        md5 = hashlib.md5((root / name).read_bytes()).hexdigest()
        files[name] = RemoteFile(name, (f"http://{host}:{port}/{name}",), md5=md5)
    try:
        yield files
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_download_then_read(mirror, tmp_path):
    dest = tmp_path / "data"
    fast = dict(retries=1, timeout=2, backoff=0.01)
    assert download_gz2(dest, files=mirror, progress=False, **fast) == dest
    assert (dest / ".images_gz2.tar.gz.extracted").exists()
    df = read_gz2_remote(dest)
    assert df["id"].tolist() == IDS
    assert all(Path(p).is_file() for p in df["image_path"])
    # everything present and verified: a second call needs no network at all
    offline = {n: f.with_urls("http://127.0.0.1:9/unreachable") for n, f in mirror.items()}
    download_gz2(dest, files=offline, progress=False, **fast)
    # without the archive (keep_archive=False), the extraction marker stands for it
    download_gz2(dest, files=mirror, progress=False, keep_archive=False, **fast)
    assert not (dest / "images_gz2.tar.gz").exists()
    download_gz2(dest, files=offline, progress=False, **fast)
    assert len(read_gz2_remote(dest)) == 3


def test_download_without_images(mirror, tmp_path):
    dest = tmp_path / "data"
    download_gz2(dest, files=mirror, include_images=False, progress=False, retries=0, timeout=2)
    assert sorted(p.name for p in dest.iterdir()) == ["gz2_test_catalog.parquet", "gz2_train_catalog.parquet"]
    df = read_gz2_remote(dest, check_images=False)
    assert len(df) == 3


def test_registry_is_what_download_uses():
    for name in ("gz2_train_catalog.parquet", "gz2_test_catalog.parquet", "images_gz2.tar.gz"):
        assert GZ2_FILES[name].urls[0].startswith("https://dl.dropboxusercontent.com/s/")
        assert GZ2_FILES[name].md5
