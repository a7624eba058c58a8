"""Every bad config value is caught when the DAG is built, one line per error naming the key
(gzmorph.config_check); names that would be paths never leave results/<dataset>/; catalogue
errors name the right line and show plain values."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gzmorph.config_check import (ConfigError, check_config, check_inside, config_errors, dataset_name,
                                  number, show)
from gzmorph.io import InputError, save_bundle
from gzmorph.settings import deep_merge
from gzmorph.sources import read_source

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
BASE = yaml.safe_load((REPO / "config.yaml").read_text())
AT = "(workflow/schemas/config.schema.yaml)"
UNSAFE = "is not a safe name; use at most 100 letters, digits, '_' and '-', starting with a letter or digit " \
         "(it names a folder under results/)"
TWO_CLASSES = {"a": ["Class1.1 > 0.5"], "b": ["Class1.2 > 0.5"]}


def errors(over: dict) -> list[str]:
    """The checker's verdict on config.yaml with ``over`` merged into it."""
    return config_errors(deep_merge(copy.deepcopy(BASE), over), SCHEMA_PATH)


# ----------------------------------------------------------------------------- valid configs


def test_the_shipped_configs_pass():
    assert errors({}) == []
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert errors({**yaml.safe_load(path.read_text()), "data_dir": "/data"}) == [], path
    for preset in ("default", "laptop", "paper"):
        assert errors({"distill": {"preset": preset}}) == [], preset
    assert errors({"dataset": "my_run-2", "cut": "mine", "cuts": {"mine": {"classes": TWO_CLASSES}},
                   "classify": {"apply_to": {"other_1": {"source": "kaggle", "data_dir": "/x"}}}}) == []


# ----------------------------------------------------------------------------- schema messages


def test_misspelt_key_gets_did_you_mean_and_a_far_one_the_known_keys():
    assert errors({"seeds": 1}) == [f"config seeds: unknown key; did you mean 'seed'? {AT}"]
    known = ", ".join(sorted(SCHEMA["properties"]))
    assert errors({"colour": "red"}) == [f"config colour: unknown key; known keys: {known} {AT}"]
    assert errors({"classify": {"labelsmoothing": 0.1}}) == [
        f"config classify.labelsmoothing: unknown key; did you mean 'label_smoothing'? {AT}"]
    assert errors({"cuts": {"mine": {"classes": TWO_CLASSES, "topk": 3}}, "cut": "mine"}) == [
        f"config cuts.mine.topk: unknown key; did you mean 'top_k'? {AT}"]
    assert errors({"classify": {"augment": {"rotat": 3}}}) == [
        f"config classify.augment.rotat: unknown key; did you mean 'rotate'? {AT}"]


@pytest.mark.parametrize("over, message", [
    ({"image_size": "big"}, f"config image_size: 'big' is not of type 'integer' {AT}"),
    ({"source": "sdss"}, f"config source: 'sdss' is not one of ['synthetic', 'kaggle', 'gz2', 'table'] {AT}"),
    ({"seed": -1}, f"config seed: -1 is less than the minimum of 0 {AT}"),
    ({"seed": 2**32}, f"config seed: 4294967296 is greater than the maximum of 4294967295 {AT}"),
    ({"split": {"test": -0.1}}, f"config split.test: -0.1 is less than the minimum of 0 {AT}"),
    ({"distill": {"ipc": [1, 0]}}, f"config distill.ipc[1]: 0 is less than the minimum of 1 {AT}"),
    ({"distill": {"ipc": 0}}, f"config distill.ipc: 0 is less than the minimum of 1 {AT}"),
    ({"distill": {"n_experts": 0}}, f"config distill.n_experts: 0 is less than the minimum of 1 {AT}"),
    ({"distill": {"preset": "fast"}},
     f"config distill.preset: 'fast' is not one of ['default', 'laptop', 'paper'] {AT}"),
    ({"classify": {"augment": "yes"}},
     f"config classify.augment: 'yes' is not of type 'boolean' and is not of type 'object' {AT}; --config passes "
     "nested values as text: put nested keys in a --configfile"),
    ({"represent": {"finetune": {"budgets": "many"}}},
     f"config represent.finetune.budgets: 'many' is not one of ['auto'] and is not of type 'array' {AT}"),
    ({"cuts": {"mine": {"classes": {"a": ["Class1.1 > 0.5"]}}}},
     f"config cuts.mine.classes: {{'a': ['Class1.1 > 0.5']}} needs at least 2 entries {AT}"),
    ({"cuts": {"mine": {"classes": TWO_CLASSES, "top_k": True}}},
     f"config cuts.mine.top_k: True is not of type 'integer' {AT}"),
])
def test_type_and_range_errors_name_the_key_the_value_and_the_rule(over, message):
    assert errors(over) == [message]


