"""The whole configuration checked when the DAG is built, before any rule is defined.

:func:`config_errors` returns one line per error, each naming the key: the JSON schema's types
and ranges (``workflow/schemas/config.schema.yaml``, with a "did you mean" for a misspelt key),
names that become folders (``dataset``, cut names, ``classify.apply_to`` names), the split
fractions, every cut definition, the local pretrained encoders (they must exist, and fit the
backbone as far as their config.json and headers tell), and the stage blocks: ``classify:`` and
``represent:`` through their settings classes, ``distill:`` through its
presets and the dataclasses of its nested blocks (:mod:`gzmorph.distill_settings`), including the
combinations that would only fail deep in training.  :func:`check_config` raises them as one
:class:`ConfigError`; :func:`check_inside` keeps every path a rule writes inside ``results/<dataset>/``.

Torch-free and quick: ``workflow/rules/common.smk`` calls it at every DAG build.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
from dataclasses import fields
from pathlib import Path

from .io import InputError
from .stages import staged

#: how messages point to the schema (relative to the repository)
SCHEMA_FILE = "workflow/schemas/config.schema.yaml"
DISTILL_SETTINGS_FILE = "src/gzmorph/distill_settings.py"
#: dataset, cut and apply_to names become folder and file names under results/
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
NAME_RULE = "use at most 100 letters, digits, '_' and '-', starting with a letter or digit"
SPLITS = ("train", "val", "test")
#: split fractions must sum to 1 within this (gzmorph.curate.assign_splits allows ~1e-5)
SPLIT_TOLERANCE = 1e-6


class ConfigError(InputError):
    """Bad configuration: ``errors`` holds one line per problem, each naming its key."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def check_config(config: dict, schema: dict | str | Path) -> None:
    """Raise :class:`ConfigError` listing every problem of ``config`` (nothing when it is fine)."""
    errors = config_errors(config, schema)
    if errors:
        raise ConfigError(errors)


def config_errors(config: dict, schema: dict | str | Path) -> list[str]:
    """Every problem of ``config``, one line each.  Types, ranges and names first; the rules that
    combine several values (split sum, cuts, stage blocks) only once those are right."""
    if not isinstance(schema, dict):
        import yaml

        schema = yaml.safe_load(Path(schema).read_text())
    errors = schema_errors(config, schema) + name_errors(config)
    if errors:
        return errors
    return [*split_errors(config), *source_errors(config), *cut_errors(config), *classify_errors(config),
            *represent_errors(config), *pretrained_errors(config), *model_kwargs_errors(config),
            *distill_errors(config), *augment_errors(config)]


# ----------------------------------------------------------------------------- formatting


def plain(value):
    """A numpy scalar as the Python number it holds (messages show ``0.5``, not ``np.float64(0.5)``)."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return value


def show(value, limit: int = 60) -> str:
    """``repr`` of a plain value, shortened to ``limit`` characters."""
    text = repr(plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def number(x) -> str:
    """A number for a message: integers as they are, floats to 6 significant digits."""
    x = plain(x)
    return str(x) if isinstance(x, int) else f"{x:.6g}"


def key_path(config, path) -> str:
    """``a.b[2].c`` for the keys (and list positions) ``path`` of ``config``; odd keys quoted."""
    out, node = "", config
    for part in path:
        if isinstance(node, list):
            out += f"[{part}]"
        else:
            text = str(part)
            out += f".{text}" if re.fullmatch(r"[A-Za-z0-9_-]+", text) else f"[{text!r}]"
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out.lstrip(".")


def where(key: str) -> str:
    return f"config {key}" if key else "config"


def unknown_key(key: str, name, known, pointer: str) -> str:
    """``config <key>: unknown key; did you mean 'x'? (<pointer>)``: the closest known key when one
    is close, else the known keys."""
    known = sorted(map(str, known))
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    return f"{where(key)}: unknown key; {hint} ({pointer})"


# ----------------------------------------------------------------------------- schema


def schema_errors(config: dict, schema: dict, pointer: str = SCHEMA_FILE) -> list[str]:
    """The schema's verdict on ``config``, one line per error (never the schema itself)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    out = []
    for err in errors:
        for line in _describe(err, config, pointer):
            if line not in out:
                out.append(line)
    return out


