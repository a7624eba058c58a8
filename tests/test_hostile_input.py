"""Hostile and careless input (issue 15): archives that try to write outside their destination,
images that would exhaust memory, catalogues in every shape they are distributed in, and the
temporary files a killed job leaves behind."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from gzmorph.download import ArchiveError, extract


# ----------------------------------------------------------------- archives
def _tar(path: Path, members: list[tuple]) -> Path:
    """``members``: (name, bytes) files, ("sym"|"hard", name, linkname) links, ("dir", name),
    ("chr"|"blk"|"fifo", name) special files."""
    kinds = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "dir": tarfile.DIRTYPE,
             "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m[1], bytes):
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
                continue
            info = tarfile.TarInfo(m[1])
            info.type = kinds[m[0]]
            if m[0] in ("sym", "hard"):
                info.linkname = m[2]
            tf.addfile(info)
    return path


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


GOOD = ("images/ok.jpg", b"ok")

HOSTILE_TARS = {
    "absolute": ([GOOD, ("/abs/escape.txt", b"x")], "/abs/escape.txt"),
    "dotdot": ([GOOD, ("images/../../escape.txt", b"x")], "images/../../escape.txt"),
    "symlink out": ([GOOD, ("sym", "images/link", "../../escape.txt")], "images/link"),
    "absolute symlink": ([GOOD, ("sym", "images/link", "/etc/passwd")], "images/link"),
    # sub/l -> .. is the destination itself; sub/l/m is then written at the top, so its ".." leaves
    "chain: member written through an inner link": (
        [GOOD, ("sym", "sub/l", ".."), ("sym", "sub/l/m", ".."), ("m/escape.txt", b"x")], "sub/l/m"),
    "chain: link to a link ending outside": (
        [GOOD, ("dir", "d"), ("sym", "d/up", ".."), ("sym", "x", "d/up/..")], "x"),
    "chain: a file written through links": (
        [GOOD, ("sym", "a", "b"), ("sym", "b", "."), ("sym", "c", "a/.."), ("c/escape.txt", b"x")], "c"),
    "hardlink out": ([GOOD, ("hard", "images/h", "../escape.txt")], "images/h"),
    "hardlink through an inner link": (
        [GOOD, ("sym", "sub/l", ".."), ("hard", "h", "sub/l/../secret")], "h"),
    "character device": ([GOOD, ("chr", "dev/tty0")], "dev/tty0"),
    "block device": ([GOOD, ("blk", "dev/sda")], "dev/sda"),
    "fifo": ([GOOD, ("fifo", "images/pipe")], "images/pipe"),
    "link loop": ([GOOD, ("sym", "a", "b"), ("sym", "b", "a"), ("a/x", b"x")], "a/x"),
    "file under a file": ([GOOD, ("images/ok.jpg/x", b"x")], "images/ok.jpg/x"),
}


@pytest.mark.parametrize("case", list(HOSTILE_TARS))
def test_hostile_tar_is_refused_whole_before_any_write(tmp_path, case):
    members, culprit = HOSTILE_TARS[case]
    archive = _tar(tmp_path / "evil.tar.gz", members)
    (tmp_path / "box").mkdir()
    out = tmp_path / "box" / "out"
    with pytest.raises(ArchiveError) as err:
        extract(archive, out, progress=False)
    message = str(err.value)
    assert repr(culprit) in message and "refusing" in message and "\n" not in message
    assert _everything_under(out) == []  # not even images/ok.jpg, the first member
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["box", "evil.tar.gz"]


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/escape.txt", "images/../../escape.txt",
                                  "C:/escape.txt", "..\\escape.txt", "images\\..\\..\\escape.txt"])
def test_hostile_zip_is_refused_whole_before_any_write(tmp_path, name):
    archive = _zip(tmp_path / "evil.zip", [GOOD, (name, b"x")])
    (tmp_path / "box").mkdir()
    out = tmp_path / "box" / "out"
    with pytest.raises(ArchiveError, match="outside") as err:
        extract(archive, out, progress=False)
    assert repr(name) in str(err.value)
    assert _everything_under(out) == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["box", "evil.zip"]


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_link_already_in_the_destination_is_followed_too(tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").symlink_to(elsewhere)
    members = [("a.jpg", b"a"), ("images/b.jpg", b"b")]
    archive = _tar(tmp_path / "a.tar.gz", members) if kind == "tar" else _zip(tmp_path / "a.zip", members)
    with pytest.raises(ArchiveError, match="'images/b.jpg'.*outside"):
        extract(archive, out, progress=False)
    assert not any(elsewhere.iterdir()) and sorted(os.listdir(out)) == ["images"]


def test_benign_tar_with_inner_links_extracts(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [
        ("dir", "v1"), ("v1/a.jpg", b"a"), ("sym", "latest", "v1"), ("latest/b.jpg", b"b"),
        ("hard", "v1/a-again.jpg", "v1/a.jpg"), ("sym", "v1/up", "../v1/a.jpg")])
    out = tmp_path / "out"
    extract(archive, out, progress=False)
    assert (out / "v1/b.jpg").read_bytes() == b"b" and (out / "latest").is_symlink()
    assert (out / "v1/a-again.jpg").read_bytes() == b"a" and (out / "v1/up").read_bytes() == b"a"
    assert (out / ".ok.tar.gz.extracted").exists()


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_benign_archive_extracts(tmp_path, kind):
    members = [("./images/587722/587722981741363294.jpg", b"jpg1"), ("images/588009/x.jpg", b"jpg2")]
    archive = _tar(tmp_path / "a.tar.gz", members) if kind == "tar" else _zip(tmp_path / "a.zip", members)
    out = tmp_path / "out"
    extract(archive, out, progress=False)
    assert (out / "images/587722/587722981741363294.jpg").read_bytes() == b"jpg1"
    assert (out / "images/588009/x.jpg").read_bytes() == b"jpg2"


# ----------------------------------------------------------------- images
def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width`` × ``height`` pixels (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def _good_images(folder: Path, n: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    paths = []
    for i in range(n):
        arr = np.full((48, 48, 3), 20 + 30 * i, dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"good{i}.jpg")
        paths.append(folder / f"good{i}.jpg")
    return paths


@pytest.mark.parametrize("width,height,expect", [
    # above max_image_pixels (and above Pillow's warning limit): our limit names the size
    (10_000, 10_000, "image of 10000×10000 pixels exceeds max_image_pixels=50000000"),
    # above twice Pillow's limit: Pillow refuses before the header is returned
    (100_000, 100_000, "image too large to decode"),
])
def test_decompression_bomb_is_an_unreadable_image(tmp_path, width, height, expect):
    import warnings

    from gzmorph.io import InputError
    from gzmorph.preprocess import apply_bad_image_policy, load_image, preprocess_images

    paths = _good_images(tmp_path, 6)
    bomb = _png_claiming(tmp_path / "bomb.png", width, height)
    paths.insert(3, bomb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(InputError, match=f"^{bomb}: {expect}"):
            load_image(bomb, 16)
    images, bad = preprocess_images(paths, 16, workers=2, progress=False, chunk=2)
    assert [i for i, _ in bad] == [3] and bad[0][1].startswith(f"{bomb}: {expect}")
    assert "\n" not in bad[0][1]
    assert all(images[i].any() for i in range(7) if i != 3) and not images[3].any()
    apply_bad_image_policy(bad, len(paths), 0.2)  # 1 of 7 under 20 %: skipped and listed
    with pytest.raises(InputError, match="bomb.png"):
        apply_bad_image_policy(bad, len(paths), 0.01)


def test_max_image_pixels_is_configurable(tmp_path):
    from gzmorph.preprocess import preprocess_images

    paths = _good_images(tmp_path, 3)
    _, bad = preprocess_images(paths, 16, workers=1, progress=False, max_pixels=48 * 48)
    assert bad == []
    _, bad = preprocess_images(paths, 16, workers=1, progress=False, max_pixels=48 * 48 - 1)
    assert [msg for _, msg in bad] == [
        f"{p}: image of 48×48 pixels exceeds max_image_pixels={48 * 48 - 1}" for p in paths]


def test_any_decoder_failure_is_an_unreadable_image(tmp_path, monkeypatch):
    from PIL import Image

    from gzmorph.io import InputError
    from gzmorph.preprocess import load_image

    path = _good_images(tmp_path, 1)[0]

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("a decoder bug\non two lines")

    monkeypatch.setattr(Image.Image, "convert", broken)
    with pytest.raises(InputError, match=r"good0.jpg: cannot decode image \(ZeroDivisionError: a decoder bug on two"):
        load_image(path, 16)


# ----------------------------------------------------------------- catalogues
def _kaggle_table(n: int = 4):
    """``n`` galaxies in the Kaggle layout whose vote fractions pass every check."""
    import pandas as pd

    from gzmorph.tree import GZ2_TREE, KAGGLE_COLUMNS

    conditional = pd.DataFrame(0.0, index=range(n), columns=KAGGLE_COLUMNS)
    for q in GZ2_TREE.questions:
        conditional[q.answers[0].kaggle] = 1.0
    table = GZ2_TREE.to_cumulative(conditional)
    table.insert(0, "GalaxyID", [100008 + i for i in range(n)])
    return table


def _write_kaggle(folder: Path, form: str, table=None) -> Path:
    import gzip

    table = _kaggle_table() if table is None else table
    text = table.to_csv(index=False)
    path = folder / f"training_solutions_rev1{form}"
    if form == ".csv":
        path.write_text(text)
    elif form == ".csv.gz":
        path.write_bytes(gzip.compress(text.encode()))
    elif form == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("training_solutions_rev1.csv", text)
            zf.writestr("__MACOSX/._training_solutions_rev1.csv", b"\x00\x05junk")  # a Mac's zip
    elif form == ".parquet":
        table.to_parquet(path)
    return path


@pytest.mark.parametrize("form", [".csv", ".csv.gz", ".zip", ".parquet"])
def test_kaggle_catalogue_in_every_form_reads_the_same(tmp_path, form):
    from gzmorph.sources import read_source
    from gzmorph.sources.kaggle import find_catalogue

    path = _write_kaggle(tmp_path, form)
    assert find_catalogue(tmp_path) == path
    df = read_source("kaggle", tmp_path)
    assert df["id"].tolist() == [100008, 100009, 100010, 100011]
    assert df["image_path"].iloc[0] == str(tmp_path.resolve() / "images_training_rev1" / "100008.jpg")
    assert df["Class1.1"].tolist() == [1.0] * 4


def test_two_kaggle_catalogues_are_named(tmp_path):
    from gzmorph.io import InputError
    from gzmorph.sources import read_source

    _write_kaggle(tmp_path, ".csv")
    _write_kaggle(tmp_path, ".zip")
    with pytest.raises(InputError, match=r"2 Kaggle catalogues, training_solutions_rev1.csv and "
                                         r"training_solutions_rev1.zip; keep one"):
        read_source("kaggle", tmp_path)


@pytest.mark.parametrize("entries,listed", [
    ({}, "it holds 0 (0 entries: nothing)"),
    ({"readme.txt": "hello"}, "it holds 0 (1 entries: readme.txt)"),
    ({"a.csv": "x\n1\n", "b/training_solutions_rev1.csv": "x\n1\n"},
     "it holds 2 (2 entries: a.csv, b/training_solutions_rev1.csv)"),
])
def test_zip_without_exactly_one_csv_lists_what_is_inside(tmp_path, entries, listed):
    from gzmorph.io import InputError
    from gzmorph.sources import read_source

    with zipfile.ZipFile(tmp_path / "training_solutions_rev1.zip", "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
    with pytest.raises(InputError) as err:
        read_source("kaggle", tmp_path)
    assert str(err.value) == (f"{tmp_path.resolve() / 'training_solutions_rev1.zip'}: a zipped catalogue "
                              f"must hold exactly one .csv file; {listed}")


@pytest.mark.parametrize("form", [".csv", ".csv.gz", ".zip", ".parquet"])
def test_empty_and_header_only_catalogues_each_have_their_message(tmp_path, form):
    import gzip

    from gzmorph.io import InputError
    from gzmorph.sources import read_source

    path = tmp_path / f"training_solutions_rev1{form}"
    path.write_bytes(b"")  # empty: 0 bytes in every form
    with pytest.raises(InputError, match=r"empty file \(0 bytes\): no header line and no rows") as err:
        read_source("kaggle", tmp_path)
    assert str(err.value).startswith(str(path.resolve())) and "\n" not in str(err.value)
    if form == ".csv.gz":  # a gzip of nothing: still empty
        path.write_bytes(gzip.compress(b""))
        with pytest.raises(InputError, match=r"training_solutions_rev1.csv.gz: empty file: no header"):
            read_source("kaggle", tmp_path)
    path.unlink()
    _write_kaggle(tmp_path, form, _kaggle_table(0))  # header only
    with pytest.raises(InputError, match=r"header only, no rows \(columns GalaxyID, Class1.1") as err:
        read_source("kaggle", tmp_path)
    assert str(err.value).startswith(str(path.resolve())) and "\n" not in str(err.value)


@pytest.mark.parametrize("form,what", [(".csv.gz", "not a readable gzipped CSV"),
                                       (".zip", "not a readable zip archive"),
                                       (".parquet", "not a readable Parquet file")])
def test_corrupt_compressed_catalogue_is_named(tmp_path, form, what):
    from gzmorph.io import InputError
    from gzmorph.sources import read_source

    (tmp_path / f"training_solutions_rev1{form}").write_bytes(b"PK\x03\x04 this is not it" * 3)
    with pytest.raises(InputError, match=f"training_solutions_rev1{form}: {what}") as err:
        read_source("kaggle", tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("form", [".csv", ".csv.gz", ".zip", ".parquet"])
def test_gz2_local_catalogue_in_every_form(tmp_path, form):
    import gzip

    import pandas as pd

    from gzmorph.io import InputError
    from gzmorph.sources import read_source
    from gzmorph.tree import GZ2_TREE

    row = {"dr7objid": 587722981741363294, "asset_id": 7}
    for q in GZ2_TREE.questions:
        for j, a in enumerate(q.answers):
            row[f"{a.gz2}_weighted_fraction"] = 1.0 if j == 0 else 0.0
    table = pd.DataFrame([row, {**row, "dr7objid": 587722981741363295, "asset_id": 8}])
    path = tmp_path / f"gz2_hart16{form}"
    text = table.to_csv(index=False)
    if form == ".csv":
        path.write_text(text)
    elif form == ".csv.gz":
        path.write_bytes(gzip.compress(text.encode()))
    elif form == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("gz2_hart16.csv", text)
    else:
        table.to_parquet(path)
    df = read_source("gz2", tmp_path)
    assert df["id"].tolist() == [587722981741363294, 587722981741363295]  # exact: never through float
    assert df["image_path"].iloc[1].endswith("images/8.jpg")
    path.write_text("") if form != ".parquet" else path.write_bytes(b"")
    with pytest.raises(InputError, match=f"gz2_hart16{form}: empty file"):
        read_source("gz2", tmp_path)


@pytest.mark.parametrize("cell, message", [
    ("1e30", "GalaxyID '1e30' is not an integer"),
    ("inf", "GalaxyID 'inf' is not an integer"),
    ("18446744073709551615", "GalaxyID '18446744073709551615' is too large for a 64-bit integer"),
])
def test_kaggle_ids_that_are_no_int64_name_their_line(tmp_path, cell, message):
    """Such ids were cast through float (1e30 became -2**63, 2**64-1 became -1) or crashed."""
    from gzmorph.io import InputError
    from gzmorph.sources import read_source

    path = _write_kaggle(tmp_path, ".csv")
    lines = path.read_text().splitlines()
    lines[3] = cell + lines[3][lines[3].index(","):]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as caught:
        read_source("kaggle", tmp_path)
    assert str(caught.value) == f"{path}: line 4: {message}"


def test_gz2_ids_stay_exact_when_one_cell_is_written_as_a_float(tmp_path):
    """One id written as 3.0 made pandas read the whole column as float, rounding every 18-digit
    dr7objid; an asset_id of 1.7 became image 1.jpg."""
    import pandas as pd

    from gzmorph.io import InputError
    from gzmorph.sources import read_source
    from gzmorph.tree import GZ2_TREE

    row = {}
    for q in GZ2_TREE.questions:
        for j, a in enumerate(q.answers):
            row[f"{a.gz2}_weighted_fraction"] = 1.0 if j == 0 else 0.0
    table = pd.DataFrame([row] * 3)
    table.insert(0, "asset_id", ["7", "8", "9"])
    table.insert(0, "dr7objid", ["587722981741363294", "587722981741363295", "3.0"])
    path = tmp_path / "gz2_hart16.csv"
    table.to_csv(path, index=False)
    df = read_source("gz2", tmp_path)
    assert df["id"].tolist() == [587722981741363294, 587722981741363295, 3]
    assert df["asset_id"].tolist() == [7, 8, 9]
    table.loc[2, "asset_id"] = "1.7"
    table.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"gz2_hart16.csv: line 4: asset_id '1.7' is not an integer$"):
        read_source("gz2", tmp_path)


# ----------------------------------------------------------------- leftovers of killed jobs
class _FakeSnakemake:
    """The few attributes of Snakemake's ``snakemake`` object that rule_context reads."""

    def __init__(self, outputs, log):
        from types import SimpleNamespace

        self.output = [str(p) for p in outputs]
        self.log = [str(log)]
        self.rule = "fake_rule"
        self.threads = 1
        self.config = {"seed": 0}
        self.params = SimpleNamespace(items=lambda: [("answer", 42)])
        self.resources = SimpleNamespace()


