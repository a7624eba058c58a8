"""Pretrained encoders from local files: timm backbones and the weights a model starts from.

gzmorph never downloads weights.  An encoder is named by a local path (``pretrained=`` of
:func:`gzmorph.models.create_model`, the ``pretrained`` key of the ``classify:`` and ``represent:``
blocks, ``gzmorph finetune ENCODER``), one of:

* a folder in the Hugging Face / timm layout: ``config.json`` (timm writes ``architecture``,
  ``num_classes``, ``num_features``, ``model_args``, ``pretrained_cfg``) beside ``model.safetensors``
  or ``pytorch_model.bin`` (what ``timm.models.push_to_hub.save_for_hf`` writes, and how Zoobot's
  encoders are published);
* a ``.safetensors`` file of a state dict;
* a timm / torch checkpoint (``.pth``, ``.pt``, ``.bin``, ``.pth.tar``): a state dict, or a dict holding
  one under ``state_dict_ema``, ``model_ema``, ``state_dict`` or ``model`` (timm's order), read with
  ``torch.load(weights_only=True)``: a pickle that needs code to load is refused, never run;
* a gzmorph model file (a representation or flat classifier ``model.pt``): its backbone.

The classifier of a checkpoint is dropped; every other weight of the backbone must be in the file
with its shape, else one :class:`~gzmorph.io.InputError` names the file and a few missing or
unexpected keys.  The kind of a file is read from its first bytes, never from its extension.

timm backbones are any timm architecture named ``timm/<architecture>`` (``timm/convnext_nano``), built
with ``pretrained=False`` and ``num_classes=0`` (pooled features), so timm never reaches the network
either.  The options a timm backbone is built with from an encoder are those its config.json records
(:func:`encoder_model_args`), whoever builds it.  An encoder of other than 3 input channels (a 1-channel
greyscale stem) is refused: gzmorph feeds 3-channel images, a greyscale model its grey image repeated.
Nothing here imports torch or timm at import time: the DAG build uses :func:`encoder_path_error` and
:func:`encoder_backbone_error`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .io import BUNDLE_HEADER_KEY, InputError, bundle_header, one_line

#: the prefix of a timm architecture in the model registry
TIMM_PREFIX = "timm/"
#: how :func:`gzmorph.models.list_models` shows the timm backbones
TIMM_NAMES = "timm/<any timm architecture>"
CONFIG_FILE = "config.json"
#: the top-level key of an exported encoder's config.json that holds gzmorph's input settings
EXPORT_KEY = "gzmorph"
#: the weights of an encoder folder, in the order looked for
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: where a checkpoint dict keeps its state dict, in the order looked for (as timm's load_state_dict)
STATE_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
#: wrapper prefixes of DDP and torch.compile, removed from the keys of a checkpoint
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
NO_DOWNLOAD = ("gzmorph never downloads weights: give a local folder with config.json and model.safetensors, "
               "a .safetensors file, a timm/torch checkpoint or a gzmorph model file")
#: model_args of a config.json that are not the architecture's to take from the file
NOT_MODEL_ARGS = ("num_classes", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path",
                   "cache_dir", "device", "dtype")
#: the registered models that start only from a gzmorph model file of their own kind (no other
#: encoder has their weights); :mod:`gzmorph.models` refuses any other with :func:`gzmorph_only_error`
GZMORPH_ONLY = ("cnn", "convnet_d3")
#: why an encoder or a backbone of other than 3 input channels is refused (every such message says it)
THREE_CHANNELS = "gzmorph feeds 3-channel images (a greyscale model its grey image as three equal channels)"


# ----------------------------------------------------------------------------- paths (torch-free)


def encoder_path_error(path: str | Path) -> str:
    """Why the local encoder ``path`` cannot be used ("" when it can): absent, or a folder without
    weights.  Cheap and torch-free, for the configuration check at DAG build."""
    p = Path(path)
    if not p.exists():
        return f"{path}: pretrained encoder not found ({NO_DOWNLOAD})"
    if p.is_dir() and not any((p / w).is_file() for w in WEIGHT_FILES):
        return f"{path}: pretrained encoder folder holds none of {', '.join(WEIGHT_FILES)} ({NO_DOWNLOAD})"
    if not p.is_dir() and not p.is_file():
        return f"{path}: pretrained encoder is neither a file nor a folder"
    return ""


def check_encoder_path(path: str | Path) -> Path:
    """``path`` as a Path, or one :class:`InputError` saying why it is no encoder."""
    error = encoder_path_error(path)
    if error:
        raise InputError(error)
    return Path(path)


def weights_file(path: str | Path) -> Path:
    """The file that holds the weights of the encoder ``path`` (a file, or a folder's weights file)."""
    p = check_encoder_path(path)
    if p.is_dir():
        return next(p / w for w in WEIGHT_FILES if (p / w).is_file())
    return p


def encoder_config(path: str | Path) -> dict | None:
    """The ``config.json`` of an encoder folder (or the one beside an encoder file), None without one."""
    p = Path(path)
    cfg = p / CONFIG_FILE if p.is_dir() else p.parent / CONFIG_FILE
    if not cfg.is_file():
        return None
    try:
        out = json.loads(cfg.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(f"{cfg}: encoder config cannot be read ({one_line(err)})") from None
    if not isinstance(out, dict):
        raise InputError(f"{cfg}: encoder config is not a JSON object")
    return out


def gzmorph_format(path: str | Path) -> str | None:
    """The format of a gzmorph file (``gzmorph.representation/1``), None for any other file."""
    from .io import _file_kind

    p = Path(path)
    if not p.is_file() or _file_kind(p) != "safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - a damaged file: read_state_dict says why
        return None
    if BUNDLE_HEADER_KEY not in meta:
        return None
    try:
        header = json.loads(meta[BUNDLE_HEADER_KEY])
    except ValueError:
        return None
    return str(header.get("format", "")) if isinstance(header, dict) else None


def encoder_model_args(path: str | Path) -> dict:
    """The timm ``model_args`` that the ``config.json`` of the local encoder ``path`` (its folder's, or
    the one beside the file) records with its architecture, less :data:`NOT_MODEL_ARGS`: the one
    decision of the options a timm backbone is built with from an encoder, for ``load_encoder`` and
    the workflow's ``pretrained`` alike ({} for a gzmorph model file or without a config).  An encoder
    of other than 3 input channels is one :class:`InputError`.  Torch-free (the DAG build uses it)."""
    p = Path(path)
    if p.is_file() and bundle_header(p) is not None:
        return {}
    given = encoder_config(p)
    if not given or not given.get("architecture"):
        return {}
    args = given.get("model_args") or {}
    if not isinstance(args, dict):
        raise InputError(f"{path}: model_args of its {CONFIG_FILE} is not a JSON object")
    channels = args.get("in_chans", 3)
    if channels != 3:
        raise InputError(f"{path}: an encoder of {channels!r} input channel(s) ({CONFIG_FILE} model_args.in_chans, "
                         f"as Zoobot's greyscale encoders): {THREE_CHANNELS}, so it cannot start from this encoder")
    return {k: v for k, v in args.items() if k not in NOT_MODEL_ARGS}


def exported_greyscale(path: str | Path) -> bool:
    """Whether the encoder folder ``path`` is the export of a greyscale gzmorph model (its
    ``config.json``'s ``gzmorph.greyscale``; an export of an older gzmorph, which lacked it, by its
    one-value mean and std, which only a greyscale model has): its images must be made grey, one
    channel repeated to three, before its normalisation."""
    given = encoder_config(path) or {}
    own = given.get(EXPORT_KEY)
    if isinstance(own, dict) and "greyscale" in own:
        return own["greyscale"] is True
    pc = given.get("pretrained_cfg") or {}
    return (isinstance(pc, dict) and str(pc.get("source", "")).startswith("gzmorph ")
            and isinstance(pc.get("mean"), list) and len(pc["mean"]) == 1)


def arch_name(arch: str) -> str:
    """A timm architecture without its pretrained tag (``resnet18.a1_in1k`` -> ``resnet18``), as timm's
    ``split_model_name_tag``; torch-free."""
    return str(arch).split(".", 1)[0]


def other_architecture_error(path: str | Path, arch: str) -> str:
    """Why the encoder ``path`` is not one of the timm architecture ``arch`` ("" when its config.json
    names no other one).  Torch-free."""
    theirs = str((encoder_config(path) or {}).get("architecture") or "")
    if theirs and arch_name(theirs) != arch_name(arch):
        return f"{path}: pretrained encoder of timm architecture {theirs!r} (its {CONFIG_FILE}), not {arch!r}"
    return ""


def gzmorph_only_error(name: str, path: str | Path) -> str:
    """The refusal of an encoder that is no gzmorph model file by a model of :data:`GZMORPH_ONLY`."""
    return f"model {name!r} starts only from a gzmorph model file of a {name!r}, not {path}"


def _encoder_entries(bundle: dict) -> list[dict]:
    """The parts of a gzmorph bundle (itself, or its levels) that hold one model (``model_config`` and
    ``state_dict``): decoded, or as the JSON header has them."""
    return [b for b in [bundle, *(bundle.get("levels") or [])] if isinstance(b, dict)
            and isinstance(b.get("model_config"), dict) and isinstance(b.get("state_dict"), dict)]


def other_model_error(path: str | Path, name: str, found: str) -> str:
    return f"{path}: pretrained encoder of model {found!r}, not {name!r}"


def encoder_backbone_error(path: str | Path, backbone: str) -> str:
    """Why the backbone ``backbone`` cannot start from the (existing) local encoder ``path``, "" when
    nothing says so before its weights are read: a gzmorph model file of another model, a model that
    starts only from gzmorph model files given another encoder, a timm folder of another
    architecture, an encoder of other than 3 channels.  The job's own messages, read from JSON and
    headers only, for the DAG build."""
    p = Path(path)
    header = bundle_header(p) if p.is_file() else None
    if header is not None:
        bundle = header.get("bundle")
        found = _encoder_entries(bundle) if isinstance(bundle, dict) else []
        if len(found) == 1 and found[0]["model_config"].get("name") != backbone:
            return other_model_error(path, backbone, found[0]["model_config"].get("name"))
        return ""
    if backbone in GZMORPH_ONLY:
        return gzmorph_only_error(backbone, path)
    try:
        encoder_model_args(p)
    except InputError as err:
        return str(err)
    return other_architecture_error(p, backbone[len(TIMM_PREFIX):]) if backbone.startswith(TIMM_PREFIX) else ""


# ----------------------------------------------------------------------------- reading weights


def read_state_dict(path: str | Path) -> dict:
    """The state dict of the encoder ``path`` (folder, safetensors file or checkpoint), on the CPU,
    without the DDP / torch.compile prefixes.  Nothing in the file is executed."""
    import torch

    from .io import _file_kind

    f = weights_file(path)
    kind = _file_kind(f) if f.stat().st_size else "the file is empty"
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(f), device="cpu")
        except Exception as err:  # noqa: BLE001 - a truncated or damaged file
            raise InputError(f"{f}: pretrained encoder cannot be read ({one_line(err)})") from None
    elif kind == "pickle":
        import argparse
        import pickle

        try:  # timm's training checkpoints keep their argparse.Namespace: data, allowed as timm does
            with torch.serialization.safe_globals([argparse.Namespace]):
                state = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise InputError(f"{f}: pretrained encoder not loaded: {one_line(err)} (gzmorph reads checkpoints "
                             "weights-only: one that needs code to load is never run)") from None
        except Exception as err:  # noqa: BLE001 - a truncated or damaged file
            raise InputError(f"{f}: pretrained encoder cannot be read ({one_line(err)})") from None
    else:
        raise InputError(f"{f}: pretrained encoder cannot be read: {kind} (neither safetensors nor a torch "
                         "checkpoint)")
    if isinstance(state, dict):
        key = next((k for k in STATE_KEYS if isinstance(state.get(k), dict)), None)
        state = state[key] if key else state
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{f}: pretrained encoder holds no state dict (a dict of tensors, or one under "
                         f"{', '.join(STATE_KEYS)})")
    return {_unwrap(str(k)): v for k, v in state.items()}


def _unwrap(key: str) -> str:
    while key.startswith(WRAPPER_PREFIXES):
        key = next(key[len(p):] for p in WRAPPER_PREFIXES if key.startswith(p))
    return key


def _few(keys, n: int = 5) -> str:
    keys = sorted(keys)
    return "[" + ", ".join(keys[:n]) + (f", ... {len(keys) - n} more" if len(keys) > n else "") + "]"


def load_weights(net, path: str | Path, skip_prefixes: tuple[str, ...] = (), what: str = "",
                 state: dict | None = None) -> None:
    """Load the encoder ``path`` (or its already read ``state``) into ``net``: keys under
    ``skip_prefixes`` (the classifier) are dropped on both sides; every other key of ``net`` must be in
    the file with its shape and the file may hold no other, else one :class:`InputError`."""
    if state is None:
        state = read_state_dict(path)
    state = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(skip_prefixes)}
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    shapes = [f"{k} {tuple(state[k].shape)} for {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
              if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"missing {_few(missing)}" if missing else "", f"unexpected {_few(unexpected)}" if unexpected else "",
                 f"shapes {'; '.join(shapes[:3])}" if shapes else ""]
        raise InputError(f"{path}: pretrained encoder does not fit {what or type(net).__name__} "
                         f"(another architecture?): {', '.join(p for p in parts if p)}")
    net.load_state_dict(state, strict=False)


