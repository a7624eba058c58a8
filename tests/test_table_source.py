"""The table source (gzmorph.sources.table): users' catalogues and class folders, ids as given."""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from gzmorph.config_check import config_errors
from gzmorph.io import InputError
from gzmorph.sources import read_source
from gzmorph.sources.table import TableSettings
from gzmorph.tree import KAGGLE_COLUMNS

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def schema_keys(node: dict) -> dict:
    return {k: schema_keys(v) if "properties" in v else None for k, v in node.get("properties", {}).items()}


def class_keys(cls) -> dict:
    return {f.name: class_keys(f.default_factory) if f.default_factory is not MISSING and is_dataclass(f.default_factory) else None
            for f in fields(cls)}


def png(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (value, value, value)).save(path)
    return path


def catalogue(tmp_path, rows: dict, name="cat.csv"):
    df = pd.DataFrame(rows)
    if name.endswith(".parquet"):
        df.to_parquet(tmp_path / name, index=False)
    else:
        df.to_csv(tmp_path / name, index=False)
    return tmp_path / name


def test_string_ids_stay_as_written_with_a_pattern(tmp_path):
    for i in ("007", "NGC1300", "a-1"):
        png(tmp_path / "img" / f"{i}.png")
    catalogue(tmp_path, {"objid": ["007", "NGC1300", "a-1"], "morph": ["S", "E", "S"], "z": [0.1, 0.2, 0.3]})
    df = read_source("table", tmp_path, catalogue="cat.csv", id_column="objid", image_dir="img",
                     image_pattern="{id}.png", label_columns=["morph"])
    assert df["id"].tolist() == ["007", "NGC1300", "a-1"] and pd.api.types.is_string_dtype(df["id"])
    assert df["image_path"].tolist() == [str(tmp_path.resolve() / "img" / f"{i}.png") for i in df["id"]]
    assert df["morph"].tolist() == ["S", "E", "S"] and df["z"].tolist() == [0.1, 0.2, 0.3]
    assert not any(c in df.columns for c in KAGGLE_COLUMNS)


def test_integer_ids_and_a_path_column(tmp_path):
    png(tmp_path / "a" / "x.png")
    png(tmp_path / "b" / "y.jpg")
    catalogue(tmp_path, {"id": [12, 3], "path": ["a/x.png", str(tmp_path / "b" / "y.jpg")]}, "cat.parquet")
    df = read_source("table", tmp_path, catalogue="cat.parquet", image_column="path")
    assert df["id"].dtype == np.int64 and df["id"].tolist() == [12, 3]
    assert df["image_path"].tolist() == [str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "y.jpg")]


def test_id_type_string_keeps_digits_as_text(tmp_path):
    catalogue(tmp_path, {"id": ["1", "2"], "p": ["1.png", "2.png"]})
    df = read_source("table", tmp_path, catalogue="cat.csv", image_column="p", id_type="string")
    assert df["id"].tolist() == ["1", "2"]
    df = read_source("table", tmp_path, catalogue="cat.csv", image_column="p")
    assert df["id"].tolist() == [1, 2]


def test_string_ids_in_parquet_keep_their_type(tmp_path):
    catalogue(tmp_path, {"id": ["12", "13"], "p": ["1.png", "2.png"]}, "c.parquet")
    df = read_source("table", tmp_path, catalogue="c.parquet", image_column="p", id_type="string")
    assert df["id"].tolist() == ["12", "13"]


def test_reserved_column_names_are_kept_under_another_name(tmp_path):
    catalogue(tmp_path, {"id": [1, 2], "p": ["1.png", "2.png"], "label": ["a", "b"], "split": ["x", "y"]})
    df = read_source("table", tmp_path, catalogue="cat.csv", image_column="p", label_columns=["label"])
    assert df["catalogue_label"].tolist() == ["a", "b"] and "label" not in df.columns
    assert "catalogue_split" in df.columns