def test_rule_start_sweeps_leftover_temporaries_of_its_outputs(tmp_path):
    from gzmorph.io import is_temporary
    from gzmorph.smk import rule_context

    out = tmp_path / "curated"
    out.mkdir()
    (out / "images.parquet").write_text("an old output")
    # a job killed by SIGKILL inside atomic_path: its temporary file stays
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from gzmorph.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('half written')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"), str(out / "images.parquet")], check=False)
    assert killed.returncode == -signal.SIGKILL
    [leftover] = [p for p in out.iterdir() if p.name.startswith(".images.parquet.")]
    assert is_temporary(leftover) and leftover.read_text() == "half written"
    others = [out / ".images.parquet.meta.ab12cd34.tmp",  # another output's (images.parquet.meta)
              out / ".stats.json.ab12cd34.tmp",  # not an output of this rule
              out / "images.parquet.tmp", out / ".images.parquet.tmp", out / "notes.txt"]
    for p in others:
        p.write_text("keep me")
    (out / ".qc.json.zz99_abc.tmp").write_text("leftover of the second output")

    fake = _FakeSnakemake([out / "images.parquet", out / "qc.json", tmp_path / "missing" / "x.tsv"],
                          tmp_path / "rule.log")
    with rule_context(fake) as (params, _log):
        assert params == {"answer": 42}
        assert not leftover.exists() and not (out / ".qc.json.zz99_abc.tmp").exists()
    assert all(p.read_text() == "keep me" for p in others)
    assert (out / "images.parquet").read_text() == "an old output"
    assert "left by a killed job" in (tmp_path / "rule.log").read_text()


def test_temporaries_are_never_taken_for_catalogues_or_outputs(tmp_path):
    from gzmorph.io import atomic_path, is_temporary, temporaries_of
    from gzmorph.sources.gz2 import find_catalogue as find_gz2
    from gzmorph.sources.kaggle import find_catalogue

    path = _write_kaggle(tmp_path, ".csv")
    (tmp_path / ".training_solutions_rev1.zip.k2j4h5g6.tmp").write_bytes(b"PK")
    (tmp_path / ".gz2_hart16.csv.k2j4h5g6.tmp").write_text("x")
    (tmp_path / "gz2_hart16.csv").write_text("x")
    assert find_catalogue(tmp_path) == path
    assert find_gz2(tmp_path) == tmp_path / "gz2_hart16.csv"
    assert not is_temporary(path) and not is_temporary(tmp_path / "a.tmp")
    with atomic_path(tmp_path / "out.parquet") as tmp:
        assert is_temporary(tmp) and temporaries_of(tmp_path / "out.parquet") == [tmp]
        tmp.write_text("done")
    assert temporaries_of(tmp_path / "out.parquet") == []
