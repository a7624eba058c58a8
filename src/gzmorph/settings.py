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