def test_a_label_column_named_label_serves_a_label_cut_and_a_finetune_label_as_written(tmp_path):
    """The reader renames 'label' to 'catalogue_label'; the config still names it 'label' (the check
    at DAG build wants it declared as 'label'), so curation and fine-tuning must find it."""
    from gzmorph.cuts import cut_from_config
    from gzmorph.finetune import task_labels
    from gzmorph.represent_settings import FinetuneSettings

    catalogue(tmp_path, {"id": [1, 2, 3], "p": ["1.png", "2.png", "3.png"], "label": ["E", "S", "E"]})
    df = read_source("table", tmp_path, catalogue="cat.csv", image_column="p", label_columns=["label"])
    cut = cut_from_config("m", {"kind": "label", "column": "label"}).resolve(df)
    assert cut.class_names == ["E", "S"]
    assert cut.assign_table(df)["label"].tolist() == [0, 1, 0]
    labels, names, task = task_labels(FinetuneSettings(label="label"), df)
    assert labels.tolist() == [0, 1, 0] and names == ["E", "S"] and task == "the classes of column 'label'"


def test_a_reserved_column_whose_new_name_is_taken_is_one_error(tmp_path):
    catalogue(tmp_path, {"id": [1, 2], "p": ["1.png", "2.png"], "label": ["a", "b"], "catalogue_label": ["c", "d"]})
    with pytest.raises(InputError, match=r"cat.csv: column 'label' is renamed 'catalogue_label' .* also has a "
                                         r"column 'catalogue_label'; rename one of them"):
        read_source("table", tmp_path, catalogue="cat.csv", image_column="p")


def test_declared_kaggle_votes_read_like_the_kaggle_source(tiny_kaggle):
    src = pd.read_csv(tiny_kaggle / "training_solutions_rev1.csv")
    src.insert(1, "file", [f"images_training_rev1/{i}.jpg" for i in src["GalaxyID"]])
    src.to_csv(tiny_kaggle / "mine.csv", index=False)
    df = read_source("table", tiny_kaggle, catalogue="mine.csv", id_column="GalaxyID", image_column="file",
                     votes="kaggle")
    ref = read_source("kaggle", tiny_kaggle)
    assert df["id"].tolist() == ref["id"].tolist()
    assert df["image_path"].tolist() == ref["image_path"].tolist()
    np.testing.assert_allclose(df[KAGGLE_COLUMNS].to_numpy(), ref[KAGGLE_COLUMNS].to_numpy())


def test_declared_gz2_votes_are_made_cumulative(gz2_dir, tmp_path):
    from gzmorph.tree import GZ2_TREE

    ref = read_source("gz2", gz2_dir)
    src = pd.read_csv(gz2_dir / "gz2_hart16_subset.csv").head(50)
    src.to_csv(tmp_path / "g.csv", index=False)
    df = read_source("table", tmp_path, catalogue="g.csv", id_column="dr7objid", image_dir=str(gz2_dir / "images"),
                     image_pattern="{asset_id}.jpg", votes="gz2", vote_suffix="_weighted_fraction")
    assert df["id"].tolist() == ref["id"].head(50).tolist()
    # the same files (one reader may resolve a linked shared-data folder, the other not)
    assert [Path(p).resolve() for p in df["image_path"]] == [Path(p).resolve() for p in ref["image_path"].head(50)]
    np.testing.assert_allclose(df[KAGGLE_COLUMNS].to_numpy(), ref[KAGGLE_COLUMNS].head(50).to_numpy())
    assert len(GZ2_TREE.answers) == 37


def test_folder_layout_classes_and_ids(tmp_path):
    for cls, ids in {"spiral": ["10", "11"], "round": ["12"], "edge-on": ["13", "14"]}.items():
        for i in ids:
            png(tmp_path / cls / f"{i}.jpg")
    (tmp_path / ".DS_Store").write_text("x")
    (tmp_path / "README.txt").write_text("top-level files are not classes")
    df = read_source("table", tmp_path, layout="folder")
    assert df["id"].dtype == np.int64
    assert dict(zip(df["id"], df["class"])) == {10: "spiral", 11: "spiral", 12: "round", 13: "edge-on",
                                                14: "edge-on"}