# ----------------------------------------------------------------------------- timm


def _arch(arch: str) -> str:
    """``arch`` when timm knows it (a pretrained tag allowed: ``resnet18.a1_in1k``), else an InputError."""
    import timm

    if not arch or ":" in arch or "/" in arch or not timm.is_model(arch):
        import difflib

        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (timm.list_models() names them)"
        raise InputError(f"unknown timm architecture {arch!r}{hint}; hub and local-dir names are not "
                         "accepted: gzmorph never downloads weights, give the local path as pretrained")
    return arch


def timm_image_size(arch: str) -> int:
    """The input size timm's default pretrained config of ``arch`` names (224 when none)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(_arch(arch))
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return int(size[-1]) if size else 224


def timm_backbone(arch: str, image_size: int, pretrained: str | Path | None = None, **kwargs):
    """``(net, num_features)``: the timm model ``arch`` without classifier (``num_classes=0``: pooled
    features of ``num_features``), random weights, then those of the local encoder ``pretrained``.

    ``kwargs`` go to ``timm.create_model`` (``drop_path_rate``, ``img_size``...); a model of a fixed input
    size (ViTs) is built for ``image_size``."""
    import timm
    from timm.models import get_pretrained_cfg

    arch = _arch(arch)
    refused = sorted(set(kwargs) & set(NOT_MODEL_ARGS))
    if refused:  # checkpoint_path and the pretrained ones make timm read a file of their choosing
        raise InputError(f"timm/{arch}: {', '.join(refused)} cannot be model settings (model_kwargs or a model "
                         "file's model_config): they would make timm load weights itself")
    if kwargs.get("in_chans", 3) != 3:
        raise InputError(f"timm/{arch}: in_chans {kwargs['in_chans']!r} (model_kwargs): {THREE_CHANNELS}")
    cfg = get_pretrained_cfg(arch)
    if cfg is not None and getattr(cfg, "fixed_input_size", False) and "img_size" not in kwargs:
        kwargs["img_size"] = int(image_size)
    try:
        net = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    except TypeError as err:
        raise InputError(f"timm/{arch}: {one_line(err)} (model_kwargs)") from None
    skip = net.pretrained_cfg.get("classifier") or ()
    skip = tuple(f"{c}." for c in ((skip,) if isinstance(skip, str) else skip))
    if pretrained is not None:
        error = other_architecture_error(pretrained, arch)
        if error:
            raise InputError(error)
        load_weights(net, pretrained, skip, f"timm/{arch}")
    return net, int(getattr(net, "head_hidden_size", None) or net.num_features)


# ----------------------------------------------------------------------------- gzmorph model files


def gzmorph_encoder(path: str | Path) -> tuple[dict, dict]:
    """``(model_config, backbone state dict)`` of a gzmorph model file: a representation or a flat
    classifier (any gzmorph file whose bundle, or its one level, holds ``model_config`` and
    ``state_dict``)."""
    from .io import load_bundle

    fmt = gzmorph_format(path)
    bundle = load_bundle(path, fmt or "", "model file")
    found = _encoder_entries(bundle)
    if len(found) != 1:
        what = (f"holds {len(found)} models (levels {', '.join(str(b.get('name')) for b in found)})" if found
                else "holds no model weights")
        raise InputError(f"{path}: {what}; an encoder is a representation or a flat classifier model file ({fmt})")
    sd = {k[len("backbone."):]: v for k, v in found[0]["state_dict"].items() if k.startswith("backbone.")}
    return dict(found[0]["model_config"]), sd


def load_gzmorph_backbone(model, path: str | Path, name: str) -> None:
    """Load the backbone of the gzmorph model file ``path`` into ``model`` (a ``name`` Classifier)."""
    cfg, state = gzmorph_encoder(path)
    if cfg.get("name") != name:
        raise InputError(other_model_error(path, name, cfg.get("name")))
    load_weights(model.backbone, path, (), name, state=state)


def load_encoder(path: str | Path, num_classes: int = 0, image_size: int | None = None, **kwargs):
    """A :class:`gzmorph.models.Classifier` whose backbone is the local encoder ``path`` and whose
    head is new (``num_classes`` outputs; 0: none, ``forward`` gives the features).

    The architecture comes from the encoder: a gzmorph model file's ``model_config``, a folder's (or
    the file's neighbouring) ``config.json`` (``timm/<architecture>`` with its ``model_args``), or the
    ``arch`` of a timm training checkpoint.  ``image_size`` defaults to the encoder's; ``kwargs`` override
    the backbone's options.  ``model.config`` rebuilds the model without the file (it names no path);
    ``model.pretrained_from`` records where the weights came from."""
    from .models import create_model

    p = check_encoder_path(path)
    if gzmorph_format(p):
        cfg, _ = gzmorph_encoder(p)
        name, size = cfg.pop("name"), cfg.pop("image_size", None)
        cfg.pop("num_classes", None)
        try:
            return create_model(name, num_classes, image_size or size, pretrained=p, **{**cfg, **kwargs})
        except InputError as err:
            raise InputError(f"{path}: {err}") from None
    given = encoder_config(p)
    if given is not None and given.get("architecture"):  # its model_args: create_model (encoder_model_args)
        size = (given.get("pretrained_cfg") or {}).get("input_size")
        image_size = image_size or (int(size[-1]) if isinstance(size, list) and size else None)
        return create_model(TIMM_PREFIX + str(given["architecture"]), num_classes, image_size, pretrained=p,
                            **kwargs)
    arch = _checkpoint_arch(p)
    if arch:
        return create_model(TIMM_PREFIX + arch, num_classes, image_size, pretrained=p, **kwargs)
    raise InputError(f"{path}: no {CONFIG_FILE} names the encoder's architecture; put one beside the weights, "
                     "or build the model by name: create_model('timm/<architecture>', ..., pretrained=path)")


def _checkpoint_arch(path: Path) -> str | None:
    """The timm architecture a timm training checkpoint names (its ``arch``), if timm knows it."""
    from .io import _file_kind

    f = weights_file(path)
    if f.suffix == ".safetensors" or _file_kind(f) != "pickle":
        return None
    import argparse
    import pickle

    import timm
    import torch

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ck = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(f"{f}: pretrained encoder not loaded: {one_line(err)} (gzmorph reads checkpoints "
                         "weights-only: one that needs code to load is never run)") from None
    except Exception:  # noqa: BLE001 - read_state_dict says why
        return None
    arch = ck.get("arch") if isinstance(ck, dict) else None
    return arch if isinstance(arch, str) and ":" not in arch and timm.is_model(arch) else None


def encoder_files(path: str | Path | None) -> list[str]:
    """The files a run that starts from the local encoder ``path`` reads (its weights and any
    ``config.json``): the inputs of a rule, so that a changed encoder reruns it.  [] without one."""
    if not path:
        return []
    p = Path(path)
    if encoder_path_error(p):
        return []  # the configuration check has said why at DAG build
    found = [weights_file(p), p / CONFIG_FILE if p.is_dir() else p.parent / CONFIG_FILE]
    return [str(f) for f in dict.fromkeys(found) if f.is_file()]


def encoder_hash(path: str | Path | None) -> str:
    """The SHA-256 of the encoder's files (:func:`encoder_files`; "" without one): part of a training
    checkpoint's identity, so that an encoder replaced at the same path is never resumed from."""
    h = hashlib.sha256()
    for f in encoder_files(path):
        with open(f, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest() if path else ""


def export_encoder(model_file: str | Path, folder: str | Path) -> Path:
    """Write the timm backbone of a gzmorph model file (a representation or a flat classifier whose
    backbone is ``timm/<architecture>``) as a timm/Hugging Face encoder folder: ``config.json``
    (architecture, features, and the model's own normalisation and image size as
    ``pretrained_cfg``; whether it takes greyscale images under ``gzmorph``, :func:`exported_greyscale`)
    + ``model.safetensors``, the layout Zoobot's encoders are published in.
    ``load_encoder(folder)`` and ``gzmorph finetune folder ...`` read it back."""
    from safetensors.torch import save_file

    from .io import atomic_path, load_bundle

    if not Path(model_file).is_file():
        raise InputError(f"{model_file}: model file not found: the file does not exist")
    fmt = gzmorph_format(model_file)
    if not fmt:
        raise InputError(f"{model_file}: not a gzmorph model file")
    cfg, state = gzmorph_encoder(model_file)
    name = str(cfg.get("name", ""))
    if not name.startswith(TIMM_PREFIX):
        raise InputError(f"{model_file}: its backbone is {name!r}, not a timm architecture (timm/<architecture>): "
                         "only timm backbones export as timm encoders")
    bundle = load_bundle(model_file, fmt, "model file")
    norm = bundle.get("norm") or (bundle.get("levels") or [{}])[0].get("norm") or {}
    size = int(bundle.get("image_size") or cfg.get("image_size") or 224)
    args = {k: v for k, v in cfg.items() if k not in ("name", "num_classes", "image_size", "dropout")}
    config = {"architecture": name[len(TIMM_PREFIX):], "num_classes": 0, "num_features": int(
              bundle.get("num_features") or 0) or None, "model_args": args,
              "pretrained_cfg": {"input_size": [3, size, size], "mean": list(norm.get("mean", [])),
                                 "std": list(norm.get("std", [])), "classifier": None,
                                 "source": f"gzmorph {fmt} {Path(model_file).name}"}}
    # gzmorph's own input settings, at the top level (timm ignores it there; pretrained_cfg it validates):
    # a greyscale model's mean/std are the grey image's, so its readers make every image grey first
    config[EXPORT_KEY] = {"greyscale": bool(norm.get("greyscale", False))}
    crop = (bundle.get("preprocess") or {}).get("crop_fraction")
    if crop is not None:  # timm's crop_pct: the central share of the side kept, as crop_fraction
        config["pretrained_cfg"]["crop_pct"] = float(crop)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # config.json last, as the mark of a finished export: an export cut short into a folder that held
    # another encoder leaves weights without a config (one clear error), never beside the old config
    (folder / CONFIG_FILE).unlink(missing_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    return folder