def test_values_as_snakemake_config_passes_them_get_a_hint():
    """``--config classify={epochs: 3}`` gives the text '3', ``--config data_dir=`` null: the line
    says so, since the user typed a number and an empty value.  A word where a number belongs does
    not get the hint."""
    hint = "; --config passes nested values as text: put nested keys in a --configfile"
    assert errors({"classify": {"epochs": "3"}}) == [f"config classify.epochs: '3' is not of type 'integer' {AT}{hint}"]
    assert errors({"classify": {"augment": "false"}})[0].endswith(hint)
    assert errors({"data_dir": None}) == [f"config data_dir: None is not of type 'string' {AT}; an empty --config "
                                          'value (key=) reads as null: give an empty text in a --configfile (key: "")']
    assert errors({"classify": {"epochs": "x"}}) == [f"config classify.epochs: 'x' is not of type 'integer' {AT}"]
    assert not errors({"seed": "7"})[0].endswith(hint)  # top-level --config values arrive typed


def test_every_schema_error_is_reported_once_each_on_one_line():
    assert errors({"crop_fraction": 2, "max_per_class": -1}) == [
        f"config crop_fraction: 2 is greater than the maximum of 1 {AT}",
        f"config max_per_class: -1 is less than the minimum of 0 {AT}"]
    with pytest.raises(ConfigError) as caught:
        check_config(deep_merge(BASE, {"seeds": 1, "image_size": "big"}), SCHEMA)
    assert caught.value.errors == [f"config seeds: unknown key; did you mean 'seed'? {AT}",
                                   f"config image_size: 'big' is not of type 'integer' {AT}"]
    assert str(caught.value) == "\n".join(caught.value.errors)
    # a huge value is shortened, the schema is never printed
    [line] = errors({"report": {"title": ["x" * 500]}})
    assert len(line) < 200 and "..." in line and "$schema" not in line and "\n" not in line


# ----------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "-x", "_x", "x y", "x\n", "ü", "/tmp/x"])
def test_dataset_names_that_are_paths_are_refused(name):
    assert errors({"dataset": name}) == [f"config dataset: {name!r} {UNSAFE}"]


def test_cut_and_catalogue_names_that_are_paths_are_refused():
    bad = "../../../tmp/x"
    assert errors({"cut": bad, "cuts": {bad: {"classes": TWO_CLASSES}}}) == [
        f"config cut: {bad!r} {UNSAFE}", f"config cuts: the cut name {bad!r} {UNSAFE}"]
    assert errors({"classify": {"apply_to": {"a/b": {"source": "kaggle", "data_dir": "/x"}}}}) == [
        f"config classify.apply_to: the catalogue name 'a/b' {UNSAFE}"]
    long = "x" * 101  # a file name plus atomic_path's temporary suffix must stay under 255 bytes
    assert errors({"classify": {"apply_to": {long: {"source": "kaggle", "data_dir": "/x"}}}}) == [
        f"config classify.apply_to: the catalogue name {long!r} {UNSAFE}"]
    assert errors({"dataset": "x" * 100}) == []
    sources = {n * 60: {"source": "kaggle", "data_dir": "/x"} for n in "ab"}  # each name fine, joined too long
    assert errors({"dataset": "", "sources": sources}) == [
        f"config dataset: the name made of the source names and the cut ({('a' * 60 + '-' + 'b' * 60)[:40]!r}..., "
        "127 characters) is longer than 100; set dataset"]


def test_dataset_name_defaults_to_source_and_cut():
    assert dataset_name({"dataset": "", "source": "synthetic", "cut": "hiwl5"}) == "synthetic-hiwl5"
    assert dataset_name({"dataset": "run1", "source": "synthetic", "cut": "hiwl5"}) == "run1"