#: validators that fail only values of the right type (an alternative of oneOf that was meant)
_INSIDE = ("additionalProperties", "required", "minItems", "maxItems", "minProperties", "propertyNames")


def _command_line_hint(err) -> str:
    """Why a value of the wrong type may have come from ``--config``: Snakemake passes a nested
    value there as text (``classify={epochs: 3}`` gives '3') and an empty one as null."""
    if err.validator not in ("type", "oneOf", "anyOf"):
        return ""
    if err.instance is None:
        return ("; an empty --config value (key=) reads as null: give an empty text in a --configfile "
                "(key: \"\")")
    if isinstance(err.instance, str) and len(err.absolute_path) > 1:
        import yaml

        try:
            parsed = yaml.safe_load(err.instance)
        except yaml.YAMLError:
            return ""
        if parsed is not None and not isinstance(parsed, str):
            return "; --config passes nested values as text: put nested keys in a --configfile"
    return ""


def _describe(err, config, pointer: str) -> list[str]:
    path = list(err.absolute_path)
    key = key_path(config, path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = err.schema.get("properties", {})
        return [unknown_key(key_path(config, [*path, k]), k, allowed, pointer)
                for k in err.instance if k not in allowed]
    if err.validator in ("oneOf", "anyOf") and err.context:
        here = [e for e in err.context if not e.relative_path]
        inside = [e for e in err.context if e.relative_path or e.validator in _INSIDE]
        if inside:  # the value has the type of one alternative: what is wrong inside it
            from jsonschema.exceptions import best_match

            return _describe(best_match(inside), config, pointer)
        prefix = repr(err.instance)
        parts = [e.message[len(prefix):].strip() if e.message.startswith(prefix) else e.message for e in here]
        return [f"{where(key)}: {show(err.instance)} {' and '.join(dict.fromkeys(parts))} ({pointer})"
                f"{_command_line_hint(err)}"]
    message = err.message
    if err.validator == "minProperties":
        message = f"{show(err.instance)} needs at least {err.validator_value} entries"
    prefix = repr(err.instance)
    if message.startswith(prefix):
        message = show(err.instance) + message[len(prefix):]
    return [f"{where(key)}: {message} ({pointer}){_command_line_hint(err)}"]


# ----------------------------------------------------------------------------- names and paths


def safe_name(name) -> bool:
    return isinstance(name, str) and NAME.fullmatch(name) is not None


def name_errors(config: dict) -> list[str]:
    """Names that become folders and files under results/: the dataset, cut and apply_to names."""
    out = []

    def check(key: str, what: str, name, empty_ok: bool = False):
        if isinstance(name, str) and not (empty_ok and name == "") and not safe_name(name):
            out.append(f"{where(key)}: {what}{name!r} is not a safe name; {NAME_RULE} "
                       "(it names a folder under results/)")

    check("dataset", "", config.get("dataset"), empty_ok=True)
    check("cut", "", config.get("cut"))
    cuts = config.get("cuts")
    for name in cuts if isinstance(cuts, dict) else {}:
        check("cuts", "the cut name ", str(name))
    classify = config.get("classify")
    apply_to = classify.get("apply_to") if isinstance(classify, dict) else None
    for name in apply_to if isinstance(apply_to, dict) else {}:
        check("classify.apply_to", "the catalogue name ", str(name))
    folded: dict[str, str] = {}
    for name in map(str, apply_to if isinstance(apply_to, dict) else {}):  # one folder on macOS and Windows
        if name.casefold() in folded:
            out.append(f"config classify.apply_to: the catalogue names {folded[name.casefold()]!r} and {name!r} differ "
                       "only in case; on a case-insensitive file system they are one folder under results/")
        folded.setdefault(name.casefold(), name)
    sources = config.get("sources")
    for name in sources if isinstance(sources, dict) else {}:
        check("sources", "the source name ", str(name))
    if not out and not config.get("dataset") and isinstance(config.get("cut"), str):
        derived = dataset_name(config)  # the source names and the cut, joined
        if not safe_name(derived):
            out.append(f"config dataset: the name made of the source names and the cut ({derived[:40]!r}..., "
                       f"{len(derived)} characters) is longer than 100; set dataset")
    return out


def dataset_name(config: dict) -> str:
    """The run's name: ``dataset``, or ``<source>-<cut>`` when it is empty (several sources:
    their names joined by ``-``, then the cut)."""
    if config.get("dataset"):
        return config["dataset"]
    if config.get("sources"):
        return f"{'-'.join(map(str, config['sources']))}-{config['cut']}"
    return f"{config['source']}-{config['cut']}"


def check_inside(path: str, root: str, key: str) -> str:
    """``path`` unchanged when it lies inside the folder ``root`` (lexically: ``..`` counted, links
    not followed); else an :class:`InputError` naming ``key``."""
    norm_root = posixpath.normpath(root)
    norm = posixpath.normpath(path)
    if norm_root != root.rstrip("/") or posixpath.isabs(path) or not norm.startswith(norm_root + "/"):
        raise InputError(f"{key}: {path!r} is not inside {root.rstrip('/')}/ "
                         f"(check the dataset, cut and catalogue names)")
    return path


# ----------------------------------------------------------------------------- top level


def split_errors(config: dict) -> list[str]:
    fr = config.get("split") or {}
    values = {s: fr.get(s, 0) for s in SPLITS}
    out = []
    total = sum(values.values())
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=SPLIT_TOLERANCE):
        terms = " + ".join(f"{s} {number(v)}" for s, v in values.items())
        out.append(f"config split: the fractions must sum to 1, but {terms} = {number(total)}")
    if values["train"] <= 0:
        out.append("config split.train: must be above 0 (the models train on it)")
    chosen = staged(config)
    needs = {"val": [s for s in ("classify",) if s in chosen],
             "test": [s for s in ("classify", "distill") if s in chosen]}
    for split, stages in needs.items():
        if stages and values[split] <= 0:
            out.append(f"config split.{split}: must be above 0: {' and '.join(stages)} "
                       f"{'needs' if len(stages) == 1 else 'need'} {split} galaxies of every class")
    return out


