"""Curation by a label column, and several sources merged into one curated catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gzmorph.curate import select, select_sources, split
from gzmorph.cuts import cut_from_config, get_cut
from gzmorph.io import InputError
from gzmorph.sources import read_source
from gzmorph.sources.plan import merge_sources, source_specs
from gzmorph.tree import KAGGLE_COLUMNS


def table(ids, labels, column="morph"):
    return pd.DataFrame({"id": pd.array(ids), "image_path": [f"/x/{i}.png" for i in ids], column: labels})


LABEL = {"kind": "label", "column": "morph"}


def test_label_cut_takes_every_value_as_a_class():
    df, stats = select(table(["a", "b", "c", "d"], ["S", "E", "S", "Irr"]), cut_from_config("m", LABEL))
    assert stats["classes"] == ["E", "Irr", "S"] and stats["cut_kind"] == "label"
    assert df["id"].tolist() == ["a", "b", "c", "d"]  # string ids, unchanged
    assert dict(zip(df["id"], df["label_name"])) == {"a": "S", "b": "E", "c": "S", "d": "Irr"}
    assert (df["confidence"] == 1.0).all()


def test_label_cut_maps_names_and_leaves_other_values_out():
    cut = cut_from_config("m", {**LABEL, "classes": {"spiral": ["S", "Sb"], "elliptical": "E"}})
    df, stats = select(table([1, 2, 3, 4], ["Sb", "E", "Irr", "S"]), cut)
    assert stats["classes"] == ["spiral", "elliptical"]
    assert dict(zip(df["id"], df["label_name"])) == {1: "spiral", 2: "elliptical", 4: "spiral"}
    assert stats["cut_rules"] == {"spiral": "morph in ['S', 'Sb']", "elliptical": "morph == 'E'"}


def test_numeric_label_values_match_config_values():
    cut = cut_from_config("m", {**LABEL, "classes": {"no": 0, "yes": 1}})
    df, _ = select(table([1, 2, 3], [0, 1, 1]), cut)
    assert df["label_name"].tolist() == ["no", "yes", "yes"]


@pytest.mark.parametrize("spec, message", [
    ({"kind": "label"}, "config cuts.m.column: a label cut needs"),
    ({**LABEL, "classes": {"a": "x", "b": "x"}}, "the value 'x' already makes the class 'a'"),
    ({**LABEL, "classes": {"a": [], "b": "y"}}, "config cuts.m.classes.a"),
    ({"kind": "threshold", "column": "x", "classes": {"a": "Class1.1 > 0.5", "b": "Class1.2 > 0.5"}},
     "only label cuts"),
])
def test_bad_label_cuts_name_the_key(spec, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        cut_from_config("m", spec)


def test_empty_label_and_absent_column_and_vote_cut_without_votes_are_errors():
    with pytest.raises(InputError, match=r"row 1 \(id 'b'\), column 'morph': empty label"):
        select(table(["a", "b"], ["S", None]), cut_from_config("m", LABEL))
    with pytest.raises(InputError, match="from the column 'kind', which this source does not have"):
        select(table(["a"], ["S"]), cut_from_config("m", {"kind": "label", "column": "kind"}))
    with pytest.raises(InputError, match="reads vote fractions, and this source has none"):
        select(table(["a"], ["S"]), get_cut("hiwl5"))


def test_merge_keeps_ids_and_adds_the_source_column():
    out = merge_sources({"one": table([1, 2], ["S", "E"]), "two": table([3], ["S"])})
    assert out["source"].tolist() == ["one", "one", "two"] and out["id"].dtype == np.int64
    assert list(out.columns[:3]) == ["id", "image_path", "source"]


def test_id_clash_and_mixed_id_types_are_one_error_each():
    with pytest.raises(InputError) as err:
        merge_sources({"one": table([1, 2], ["S", "E"]), "two": table([2, 5], ["S", "E"])})
    assert "sources 'one' and 'two' both have the id 2 (/x/2.png and /x/2.png)" in str(err.value)
    assert "1 shared id(s)" in str(err.value)
    with pytest.raises(InputError, match=r"mixed id types: source 'one' has integer ids \(e\.g\. 1\), source "
                                         r"'two' has string ids \(e\.g\. 'a'\)"):
        merge_sources({"one": table([1], ["S"]), "two": table(["a"], ["S"])})


def two_sources():
    return merge_sources({
        "first": table([f"f{i:02d}" for i in range(20)], ["spiral"] * 12 + ["round"] * 8),
        "second": table([f"s{i:02d}" for i in range(10)], ["Sp"] * 4 + ["E0"] * 6, column="type"),
    })


def test_several_sources_each_by_its_cut_classes_matched_by_name():
    cuts = {"first": cut_from_config("a", LABEL | {"column": "morph"}),
            "second": cut_from_config("b", {"kind": "label", "column": "type",
                                            "classes": {"spiral": "Sp", "round": "E0"}})}
    df, stats = select_sources(two_sources(), cuts, name="mine")
    assert stats["classes"] == ["round", "spiral"]  # the first source's (sorted values)
    assert stats["cut"] == "mine" and stats["n_selected_per_source"] == {"first": 20, "second": 10}
    assert stats["sources"]["second"]["n_matched_per_class"] == {"spiral": 4, "round": 6}
    assert df.set_index("id").loc["s09", "label_name"] == "round"
    cat, st = split(df, [], {"train": 0.5, "val": 0.25, "test": 0.25}, 3, stats, {})
    again, _ = split(df, [], {"train": 0.5, "val": 0.25, "test": 0.25}, 3, stats, {})
    assert cat["split"].tolist() == again["split"].tolist()  # seeded
    for k in (0, 1):  # stratified over the union
        per = cat[cat["label"] == k]["split"].value_counts()
        n = (cat["label"] == k).sum()
        assert abs(per["val"] - n / 4) <= 1 and abs(per["test"] - n / 4) <= 1
    assert set(st["counts_per_source"]) == {"first", "second"}
    # the report's Sources table: every source whole (the stats went to a JSON cell cut at 200 characters)
    from gzmorph.report.curation import curation_section

    exports = {e.name: e for e in curation_section(cat, None, st["classes"], st).exports()}
    got = exports["sources"].data.set_index("source")
    assert got.loc["second", ["cut", "galaxies", "matched spiral", "matched round", "kept"]].tolist() == [
        "b", 10, 4, 6, 10]
    assert got[["train", "val", "test"]].sum(axis=1).to_dict() == {"first": 20, "second": 10}
    other = exports["other-statistics"].data["statistic"].tolist() if "other-statistics" in exports else []
    assert not {"sources", "n_selected_per_source", "counts_per_source"} & set(other)


def test_a_class_in_one_source_only_is_named_unless_mapped():
    cuts = {"first": cut_from_config("a", LABEL),
            "second": cut_from_config("b", {"kind": "label", "column": "type"})}
    with pytest.raises(InputError) as err:
        select_sources(two_sources(), cuts)
    text = str(err.value)
    assert "class 'round' exists in source 'first' only (cut 'a'), not in 'second'" in text
    assert "second: ['E0', 'Sp']" in text and "\n" not in text


def test_a_mapped_value_no_galaxy_has_is_named():
    """A misspelt value ('Spiral' for 'Sp') would leave this source without spirals while the other
    source has them: an error naming the class, the value and the values the column holds."""
    cuts = {"first": cut_from_config("a", LABEL | {"column": "morph"}),
            "second": cut_from_config("b", {"kind": "label", "column": "type",
                                            "classes": {"spiral": "Spiral", "round": "E0"}})}
    with pytest.raises(InputError) as err:
        select_sources(two_sources(), cuts)
    text = str(err.value)
    assert "(source 'second'): cut 'b': no galaxy has class 'spiral' (column 'type' == 'Spiral')" in text
    assert "the column holds 'E0', 'Sp'" in text and "\n" not in text
    with pytest.raises(InputError, match="no galaxy has class 'irr'"):  # one source alike
        select(table([1, 2], ["S", "E"]), cut_from_config("m", {**LABEL, "classes": {"s": "S", "irr": "Irr"}}))


def test_a_vote_cut_and_a_label_cut_together(kaggle_dir, tmp_path):
    from PIL import Image

    kaggle = read_source("kaggle", kaggle_dir).head(600)
    for k, cls in enumerate(("round", "in-between", "cigar", "edge-on", "spiral")):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8)).save(tmp_path / cls / f"{9_000_000 + 10 * k + i}.jpg")
    folder = read_source("table", tmp_path, layout="folder")
    merged = merge_sources({"kaggle": kaggle, "folder": folder})
    assert merged.loc[merged["source"] == "folder", KAGGLE_COLUMNS].isna().all().all()
    cuts = {"kaggle": get_cut("hiwl5"), "folder": cut_from_config("f", {"kind": "label", "column": "class"})}
    df, stats = select_sources(merged, cuts, name="hiwl5")
    assert stats["classes"] == ["round", "in-between", "cigar", "edge-on", "spiral"]
    assert stats["n_selected_per_source"]["folder"] == 15
    assert (df[df["source"] == "kaggle"]["confidence"] < 1).any()


def test_source_specs_of_one_and_of_several_sources():
    one = source_specs({"source": "table", "data_dir": "/d", "cut": "c", "table": {"layout": "folder"}})
    assert list(one) == ["table"] and one["table"]["votes"] is False and one["table"]["cut"] == "c"
    several = source_specs({"source": "synthetic", "cut": "hiwl5", "sources": {
        "k": {"source": "kaggle", "data_dir": "/k"},
        "f": {"source": "table", "data_dir": "/f", "cut": "f5",
              "table": {"layout": "folder", "fits": {"bands": 3}}}}})
    assert [s["cut"] for s in several.values()] == ["hiwl5", "f5"]
    assert several["k"]["votes"] and not several["f"]["votes"] and several["f"]["fits"]["bands"] == 3


def test_hiwl5_all_config_is_valid_and_names_two_sources():
    from pathlib import Path

    import yaml

    from gzmorph.config_check import config_errors, dataset_name
    from gzmorph.settings import deep_merge
    from gzmorph.stages import stage_plan

    repo = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((repo / "config.yaml").read_text())
    config = deep_merge(base, yaml.safe_load((repo / "configs" / "hiwl5-all.yaml").read_text()))
    assert config_errors(config, repo / "workflow" / "schemas" / "config.schema.yaml") == []
    specs = source_specs(config)
    assert {n: (s["source"], s["cut"]) for n, s in specs.items()} == {
        "kaggle": ("kaggle", "hiwl5"), "folder": ("table", "class5-folder")}
    assert dataset_name(config) == "hiwl5-all"
    runs = {k for k, v in stage_plan(config, specs, config["represent"]).items() if v["runs"]}
    assert runs == {"classify"} and config["classify"]["models"] == ["hiwl", "flat"]


def test_a_label_cut_must_read_a_declared_label_column_at_dag_build():
    """Only declared label columns are read as text and checked to be filled when the source is read;
    an undeclared one read a class named 'NA' as an empty cell, and failed only at curation."""
    from gzmorph.config_check import cut_errors

    single = {"source": "table", "data_dir": "x", "cut": "m", "cuts": {"m": LABEL},
              "table": {"catalogue": "c.csv", "image_column": "p"}}
    assert cut_errors(single) == ["config cuts.m.column: 'morph' is not a label column of source 'table': "
                                  "add it to config table.label_columns (now [])"]
    single["table"]["label_columns"] = ["morph"]
    assert cut_errors(single) == []
    folder = {"cut": "hiwl5", "cuts": {"m": LABEL},
              "sources": {"k": {"source": "kaggle", "data_dir": "a"},
                          "f": {"source": "table", "data_dir": "b", "cut": "m", "table": {"layout": "folder"}}}}
    assert cut_errors(folder) == ["config cuts.m.column: 'morph' is not a label column of source 'f': "
                                  "the folder layout's label column is 'class'"]
    folder["cuts"]["m"] = LABEL | {"column": "class"}
    assert cut_errors(folder) == []
