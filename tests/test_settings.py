"""One place for each default: the settings classes, config.yaml and the schema agree.

The stage blocks' defaults live in their settings classes; config.yaml shows them (every key, the
same value; a key that a preset sets is shown commented out, since a value given in config.yaml
would override every preset); the schema checks types and ranges and holds no default of its own.
Presets state only what they change of the default preset, which is the settings class itself.
"""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from gzmorph.classify_settings import CLASSIFY_PRESETS, ClassifySettings
from gzmorph.represent_settings import REPRESENT_PRESETS, RepresentSettings
from gzmorph.settings import preset_keys

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
STAGES = {"classify": ClassifySettings, "represent": RepresentSettings}
PRESETS = {"classify": CLASSIFY_PRESETS, "represent": REPRESENT_PRESETS}


def schema_keys(node: dict) -> dict:
    """Property name -> nested property names (or None for a leaf) of a schema object."""
    return {k: schema_keys(v) if "properties" in v else None for k, v in node.get("properties", {}).items()}


def class_keys(cls) -> dict:
    return {f.name: class_keys(f.default_factory) if callable(getattr(f, "default_factory", None))
            and is_dataclass(f.default_factory) else None for f in fields(cls)}


def commented_keys(stage: str) -> dict:
    """The ``  # key: value`` lines of a stage block of config.yaml, read as YAML."""
    import re

    out, block = {}, None
    for line in (REPO / "config.yaml").read_text().splitlines():
        if re.match(r"^\w", line):
            block = line.split(":")[0]
        elif block == stage and re.match(r"^  # \w+: ", line):
            out.update(yaml.safe_load(line[4:]))
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_config_yaml_shows_every_default_of_the_stage(stage):
    defaults, by_presets = asdict(STAGES[stage]()), preset_keys(PRESETS[stage])
    assert CONFIG[stage] == {k: v for k, v in defaults.items() if k not in by_presets}
    assert commented_keys(stage) == {k: defaults[k] for k in by_presets}  # shown, commented out


@pytest.mark.parametrize("stage", STAGES)
def test_schema_names_exactly_the_settings_keys(stage):
    assert schema_keys(SCHEMA["properties"][stage]) == class_keys(STAGES[stage])


def test_schema_holds_no_defaults():
    def defaults(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "default":
                    yield path
                yield from defaults(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from defaults(v, f"{path}[{i}]")
    assert list(defaults(SCHEMA)) == []


def test_config_yaml_is_valid_and_complete_at_the_top_level():
    jsonschema.validate(CONFIG, SCHEMA)
    assert set(CONFIG) == set(SCHEMA["properties"])  # every top-level key has its value in config.yaml


def test_config_yaml_top_level_values_are_the_librarys_defaults():
    """The values config.yaml shows are the ones the library falls back on (commands, old files)."""
    from gzmorph.preprocess import DEFAULT_CROP_FRACTION, DEFAULT_MAX_IMAGE_PIXELS
    from gzmorph.sources.gz2 import DEFAULT_FRACTION_KIND

    assert CONFIG["crop_fraction"] == DEFAULT_CROP_FRACTION
    assert CONFIG["max_image_pixels"] == DEFAULT_MAX_IMAGE_PIXELS
    assert CONFIG["gz2"]["fraction_kind"] == DEFAULT_FRACTION_KIND


def test_training_options_take_their_defaults_from_the_settings():
    from gzmorph.classify import TrainConfig

    base = asdict(ClassifySettings())
    assert {k: v for k, v in asdict(TrainConfig()).items() if k in base} == base


def test_representation_training_options_take_their_defaults_from_the_settings():
    from gzmorph.represent import RepresentConfig
    from gzmorph.represent_settings import TRAIN_KEYS

    cfg, settings = asdict(RepresentConfig()), asdict(RepresentSettings())
    assert {k: cfg[k] for k in (*TRAIN_KEYS, "pretrained", "patience")} == {
        k: settings[k] for k in (*TRAIN_KEYS, "pretrained", "patience")}


def test_distill_schema_names_the_settings_keys_and_the_default_preset_is_the_class():
    from gzmorph.distill_settings import DistillSettings
    from gzmorph.distill_settings import DISTILL_PRESETS, distill_settings

    assert set(SCHEMA["properties"]["distill"]["properties"]) == {f.name for f in fields(DistillSettings)} | {"preset"}
    assert CONFIG["distill"] == {"preset": "default"}
    assert distill_settings(CONFIG["distill"]) == DISTILL_PRESETS["default"] == asdict(DistillSettings())


def test_the_conda_environment_installs_this_checkout_from_where_snakemake_builds_it():
    """Snakemake creates the environment from a copy of envs/gzmorph.yaml in .snakemake/conda/, so the
    pip path is relative to that copy; '-e ..' pointed at .snakemake, which is no Python project."""
    env = yaml.safe_load((REPO / "envs" / "gzmorph.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    (editable,) = [p.split(None, 1)[1] for p in pip if p.startswith("-e ")]
    assert ((REPO / ".snakemake" / "conda" / editable).resolve() / "pyproject.toml").is_file()


def test_every_third_party_import_is_a_declared_dependency():
    """Dependencies are derived from the code: each package that src/gzmorph, the rule scripts and the
    rules import is in pyproject.toml (scipy was imported directly but came only through
    scikit-learn, whose range allows a SciPy older than the code needs), or in an extra."""
    import ast
    import re
    import sys
    import tomllib
    from importlib.metadata import packages_distributions

    files = [*(REPO / "src" / "gzmorph").rglob("*.py"), *(REPO / "workflow" / "scripts").glob("*.py")]
    top = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                top |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top.add(node.module.split(".")[0])
    for f in [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        top |= {m.split(".")[0] for m in re.findall(r"^\s*(?:from|import) ([\w.]+)", f.read_text(), re.M)}
    third = sorted(top - set(sys.stdlib_module_names) - {"gzmorph", "__future__"})
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~\[ ;]", d)[0].lower().replace("_", "-")
                for d in [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]}
    installed = packages_distributions()
    optional = {"umap": ["umap-learn"]}  # imported where installed; not in this environment

    def dists(module):
        return installed.get(module) or optional.get(module, [module])

    missing = {m: dists(m) for m in third if not any(d.lower().replace("_", "-") in declared for d in dists(m))}
    assert missing == {}, missing