def source_errors(config: dict) -> list[str]:
    """The source blocks: a table source's settings, data_dir where one is needed, several sources
    (gzmorph.sources.plan)."""
    from .sources.plan import spec_errors

    return spec_errors(config)


def cut_errors(config: dict) -> list[str]:
    """Every cut under ``cuts:`` parsed (not only the one in use), ``cut`` and each source's cut known."""
    from .cuts import cut_from_config, get_cut

    out = []
    user = config.get("cuts") or {}
    for name, spec in user.items():
        try:
            cut_from_config(str(name), spec)
        except InputError as err:
            out.append(str(err))
    used = {"cut": config["cut"]}
    for name, block in (config.get("sources") or {}).items():
        if block.get("cut"):
            used[f"sources.{name}.cut"] = block["cut"]
    for key, cut in used.items():
        if cut not in user:
            try:
                get_cut(cut, user)
            except InputError as err:
                out.append(str(err).replace("config cut:", f"config {key}:", 1))
    return out if out else label_column_errors(config)


def label_column_errors(config: dict) -> list[str]:
    """A label cut of a table source reads a declared label column (``table.label_columns``; the
    folder layout's is ``class``): only those are read as text (a class named ``NA`` or ``None`` stays
    one) and checked to be filled when the source is read, not at curation."""
    from .cuts import get_cut
    from .sources.plan import several, source_specs
    from .sources.table import FOLDER_LABEL

    try:
        specs = source_specs(config)
    except InputError:  # a table block source_errors names
        return []
    out = []
    for name, spec in specs.items():
        if spec["source"] != "table":
            continue
        cut = get_cut(spec["cut"], config.get("cuts") or {})
        if cut.kind != "label":
            continue
        opts = spec["options"]
        declared = [FOLDER_LABEL] if opts["layout"] == "folder" else list(opts["label_columns"])
        if cut.column not in declared:
            key = f"sources.{name}.table" if several(config) else "table"
            where = (f"the folder layout's label column is {FOLDER_LABEL!r}" if opts["layout"] == "folder" else
                     f"add it to config {key}.label_columns (now {declared})")
            out.append(f"config cuts.{cut.name}.column: {cut.column!r} is not a label column of source {name!r}: "
                       f"{where}")
    return out


def _stage(err: InputError) -> str:
    text = str(err)
    return text if text.startswith("config") else f"config {text}"


