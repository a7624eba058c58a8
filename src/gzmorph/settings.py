"""Nested config settings: presets updated by the user's keys.

Kept free of torch so that building the DAG stays fast.
"""

from __future__ import annotations

from .distill_settings import default_preset
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


# ------------------------------------------------------------------ settings
# distill.preset picks one of these; every other key under `distill:` in the config overrides it.
# "default": the small run inside the offline synthetic budget, the defaults of the option dataclasses
# (gzmorph.distill_settings, their one source); "laptop": the CPU-scale real-data run; "paper": the
# settings of Guan et al. (2023) for a GPU.
DISTILL_PRESETS = {"default": default_preset()}  # gzmorph.distill_settings.DistillSettings()
# The other presets: what they change of "default".
DISTILL_PRESETS["laptop"] = deep_merge(DISTILL_PRESETS["default"], {  # real data, 2 CPU cores (~10 min on Kaggle)
    "n_experts": 3, "width": 32, "ipc": [1, 10], "runtime": 240,
    # lr 0.03: a 16 px width-32 expert reaches ~0.75 test accuracy in 20 epochs (lr 0.01: ~0.61 in 8)
    "expert": {"epochs": 20, "lr": 0.03},
    "mtt": {"syn_steps": 10, "max_start_epoch": 16, "iterations": 300, "lr_img": 1000.0, "alpha0": 0.03},
    "stm": {"syn_steps": 10, "iterations": 300, "lr_img": 1000.0, "alpha0": 0.03, "r_down": 2.5, "r_up": 2.5,
            "patience": 150, "lr_floor": 500.0},
    # IPC 1: with alpha lr 1e-5 the learned step size falls from 0.03 to ~0.005 in 300 iterations;
    # 1e-6 keeps it near 0.02 (real sample: MTT 0.28 -> 0.34, STM 0.51 -> 0.48, eval sd ~0.03)
    "ipc_overrides": {1: {"lr_alpha": 1e-6}},
    "eval": {"n_nets": 3, "epochs": 300, "full_epochs": 30},
})
DISTILL_PRESETS["paper"] = deep_merge(DISTILL_PRESETS["default"], {
    "n_experts": 100, "image_size": 64, "width": 128, "ipc": [1, 10], "threads": 8, "gpu_mem_mb": 32000,
    "runtime": 1440,
    "expert": {"epochs": 50, "lr": 0.001, "batch_size": 256},
    "mtt": {"syn_steps": 50, "max_start_epoch": 20, "iterations": 5000, "lr_img": 1e4, "lr_alpha": 0.01,
            "alpha0": 1e-4},
    "stm": {"syn_steps": 50, "iterations": 100000, "lr_img": 1e4, "lr_alpha": 0.01, "alpha0": 1e-4,
            "patience": 1000, "ft_every": 50, "lr_floor": 50.0},
    "ipc_overrides": {10: {"syn_steps": 20}},
    "eval": {"n_nets": 5, "epochs": 1000, "full_epochs": 50, "full_batch_size": 256},
})

def distill_settings(user: dict) -> dict:
    """The preset named by ``user["preset"]`` (default "default") updated by the other keys."""
    user = dict(user or {})
    preset = user.pop("preset", "default")
    if preset not in DISTILL_PRESETS:
        raise InputError(f"config distill.preset: {preset!r} is not one of {sorted(DISTILL_PRESETS)}")
    out = deep_merge(DISTILL_PRESETS[preset], user)
    out["ipc"] = [int(i) for i in (out["ipc"] if isinstance(out["ipc"], list) else [out["ipc"]])]
    bad = [m for m in out["methods"] if m not in ("mtt", "stm")]
    if bad:
        raise InputError(f"config distill.methods: unknown method(s) {bad}; known: mtt, stm")
    return out


def distill_method_options(settings: dict, method: str, ipc) -> dict:
    """A method's options with the per-IPC overrides applied."""
    over = settings["ipc_overrides"]
    return {**settings[method], **over.get(int(ipc), over.get(str(ipc), {}))}