def test_paths_must_stay_inside_the_results_folder():
    root = "results/d"
    assert check_inside("results/d/classify/{model}/model.pt", root, "res") == "results/d/classify/{model}/model.pt"
    with pytest.raises(InputError) as caught:
        check_inside("results/d/logs/../../x.log", root, "log_path('../../x')")
    assert str(caught.value) == ("log_path('../../x'): 'results/d/logs/../../x.log' is not inside results/d/ "
                                 "(check the dataset, cut and catalogue names)")
    for path, root in [("results/d/../../tmp/x/a", "results/d"), ("/tmp/x", "results/d"),
                       ("results/./source/x", "results/."), ("results/d", "results/d"),
                       ("results/synthetic-../../../tmp/x/a", "results/synthetic-../../../tmp/x")]:
        with pytest.raises(InputError, match="is not inside"):
            check_inside(path, root, "res")


# ----------------------------------------------------------------------------- rules across keys


def test_split_fractions_must_sum_to_one_and_train_be_positive():
    assert errors({"split": {"train": 0.8, "val": 0.2, "test": 0.1}}) == [
        "config split: the fractions must sum to 1, but train 0.8 + val 0.2 + test 0.1 = 1.1"]
    assert errors({"split": {"train": 0, "val": 0.5, "test": 0.5}}) == [
        "config split.train: must be above 0 (the models train on it)"]
    assert errors({"split": {"train": 0.7, "val": 0.2, "test": 0.1}}) == []  # 0.7 + 0.2 + 0.1 != 1.0 in floats


@pytest.mark.parametrize("over, message", [
    # each passed the dry run and failed once a job ran, after curation or a trained model
    ({"split": {"train": 0.9, "val": 0.0, "test": 0.1}},
     "config split.val: must be above 0: classify needs val galaxies of every class"),
    ({"split": {"train": 0.9, "val": 0.1, "test": 0.0}},
     "config split.test: must be above 0: classify and distill need test galaxies of every class"),
    ({"cut": "guan9", "classify": {"models": ["hiwl"]}},
     "config classify.models: hiwl runs only for the hiwl5 cut, so cut 'guan9' leaves no classifier to train; "
     "add flat"),
    ({"classify": {"models": []}}, "config classify.models: [] should be non-empty"),
    ({"distill": {"image_size": 28}}, "config distill.image_size: 28 px is not divisible by 2^depth = 8 (the "
     "ConvNet halves it at each of its 3 blocks)"),
    ({"classify": {"device": "gpu"}}, "config classify.device: 'gpu' does not match"),
    ({"represent": {"backbone": "resnet50"}}, "config represent.backbone: 'resnet50' is not one of ['cnn',"),
    ({"classify": {"apply_to": {"o": {"source": "gz2", "data_dir": "/x", "fraction": "debiased"}}}},
     "config classify.apply_to.o.fraction: unknown key"),
    # these failed in the finetune job, after the representation had trained
    ({"represent": {"finetune": {"label": "Class4.1"}}}, "config represent.finetune.label: Class4.1 is a vote "
     "fraction; set represent.finetune.threshold to split it into two classes"),
    ({"represent": {"finetune": {"label": "Class4.1", "threshold": 1.5}}}, "config represent.finetune.threshold: "
     "1.5 leaves every galaxy on one side of Class4.1"),
    # timm would have opened this file itself, outside the encoder checks
    ({"classify": {"model_kwargs": {"checkpoint_path": "/x.pth"}}}, "config classify.model_kwargs.checkpoint_path: "
     "not a setting of the backbone (weights come only from classify.pretrained, a local encoder)"),
])
def test_settings_that_only_failed_in_a_job_fail_at_dag_build(over, message):
    found = errors(over)
    assert len(found) == 1 and found[0].startswith(message), found


def test_val_and_test_splits_may_be_empty_when_no_stage_needs_them():
    assert errors({"stages": ["represent"], "split": {"train": 0.9, "val": 0.0, "test": 0.1}}) == []
    assert errors({"stages": ["distill"], "split": {"train": 0.9, "val": 0.1, "test": 0.0}}) == [
        "config split.test: must be above 0: distill needs test galaxies of every class"]