def classify_errors(config: dict) -> list[str]:
    from .classify_settings import ClassifySettings

    try:
        settings = ClassifySettings.from_config(config.get("classify"))
    except InputError as err:
        return [_stage(err)]
    if "classify" in staged(config) and settings.models == ["hiwl"] and config["cut"] != "hiwl5":
        return [f"config classify.models: hiwl runs only for the hiwl5 cut, so cut {config['cut']!r} leaves no "
                "classifier to train; add flat"]
    return []


def model_kwargs_errors(config: dict) -> list[str]:
    """``model_kwargs`` may not name the weights timm would load itself (``checkpoint_path``, the
    pretrained ones: :data:`gzmorph.pretrained.NOT_MODEL_ARGS`); the weights come from ``pretrained``."""
    from .pretrained import NOT_MODEL_ARGS, THREE_CHANNELS

    out = []
    for stage in ("classify", "represent"):
        given = (config.get(stage) or {}).get("model_kwargs") or {}
        if not isinstance(given, dict):
            continue  # the schema says so
        for key in sorted(set(given) & set(NOT_MODEL_ARGS)):
            out.append(f"config {stage}.model_kwargs.{key}: not a setting of the backbone (weights come only "
                       f"from {stage}.pretrained, a local encoder)")
        if given.get("in_chans", 3) != 3:
            out.append(f"config {stage}.model_kwargs.in_chans: {show(given['in_chans'])}: {THREE_CHANNELS}")
    return out


def represent_errors(config: dict) -> list[str]:
    from .represent_settings import workflow_options

    try:
        rep, _ = workflow_options(config.get("represent"), config.get("seed", 0))
    except InputError as err:
        return [_stage(err)]
    ft, out = rep["finetune"], []
    if ft["budgets"] == "auto" and ft["min_budget"] > ft["max_budget"]:
        out.append(f"config represent.finetune: min_budget ({ft['min_budget']}) is above max_budget "
                   f"({ft['max_budget']}), so no label budget is left")
    from .tree import KAGGLE_COLUMNS

    label, threshold = ft["label"], ft["threshold"]
    if label in KAGGLE_COLUMNS:  # a vote fraction in [0, 1] (Class1.1 ... Class11.6)
        if threshold is None:
            out.append(f"config represent.finetune.label: {label} is a vote fraction; set "
                       "represent.finetune.threshold to split it into two classes")
        elif not 0 < threshold < 1:
            out.append(f"config represent.finetune.threshold: {number(threshold)} leaves every galaxy on one side "
                       f"of {label} (a fraction in [0, 1]); choose a value between 0 and 1")
    if ft["not_ring_max"] >= ft["ring_min"]:
        out.append(f"config represent.finetune: not_ring_max ({number(ft['not_ring_max'])}) must be below "
                   f"ring_min ({number(ft['ring_min'])}), else a galaxy is both a ring and not one")
    return out


def augment_errors(config: dict) -> list[str]:
    """Each stage's ``augment`` setting as its training would read it: a wrong option or value is an
    error here, not when a batch first draws that op, partway through training."""
    from . import distill_settings as ds
    from .augment_settings import AugmentConfig, check_augment
    from .classify_settings import ClassifySettings
    from .represent_settings import workflow_options

    out = []
    try:  # the blocks' own errors are reported by their checks above
        checks = [("classify", lambda: AugmentConfig.from_value(ClassifySettings.from_config(
            config.get("classify")).augment))]
        rep, _ = workflow_options(config.get("represent"), config.get("seed", 0))
        checks += [("represent", lambda: AugmentConfig.from_value(rep["augment"])),
                   ("represent.finetune", lambda: AugmentConfig.from_value(rep["finetune"]["augment"]))]
        dist = ds.distill_settings(config.get("distill") or {})
        checks.append(("distill", lambda: check_augment(dist["augment"], dist["cutout"])))
    except InputError:
        return out
    for block, check in checks:
        try:
            check()
        except InputError as err:
            out.append(f"config {block}.{err}")
    return out