@pytest.mark.parametrize("case, message", [
    ("nested", "a folder inside the class folder 'round'"),
    ("not_image", "not an image file"),
    ("empty_class", "sub-folder with no images, so it is not a class"),
    ("same_id", "share the id 5"),
    ("mixed", "mixed id types"),
    ("loose", "an image in the folder layout's top folder, outside every class folder"),
    ("line_break", "holds a line break or NUL; rename the file"),
])
def test_bad_folders_are_one_error_naming_the_file(tmp_path, case, message):
    png(tmp_path / "round" / "5.png")
    png(tmp_path / "spiral" / "6.png")
    bad = {"nested": tmp_path / "round" / "more", "not_image": tmp_path / "spiral" / "notes.txt",
           "empty_class": tmp_path / "misc", "same_id": tmp_path / "spiral" / "5.png",
           "mixed": tmp_path / "spiral" / "abc.png", "loose": tmp_path / "7.png",
           "line_break": tmp_path / "spiral" / "8\n9.png"}[case]
    (tmp_path / "README.txt").write_text("a folder's notes are no image, and may lie beside the classes")
    if case in ("nested", "empty_class"):
        bad.mkdir()
        if case == "empty_class":
            (bad / "x.txt").write_text("not an image")
    elif case == "not_image":
        bad.write_text("hello")
    else:
        png(bad)
    with pytest.raises(InputError) as err:
        read_source("table", tmp_path, layout="folder")
    text = str(err.value)
    assert message in text and "\n" not in text  # a name's own line break is shown as \\n
    assert str(bad) in text or repr(str(bad)) in text


@pytest.mark.parametrize("case, message", [
    ("empty_label", "line 3, column 'morph': empty label"),
    ("mixed_ids", "line 3: mixed id types"),
    ("duplicate", "duplicate id 1"),
    ("missing_id", "line 2: empty id"),
    ("not_image", "line 2: "),
    ("no_column", "missing column(s) 'morph'"),
    ("float_id", "neither an integer nor text"),
    ("huge_id", "line 2: id ('id') '99999999999999999999' is too large for a 64-bit integer"),
    ("huge_uint64", "row 0: id ('id') '9223372036854775813' is too large for a 64-bit integer"),
    ("line_break", "line 2: the image path"),
])
def test_bad_tables_are_one_error_naming_file_row_or_key(tmp_path, case, message):
    rows = {"id": ["1", "2"], "p": ["1.png", "2.png"], "morph": ["S", "E"]}
    fmt = "cat.csv"
    if case == "empty_label":
        rows["morph"] = ["S", ""]
    elif case == "mixed_ids":
        rows["id"] = ["1", "abc"]
    elif case == "duplicate":
        rows["id"] = ["1", "1"]
    elif case == "missing_id":
        rows["id"] = ["", "2"]
    elif case == "not_image":
        rows["p"] = ["1.txt", "2.png"]
    elif case == "no_column":
        del rows["morph"]
    elif case == "line_break":  # a quoted cell may hold one; the image manifest is one line per image
        rows["p"] = ["a\nb.png", "2.png"]
    elif case == "float_id":
        rows["id"] = [1.5, 2.0]
        fmt = "cat.parquet"
    elif case == "huge_id":
        rows["id"] = ["99999999999999999999", "2"]
    elif case == "huge_uint64":  # 2**63 + 5 would wrap round to a negative int64
        rows["id"] = np.array([2**63 + 5, 2], dtype=np.uint64)
        fmt = "cat.parquet"
    file = catalogue(tmp_path, rows, fmt)
    with pytest.raises(InputError) as err:
        read_source("table", tmp_path, catalogue=fmt, image_column="p", label_columns=["morph"])
    text = str(err.value)
    assert str(file) in text and message in text and "\n" not in text
    if case == "not_image":
        assert "1.txt is not an image file" in text


def test_huge_ids_are_kept_as_text_with_id_type_string(tmp_path):
    catalogue(tmp_path, {"id": np.array([2**63 + 5, 2], dtype=np.uint64), "p": ["1.png", "2.png"]}, "c.parquet")
    df = read_source("table", tmp_path, catalogue="c.parquet", image_column="p", id_type="string")
    assert df["id"].tolist() == ["9223372036854775813", "2"]


@pytest.mark.parametrize("name", ["cat.csv", "cat.zip"])
def test_missing_value_words_are_text_in_id_and_label_columns(tmp_path, name):
    """pandas reads 'None', 'NA', 'null' ... as missing; in an id or label column they are text as
    written, while the other columns keep pandas' reading (an empty vote cell is NaN)."""
    text = "id,p,bar,z\nNone,1.png,NA,0.5\nnull,2.png,None,\nNGC1,3.png,null,NA\n"
    if name == "cat.zip":
        import zipfile
        with zipfile.ZipFile(tmp_path / name, "w") as zf:
            zf.writestr("cat.csv", text)
    else:
        (tmp_path / name).write_text(text)
    df = read_source("table", tmp_path, catalogue=name, image_column="p", label_columns=["bar"])
    assert df["id"].tolist() == ["None", "null", "NGC1"]
    assert df["bar"].tolist() == ["NA", "None", "null"]
    assert df["z"].iloc[0] == 0.5 and df["z"].iloc[1:].isna().all()