def test_every_cut_definition_and_the_cut_in_use_are_checked():
    assert errors({"cut": "zhu7"}) == ["config cut: 'zhu7' is not a named cut nor defined under 'cuts:' "
                                       "(known: guan9, hiwl5)"]
    # an unused malformed cut is caught too
    assert errors({"cuts": {"mine": {"classes": {"a": ["Class1.1 >> 0.5"], "b": ["Class1.2 > 0.5"]}}}}) == [
        "config cuts.mine.classes.a: cannot read condition 'Class1.1 >> 0.5'; write e.g. 'Class7.1 > 0.5' "
        "or 'cond(t07_a16) >= 0.8'"]
    assert errors({"cuts": {"mine": {"classes": {"a": 5, "b": ["Class1.2 > 0.5"]}}}}) == [
        "config cuts.mine.classes.a: 5 is not a list of conditions; write e.g. ['Class7.1 > 0.5']"]
    assert errors({"cuts": {"mine": {"kind": "path_product", "classes": {"a": "t01_a01 * t99_a99",
                                                                         "b": "t01_a02"}}}}) == [
        "config cuts.mine.classes.a: 't99_a99' is not an answer of the Galaxy Zoo 2 tree (use Kaggle names like "
        "Class7.1 or GZ2 names like t07_a16)"]


def test_represent_blocks_that_cannot_work():
    assert errors({"represent": {"finetune": {"min_budget": 300}}}) == [
        "config represent.finetune: min_budget (300) is above max_budget (256), so no label budget is left"]
    assert errors({"represent": {"finetune": {"not_ring_max": 0.3}}}) == [
        "config represent.finetune: not_ring_max (0.3) must be below ring_min (0.25), else a galaxy is "
        "both a ring and not one"]


DS = "(src/gzmorph/distill_settings.py"


@pytest.mark.parametrize("over, message", [
    ({"mtt": {"iterationz": 3}},
     f"config distill.mtt.iterationz: unknown key; did you mean 'iterations'? {DS}: MTTOptions)"),
    ({"eval": {"n_net": 3}}, f"config distill.eval.n_net: unknown key; did you mean 'n_nets'? {DS}: EvalOptions)"),
    ({"expert": {"epoch": 3}},
     f"config distill.expert.epoch: unknown key; did you mean 'epochs'? {DS}: ExpertTraining)"),
    ({"stm": {"r_dwn": 3}}, f"config distill.stm.r_dwn: unknown key; did you mean 'r_down'? {DS}: STMOptions)"),
    ({"ipc_overrides": {1: {"lr_alfa": 0.1}}}, "config distill.ipc_overrides.1.lr_alfa: unknown key; did you "
     f"mean 'lr_alpha'? {DS}: MTTOptions or STMOptions)"),
    ({"mtt": {"lr_img": "x"}}, f"config distill.mtt.lr_img: 'x' is not of type 'number' {DS}: MTTOptions)"),
    ({"stm": {"alpha_per_epoch": 1}},
     f"config distill.stm.alpha_per_epoch: 1 is not of type 'boolean' {DS}: STMOptions)"),
    ({"mtt": {"iterations": 2.5}}, f"config distill.mtt.iterations: 2.5 is not of type 'integer' {DS}: MTTOptions)"),
    ({"expert": {"epochs": 0}}, "config distill.expert.epochs: 0 must be at least 1"),
    ({"eval": {"n_nets": 0}}, "config distill.eval.n_nets: 0 must be at least 1"),
    ({"mtt": {"lr_img": 0}}, "config distill.mtt.lr_img: 0 must be above 0"),
    ({"stm": {"ft_factor": 1.5}}, "config distill.stm.ft_factor: 1.5 must be at most 1"),
    ({"ipc_overrides": {"x": {}}}, "config distill.ipc_overrides: 'x' is not an IPC (an integer of at least 1)"),
    ({"expert": {"epochs": 3}}, "config distill.mtt: max_start_epoch (2) + expert_epochs (2) = 4 is more than "
     "the experts' epochs (distill.expert.epochs = 3); lower them or train longer experts"),
    ({"preset": "paper", "expert": {"epochs": 10}}, "config distill.mtt: max_start_epoch (20) + expert_epochs "
     "(2) = 22 is more than the experts' epochs (distill.expert.epochs = 10); lower them or train longer experts"),
    ({"ipc_overrides": {1: {"max_start_epoch": 5}}}, "config distill.mtt (ipc 1, with ipc_overrides): "
     "max_start_epoch (5) + expert_epochs (2) = 7 is more than the experts' epochs (distill.expert.epochs = 4); "
     "lower them or train longer experts"),
    ({"methods": ["stm"], "expert": {"epochs": 1}},
     "config distill.expert.epochs: STM needs experts of at least 2 epochs, not 1"),
])
def test_distill_blocks_are_checked_against_their_dataclasses(over, message):
    assert errors({"distill": over}) == [message]