def pretrained_errors(config: dict) -> list[str]:
    """The local encoders that ``classify.pretrained`` and ``represent.pretrained`` name exist (a file,
    or a folder with its weights): gzmorph never downloads one, so an absent one fails here, not in
    the training job; and fit the stage's backbone as far as their JSON and headers tell
    (:func:`gzmorph.pretrained.encoder_backbone_error`)."""
    from .pretrained import encoder_backbone_error, encoder_path_error

    out = []
    for stage in ("classify", "represent"):
        block = config.get(stage)
        path = block.get("pretrained") if isinstance(block, dict) else None
        if isinstance(path, str) and path:
            error = encoder_path_error(path)
            backbone = _backbone(config, stage) if not error else None
            if backbone:
                try:
                    error = encoder_backbone_error(path, backbone)
                except InputError as err:  # an unreadable config.json
                    error = str(err)
            if error:
                out.append(f"config {stage}.pretrained: {error}")
    block = config.get("represent")
    model = block.get("model") if isinstance(block, dict) else None
    if isinstance(model, str) and model and not Path(model).is_file():
        out.append(f"config represent.model: {model}: no such file (a gzmorph representation model file, "
                   "e.g. results/<dataset>/represent/model.pt of another run)")
    elif isinstance(model, str) and model:
        out += _imported_representation_errors(config, model)
    return out


def _backbone(config: dict, stage: str) -> str | None:
    """The backbone that the ``stage`` block trains from its ``pretrained`` encoder (after its preset),
    None where the block's own check reports an error or nothing is trained (``represent.model``)."""
    from .classify_settings import ClassifySettings
    from .represent_settings import RepresentSettings

    try:
        if stage == "classify":
            return ClassifySettings.from_config(config.get("classify")).backbone
        rep = RepresentSettings.from_config(config.get("represent"))
    except InputError:
        return None
    return None if rep.model else rep.backbone


def _imported_representation_errors(config: dict, model: str) -> list[str]:
    """A representation trained elsewhere must be one, of this run's representation image size (its
    JSON header says, read without torch): found before every source galaxy is decoded for it."""
    from .io import bundle_header
    from .represent_settings import representation_image_size

    header = bundle_header(model)
    fmt = str((header or {}).get("format", ""))
    if not fmt.startswith("gzmorph.representation"):
        return [f"config represent.model: {model}: not a gzmorph representation model file"
                + (f" ({fmt})" if fmt else "")]
    size = ((header.get("bundle") or {}).get("image_size"))
    try:
        want = representation_image_size(config)
    except (InputError, KeyError, TypeError):
        return []  # the represent block's own errors say why
    if isinstance(size, int) and size != want:
        return [representation_size_error(model, size, want)]
    return []


def representation_size_error(model, size: int, want: int) -> str:
    """A representation from elsewhere (``represent.model``) of ``size`` px where the run makes ``want``."""
    return (f"config represent.model: {model} is a representation of {size} px images; this run's "
            f"representation images are {want} px: set represent.image_size: {size}")


# ----------------------------------------------------------------------------- distill


def _type_of(annotation) -> str:
    """The JSON-schema type of a dataclass field's annotation ("int" or int), "" when not checked."""
    name = getattr(annotation, "__name__", str(annotation))
    return {"int": "integer", "float": "number", "bool": "boolean"}.get(name, "")