def test_settings_are_checked():
    with pytest.raises(InputError, match="either image_column"):
        TableSettings.from_config({"catalogue": "c.csv"})
    with pytest.raises(InputError, match="folder layout"):
        TableSettings.from_config({"layout": "folder", "catalogue": "c.csv"})
    with pytest.raises(InputError, match="names no column"):
        TableSettings.from_config({"catalogue": "c.csv", "image_pattern": "x.fits"})
    # patterns str.format cannot read, or that would make names of 10**11 characters: one line, not a traceback
    for bad, message in (("{id", "cannot read '{id'"), ("}{id}.fits", "cannot read '}{id}.fits'"),
                         ("{id:99999999999}.jpg", "asks for more than 64 characters")):
        with pytest.raises(InputError, match=f"table.image_pattern: .*{message}"):
            TableSettings.from_config({"catalogue": "c.csv", "image_pattern": bad})
    assert TableSettings.from_config({"catalogue": "c.csv", "image_pattern": "{id:08d}.fits"}).image_pattern


def test_config_yaml_shows_the_table_defaults_and_the_schema_its_keys():
    assert CONFIG["table"] == TableSettings().as_dict()
    assert schema_keys(SCHEMA["properties"]["table"]) == class_keys(TableSettings)


def test_config_check_names_table_and_source_keys():
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.update(source="table", data_dir="")
    errors = config_errors(cfg, schema)
    assert any(e.startswith("config table.catalogue:") for e in errors)
    assert any(e.startswith("config data_dir:") for e in errors)
    cfg.update(data_dir="/data", sources={"a b": {"source": "kaggle", "data_dir": "x"}})
    assert any("sources" in e for e in config_errors(cfg, schema))
    cfg.update(data_dir="", sources={"a": {"source": "kaggle", "data_dir": "x", "cut": "nope"},
                                     "b": {"source": "table", "data_dir": "y", "table": {"layout": "folder"}}})
    errors = config_errors(cfg, schema)
    assert errors == [("config sources.a.cut: 'nope' is not a named cut nor defined under 'cuts:' "
                       "(known: guan9, hiwl5)")]


def test_fingerprint_of_string_ids_is_their_text():
    from gzmorph.train import fingerprint

    a = pd.Series(["007", "NGC1300"], dtype="string").to_numpy()
    b = pd.Series(["007", "NGC1300"], dtype="string").to_numpy()
    assert a.dtype == object and fingerprint(a) == fingerprint(b) == fingerprint(np.array(["007", "NGC1300"]))
    assert fingerprint(a) != fingerprint(np.array(["007", "NGC1301"]))


def test_a_file_name_in_another_encoding_is_one_error_naming_it(tmp_path):
    """An archive made on Windows (cp1252 names) unpacked here: the folder layout, and the console
    commands' folders, failed with a UnicodeEncodeError traceback when the ids were written."""
    import os

    from gzmorph.imagestream import find_images

    for cls, name in (("round", b"1.png"), ("bar", b"\xe9t\xe9.png")):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 8)).save(os.fsdecode(os.fsencode(tmp_path / cls) + b"/" + name))
    with pytest.raises(InputError, match=r"bar: the image path .*\\udce9t\\udce9.png' is not valid UTF-8; rename"):
        read_source("table", tmp_path, layout="folder")
    with pytest.raises(InputError, match=r"is not valid UTF-8; rename the file"):
        find_images([tmp_path / "bar"])


def test_class_names_match_whatever_unicode_form_they_are_written_in(tmp_path):
    """macOS lists a folder 'anneau-é' decomposed (NFD), while YAML writes it composed (NFC): the
    mapping never matched, and a column mixing both made two classes that look the same."""
    import unicodedata

    from gzmorph.cuts import cut_from_config

    nfc, nfd = "anneau-é", unicodedata.normalize("NFD", "anneau-é")
    assert nfc != nfd
    table = pd.DataFrame({"id": [1, 2, 3], "class": [nfd, nfc, "autre"]})
    assert cut_from_config("c", {"kind": "label", "column": "class"}).resolve(table).class_names == [nfc, "autre"]
    mapped = cut_from_config("c", {"kind": "label", "column": "class", "classes": {"ring": nfc, "other": "autre"}})
    assert mapped.assign_table(table)["label"].tolist() == [0, 0, 1]