@pytest.mark.parametrize("over, message", [
    ({"distill": {"augment": {"scale": [0.9, 1.1]}}}, "config distill.augment.scale: [0.9, 1.1] must be one zoom "
     "factor >= 1 in DSA single mode (U(1/scale, scale)); a [low, high] range is the all-ops mode's (mode: all)"),
    ({"distill": {"augment": {"mode": "every"}}}, "config distill.augment.mode must be one of ('single', 'all'), "
     "not 'every'"),
    ({"distill": {"augment": {"mode": "all", "flip": 0.5}}}, "config distill.augment.flip: 0.5 must be true or "
     "false"),
    ({"distill": {"augment": {"crop": 2}}}, "config distill.augment.crop: 2 must be a number >= 0 and <= 1"),
    ({"represent": {"augment": {"scale": [1.2, 0.8]}}}, "config represent.augment.scale: [1.2, 0.8] must be two "
     "zoom factors [low, high] with 0 < low <= high"),
])
def test_augment_settings_fail_at_dag_build_not_when_a_batch_draws_the_op(over, message):
    """An old all-ops key under DSA single mode (scale [0.9, 1.1]) used to pass every check and crash
    only when a batch drew the scale op, one batch in six, partway through expert training."""
    assert errors(over) == [message]


def test_mtt_limits_only_apply_when_mtt_runs():
    assert errors({"distill": {"methods": ["stm"], "expert": {"epochs": 2}}}) == []


# ----------------------------------------------------------------------------- plain values


def test_messages_show_plain_numbers():
    assert show(np.float64(0.5)) == "0.5" and show(np.int64(3)) == "3"
    assert show("x" * 100) == repr("x" * 100)[:57] + "..."
    assert number(np.float64(1.1000000000000003)) == "1.1" and number(4) == "4"


def test_catalogue_errors_name_the_line_of_the_file_and_plain_values(tiny_kaggle):
    csv = tiny_kaggle / "training_solutions_rev1.csv"
    df = pd.read_csv(csv)
    df.loc[4, "Class2.1"] = np.nan
    df.to_csv(csv, index=False)
    with pytest.raises(InputError) as caught:
        read_source("kaggle", tiny_kaggle)
    assert str(caught.value).endswith(": line 6, column 'Class2.1': vote fraction nan is not a number in [0, 1] "
                                      "(1 bad value(s) in this column)")
    line = csv.read_text().splitlines()[6 - 1]  # line 6 of the file, counting the header as line 1
    assert line.split(",")[0] == str(df.loc[4, "GalaxyID"])

    df = pd.read_csv(csv).fillna(0.5)
    df["GalaxyID"] = df["GalaxyID"].astype(float)
    df.loc[7, "GalaxyID"] = 1.5  # was always reported on line 2
    df.to_csv(csv, index=False)
    with pytest.raises(InputError) as caught:
        read_source("kaggle", tiny_kaggle)
    assert str(caught.value).endswith(": line 9: GalaxyID '1.5' is not an integer")  # the cell as written
    assert csv.read_text().splitlines()[9 - 1].startswith("1.5,")

    # the same catalogue as Parquet: no lines, its rows are counted from 0 (as pandas and pyarrow do)
    pd.read_csv(csv).to_parquet(tiny_kaggle / "training_solutions_rev1.parquet")
    csv.unlink()
    with pytest.raises(InputError) as caught:
        read_source("kaggle", tiny_kaggle)
    assert str(caught.value).endswith("training_solutions_rev1.parquet: row 7: GalaxyID 1.5 is not an integer")


def test_parquet_catalogue_errors_name_the_row(tmp_path, gz2_dir):
    raw = pd.read_csv(gz2_dir / "gz2_hart16_subset.csv")
    col = "t01_smooth_or_features_a01_smooth_weighted_fraction"
    raw.loc[3, col] = 1.5
    raw.to_parquet(tmp_path / "gz2_hart16_subset.parquet")
    with pytest.raises(InputError) as caught:
        read_source("gz2", tmp_path)
    assert f": row 3, column '{col}': vote fraction 1.5 is not a number in [0, 1]" in str(caught.value)


# ----------------------------------------------------------------------------- the real snakemake command