def _ok_type(value, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return True


#: (lowest, whether the lowest is allowed, highest) per key of the nested distill blocks
_RANGES = {
    "epochs": (1, True, None), "lr": (0, False, None), "batch_size": (1, True, None),
    "syn_steps": (1, True, None), "iterations": (1, True, None), "lr_img": (0, False, None),
    "lr_alpha": (0, True, None), "alpha0": (0, False, None), "batch_syn": (0, True, None),
    "expert_epochs": (1, True, None), "max_start_epoch": (0, True, None),
    "check_every": (1, True, None), "r_down": (0, True, None), "r_up": (0, True, None),
    "patience": (1, True, None), "ft_every": (1, True, None), "ft_factor": (0, False, 1),
    "lr_floor": (0, True, None),
    "n_nets": (1, True, None), "baseline_lr": (0, False, None), "full_epochs": (1, True, None),
    "full_lr": (0, False, None), "full_batch_size": (1, True, None),
}


#: the allowed values of the nested distill blocks' string keys
_CHOICES = {"alpha_param": ("direct", "log")}  # gzmorph.distill_settings.ALPHA_PARAMS


def _block_errors(block: dict, cls_fields: dict, key: str, cls_name: str) -> list[str]:
    """Unknown keys, types and ranges of one nested distill block."""
    out = []
    for name, value in block.items():
        k = f"{key}.{name}"
        if name not in cls_fields:
            out.append(unknown_key(k, name, cls_fields, f"{DISTILL_SETTINGS_FILE}: {cls_name}"))
            continue
        kind = _type_of(cls_fields[name].type)
        if not _ok_type(value, kind):
            out.append(f"{where(k)}: {show(value)} is not of type {kind!r} "
                       f"({DISTILL_SETTINGS_FILE}: {cls_name})")
            continue
        choices = _CHOICES.get(name)
        if choices and value not in choices:
            out.append(f"{where(k)}: {show(value)} is not one of {list(choices)}")
            continue
        low, inclusive, high = _RANGES.get(name, (None, True, None))
        if low is not None and (value < low or (value == low and not inclusive)):
            rule = f"at least {low}" if inclusive else f"above {low}"
            out.append(f"{where(k)}: {number(value)} must be {rule}")
        elif high is not None and value > high:
            out.append(f"{where(k)}: {number(value)} must be at most {high}")
    return out


def distill_errors(config: dict) -> list[str]:
    """The nested blocks of ``distill:`` against their dataclasses, and the combinations of values
    that would only fail deep in training (an expert shorter than what matching needs)."""
    from . import distill_settings as ds

    try:
        settings = ds.distill_settings(config.get("distill") or {})
    except InputError as err:
        return [_stage(err)]
    blocks = {"expert": ds.ExpertTraining, "mtt": ds.MTTOptions, "stm": ds.STMOptions,
              "eval": ds.EvalOptions}
    out = []
    for block, cls in blocks.items():
        if not isinstance(settings[block], dict):
            out.append(f"config distill.{block}: {show(settings[block])} is not of type 'object'")
            continue
        out += _block_errors(settings[block], {f.name: f for f in fields(cls)}, f"distill.{block}",
                             cls.__name__)
    method_fields = {f.name: f for cls in (ds.MTTOptions, ds.STMOptions) for f in fields(cls)}
    overrides = settings["ipc_overrides"]
    if not isinstance(overrides, dict):
        out.append(f"config distill.ipc_overrides: {show(overrides)} is not of type 'object'")
        overrides = {}
    for ipc, over in overrides.items():
        k = f"distill.ipc_overrides.{ipc}"
        if isinstance(ipc, bool) or not (isinstance(ipc, int) or str(ipc).isdigit()) or int(ipc) < 1:
            out.append(f"config distill.ipc_overrides: {ipc!r} is not an IPC (an integer of at least 1)")
        elif not isinstance(over, dict):
            out.append(f"{where(k)}: {show(over)} is not of type 'object'")
        else:
            out += _block_errors(over, method_fields, k, "MTTOptions or STMOptions")
    if out:
        return out
    epochs = settings["expert"]["epochs"]
    if "mtt" in settings["methods"]:
        for ipc in settings["ipc"]:
            opts = ds.distill_method_options(settings, "mtt", ipc)
            start, m = opts["max_start_epoch"], opts["expert_epochs"]
            if start + m > epochs:
                key = "distill.mtt"
                if opts != settings["mtt"]:
                    key += f" (ipc {ipc}, with ipc_overrides)"
                out.append(f"config {key}: max_start_epoch ({start}) + expert_epochs ({m}) = {start + m} is "
                           f"more than the experts' epochs (distill.expert.epochs = {epochs}); lower them or "
                           "train longer experts")
                break
    if "stm" in settings["methods"] and epochs < 2:
        out.append(f"config distill.expert.epochs: STM needs experts of at least 2 epochs, not {epochs}")
    if "distill" in staged(config):
        from .classify_settings import curated_image_size

        curated = curated_image_size(config)
        if settings["image_size"] % 2 ** settings["depth"]:
            out.append(f"config distill.image_size: {settings['image_size']} px is not divisible by 2^depth = "
                       f"{2 ** settings['depth']} (the ConvNet halves it at each of its {settings['depth']} blocks)")
        if settings["image_size"] > curated:
            out.append(f"config distill.image_size: {settings['image_size']} px is larger than the curated images "
                       f"({curated} px: classify.image_size, else image_size); the experts only shrink them")
    return out
