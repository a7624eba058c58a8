"""Helpers of the settings classes: checked construction from a config block, and nested merges.

Kept free of torch so that building the DAG stays fast.
"""

from __future__ import annotations

from .io import InputError


def options(cls, params: dict, where: str):
    """``cls(**params)`` for a dataclass of options; unknown keys are one clear error naming them."""
    known = set(cls.__dataclass_fields__)
    unknown = set(params) - known
    if unknown:
        raise InputError(f"{where}: unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**params)


def deep_merge(base: dict, over: dict | None) -> dict:
    """``base`` with ``over``'s keys replacing it, recursing into dicts present in both."""
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def preset_block(presets: dict, given: dict | None, where: str) -> dict:
    """A config block over its preset: the keys of ``presets[given["preset"]]`` (a preset states
    what it changes of the settings class's defaults), replaced by the block's own keys."""
    given = dict(given or {})
    name = given.get("preset", "default")
    if name not in presets:
        raise InputError(f"{where}.preset: {name!r} is not one of {sorted(presets)}")
    return {**presets[name], **given}


def preset_keys(presets: dict) -> set[str]:
    """The keys some preset sets: config.yaml shows them commented out (a value given there would
    override every preset), the block's other keys with their values."""
    return {k for name, delta in presets.items() if name != "default" for k in delta}


AMP_MODES = ("auto", "bf16", "fp16", "off")


def amp_mode(value, where: str) -> str:
    """An ``amp`` setting as one of :data:`AMP_MODES`; YAML reads an unquoted ``off`` as ``false``."""
    value = "off" if value is False else value
    if value not in AMP_MODES:
        raise InputError(f"{where}.amp: {value!r} is not one of {list(AMP_MODES)}")
    return value