@pytest.fixture
def workflow_copy(tmp_path):
    from test_workflow import copy_workflow

    wd = copy_workflow(tmp_path / "wf")
    return wd, {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}


def dry_run(wd, *args, config=None):
    from test_workflow import smk

    out = smk(wd, "-n", *args, config=config, check=False)
    return out.returncode, out.stdout + out.stderr


def written(tmp_path, before) -> set:
    """What a run added to tmp_path, less Snakemake's own bookkeeping."""
    after = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    return {p for p in after - before if p.parts[1:2] != (".snakemake",) and p.name != "test-config.yaml"}


@pytest.mark.e2e
def test_dry_run_refuses_a_cut_name_that_is_a_path(tmp_path, workflow_copy):
    wd, before = workflow_copy
    bad = "../../../tmp/x"
    outside = Path("/tmp/x").exists()
    rc, text = dry_run(wd, config={"cut": bad, "cuts": {bad: {"classes": TWO_CLASSES}}})
    assert rc != 0 and f"config cut: {bad!r} {UNSAFE}" in text, text[-3000:]
    assert written(tmp_path, before) == set() and not (wd / "results").exists()
    assert Path("/tmp/x").exists() == outside


@pytest.mark.e2e
@pytest.mark.parametrize("dataset", ["..", "."])
def test_dry_run_refuses_a_dataset_that_is_a_path(tmp_path, workflow_copy, dataset):
    wd, before = workflow_copy
    rc, text = dry_run(wd, "--config", f"dataset={dataset}")
    assert rc != 0 and f"config dataset: {dataset!r} {UNSAFE}" in text, text[-3000:]
    assert written(tmp_path, before) == set()


@pytest.mark.e2e
def test_dry_run_unknown_keys_are_one_line_without_the_schema(workflow_copy):
    wd, _ = workflow_copy
    rc, text = dry_run(wd, "--config", "colour=red")
    assert rc != 0 and "config colour: unknown key; known keys: " in text and "did you mean" not in text
    assert "$schema" not in text and "additionalProperties" not in text and len(text.splitlines()) < 10, text
    rc, text = dry_run(wd, "--config", "seeds=1")
    assert rc != 0 and f"config seeds: unknown key; did you mean 'seed'? {AT}" in text, text


@pytest.mark.e2e
def test_dry_run_refuses_split_fractions_that_do_not_sum_to_one(workflow_copy):
    wd, _ = workflow_copy
    rc, text = dry_run(wd, config={"split": {"train": 0.8, "val": 0.2, "test": 0.1}})
    assert rc != 0, text[-3000:]
    assert "config split: the fractions must sum to 1, but train 0.8 + val 0.2 + test 0.1 = 1.1" in text
    assert "Building DAG" not in text


def test_dry_run_names_a_missing_data_folder_or_catalogue_in_one_line(workflow_copy, tmp_path):
    """A wrong data_dir (or an apply_to one) was an InputFunctionException with Snakemake's traceback
    and wildcards block; it is one line naming the key, before the DAG is built."""
    wd, _ = workflow_copy
    for config, message in (
            ({"source": "kaggle", "data_dir": str(tmp_path / "nope")}, f"config data_dir: {tmp_path / 'nope'}: "
             "no such folder"),
            ({"source": "kaggle", "data_dir": str(tmp_path)}, f"config data_dir: {tmp_path}/training_solutions_rev1"
             ".csv: Kaggle catalogue not found"),
            ({"classify": {"apply_to": {"o": {"source": "kaggle", "data_dir": "/nope"}}}},
             "config classify.apply_to.o.data_dir: /nope: no such folder")):
        rc, text = dry_run(wd, config=config)
        assert rc != 0 and message in text, text[-3000:]
        assert "InputFunctionException" not in text and "Building DAG" not in text


@pytest.mark.e2e
def test_dry_run_of_the_gz2_download_plans_the_download(workflow_copy, tmp_path):
    """source=gz2 with no data_dir downloads the Zoobot release: the data check took resources/gz2 for
    a folder the user named, and the DAG build stopped before and after the download."""
    wd, _ = workflow_copy
    rc, text = dry_run(wd, config={"source": "gz2", "data_dir": "", "cut": "guan9"})
    assert rc == 0 and "download_gz2" in text and "no such folder" not in text, text[-3000:]


def test_a_gz2_folder_with_the_zoobot_release_is_tracked_by_the_release(tmp_path, gz2_dir):
    """Beside a Hart16 catalogue the Zoobot release is what read_source reads, so it is the input."""
    import shutil

    from gzmorph.sources.gz2_remote import CATALOGUES
    from gzmorph.sources.plan import source_inputs

    folder = tmp_path / "both"
    shutil.copytree(gz2_dir, folder)
    spec = {"source": "gz2", "options": {}}
    assert [Path(p).name for p in source_inputs(spec, folder)][0].startswith("gz2_hart16")
    (folder / CATALOGUES["train"]).write_bytes(b"")
    assert source_inputs(spec, folder) == [str(folder / CATALOGUES["train"])]
    named = sorted(p.name for p in folder.glob("gz2_hart16*"))[0]  # a catalogue named in config wins
    assert source_inputs({"source": "gz2", "options": {"catalogue": named}}, folder) == [str(folder / named)]


def test_a_missing_image_folder_is_named_at_dag_build(tmp_path):
    """A Kaggle folder without images_training_rev1/ passed the check and failed in preprocess_images,
    after the source table and the selection."""
    from gzmorph.sources.plan import data_errors

    (tmp_path / "training_solutions_rev1.csv").write_text("GalaxyID\n")
    spec = {"source": "kaggle", "data_dir": str(tmp_path), "options": {}}
    assert data_errors({"data_dir": spec}) == [
        f"config data_dir: {tmp_path / 'images_training_rev1'}: no such image folder (the kaggle source reads its "
        "images from it)"]
    (tmp_path / "images_training_rev1").mkdir()
    assert data_errors({"data_dir": spec}) == []


def test_a_representation_from_elsewhere_is_checked_at_dag_build(tmp_path):
    """represent.model of another image size failed in import_representation, while represent_images
    was decoding every source galaxy for it; a file of another kind too."""
    import torch

    from gzmorph.models import create_model
    from gzmorph.represent import MODEL_FORMAT

    model = create_model("cnn", 37, 32, widths=(4, 8))
    path = tmp_path / "other32.pt"
    save_bundle(path, {"format": MODEL_FORMAT, "image_size": 32, "norm": {"mean": [0.1], "std": [0.2]},
                       "model_config": model.config, "state_dict": model.state_dict()}, MODEL_FORMAT)
    assert errors({"represent": {"model": str(path)}}) == [
        f"config represent.model: {path} is a representation of 32 px images; this run's representation "
        "images are 64 px: set represent.image_size: 32"]
    assert errors({"represent": {"model": str(path), "image_size": 32}}) == []
    save_bundle(tmp_path / "expert.pt", {"format": "gzmorph.expert/1", "trajectory": torch.zeros(2, 3)},
                "gzmorph.expert/1")
    (tmp_path / "notes.pt").write_text("not a model")
    assert errors({"represent": {"model": str(tmp_path / "expert.pt")}}) == [
        f"config represent.model: {tmp_path / 'expert.pt'}: not a gzmorph representation model file "
        "(gzmorph.expert/1)"]
    assert errors({"represent": {"model": str(tmp_path / "notes.pt")}}) == [
        f"config represent.model: {tmp_path / 'notes.pt'}: not a gzmorph representation model file"]


def test_a_zoobot_release_folder_may_keep_its_images_where_its_reader_looks(tmp_path):
    from gzmorph.sources.gz2_remote import CATALOGUES
    from gzmorph.sources.plan import data_errors

    (tmp_path / CATALOGUES["train"]).write_bytes(b"")
    (tmp_path / "images_gz2").mkdir()  # the reader also looks here (and in the folder itself)
    spec = {"source": "gz2", "data_dir": str(tmp_path), "options": {}}
    assert data_errors({"data_dir": spec}) == []
    (tmp_path / "gz2_hart16.csv").write_text("dr7objid\n")  # a Hart16 catalogue named in config: images/
    named = {**spec, "options": {"catalogue": "gz2_hart16.csv"}}
    assert data_errors({"data_dir": named}) == [
        f"config data_dir: {tmp_path / 'images'}: no such image folder (the gz2 source reads its images from it)"]


def test_a_hostile_model_header_is_no_traceback(tmp_path):
    import struct

    from gzmorph.io import bundle_header

    deep = b"[" * 1_000_000
    (tmp_path / "deep.pt").write_bytes(struct.pack("<Q", len(deep)) + deep)
    (tmp_path / "huge.pt").write_bytes(struct.pack("<Q", 2**63) + b"{}")
    assert bundle_header(tmp_path / "deep.pt") is None and bundle_header(tmp_path / "huge.pt") is None
    assert errors({"represent": {"model": str(tmp_path / "deep.pt")}}) == [
        f"config represent.model: {tmp_path / 'deep.pt'}: not a gzmorph representation model file"]


def test_the_dag_build_imports_no_torch():
    """Every `snakemake` command (even -n, --lint, --report, and each Slurm job) builds the DAG: the
    modules the Snakefile and rules import, and the config check of every shipped config, stay
    torch-free (the distill `augment` check loaded torch: +1 s per DAG build here)."""
    import re
    import subprocess
    import sys

    sources = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    modules = sorted({m for p in sources for m in re.findall(r"^\s*from (gzmorph[\w.]*) import", p.read_text(), re.M)})
    assert "gzmorph.config_check" in modules and "gzmorph.stages" in modules
    code = "\n".join([
        "import sys, yaml",
        "from pathlib import Path",
        *[f"import {m}" for m in modules],
        "from gzmorph.config_check import config_errors",
        "from gzmorph.settings import deep_merge",
        "base = yaml.safe_load(open('config.yaml'))",
        "for over in [{}, *[yaml.safe_load(p.read_text()) for p in sorted(Path('configs').glob('*.yaml'))]]:",
        "    config_errors(deep_merge(base, over), 'workflow/schemas/config.schema.yaml')",
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'matplotlib', 'sklearn')))",
    ])
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout[:500]


def test_apply_to_names_that_differ_only_in_case_are_refused():
    """classify/apply/M31 and classify/apply/m31 are one folder on macOS and Windows: one catalogue's
    predictions would replace the other's."""
    block = {"source": "kaggle", "data_dir": "x"}
    assert errors({"classify": {"apply_to": {"M31": block, "m31": block}}}) == [
        "config classify.apply_to: the catalogue names 'M31' and 'm31' differ only in case; on a case-insensitive "
        "file system they are one folder under results/"]


def test_an_explicit_umap_map_without_the_package_fails_at_dag_build(monkeypatch):
    """`umap` without umap-learn failed in the embed job, after the representation had trained; `auto`
    is left to the job, whose environment decides (with --sdm conda it is not this one)."""
    import importlib.util

    from gzmorph.represent_settings import workflow_options

    real = importlib.util.find_spec
    for installed in (False, True):
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "umap" and installed
                            else None if n == "umap" else real(n, *a))
        assert workflow_options({"map_method": "auto"})[0]["map_method"] == "auto"
        umap = errors({"represent": {"map_method": "umap"}})
        assert umap == ([] if installed else [
            "config represent.map_method: umap needs the umap-learn package, which this environment lacks "
            "(pip install 'gzmorph[umap]'); or choose pca"])


def test_a_representation_from_elsewhere_gets_images_cropped_as_it_was_trained(tmp_path):
    """represent_images cropped the run's way (crop_fraction), whatever the imported model was trained
    on, while `gzmorph embed` used the model's recorded crop: two scales for one model."""
    from gzmorph.models import create_model
    from gzmorph.represent import MODEL_FORMAT
    from gzmorph.represent_settings import representation_crop

    model = create_model("cnn", 37, 64, widths=(4, 8))
    bundle = {"format": MODEL_FORMAT, "image_size": 64, "norm": {"mean": [0.1], "std": [0.2]},
              "model_config": model.config, "state_dict": model.state_dict()}
    save_bundle(tmp_path / "old.pt", bundle, MODEL_FORMAT)  # a file from before the record: the run's crop
    save_bundle(tmp_path / "wide.pt", {**bundle, "preprocess": {"crop_fraction": 0.9}}, MODEL_FORMAT)
    config = deep_merge(copy.deepcopy(BASE), {"crop_fraction": 0.5})
    assert representation_crop(config) == 0.5
    assert representation_crop(deep_merge(config, {"represent": {"model": str(tmp_path / "old.pt")}})) == 0.5
    assert representation_crop(deep_merge(config, {"represent": {"model": str(tmp_path / "wide.pt")}})) == 0.9
    smk = (REPO / "workflow" / "rules" / "represent.smk").read_text()
    assert "crop_fraction=REPRESENT_CROP" in smk and "REPRESENT_CROP = representation_crop(config)" in smk
