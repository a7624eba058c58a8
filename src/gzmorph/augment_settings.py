"""The ``augment`` settings of every stage, torch-free: the workflow checks them when it builds the DAG
(gzmorph.config_check), and :mod:`gzmorph.augment` applies them.

:class:`AugmentConfig` is the all-ops augmentation (classifiers, representations, and the all-ops
mode of distillation); :class:`DSAConfig` the families and strengths of DSA single mode (see
:mod:`gzmorph.augment`); :func:`parse_augment` reads a stage's ``augment`` value into one of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AugmentConfig:
    rot90: bool = True  # random multiple of 90 degrees (exact pixel permutation)
    rotate: float = 180.0  # plus a uniform angle in [-rotate, rotate] degrees (bilinear); 0 = off
    flip: bool = True  # random horizontal flip (with rot90 this covers all 8 dihedral images)
    scale: tuple[float, float] = (0.9, 1.1)  # zoom factor range (>1 zooms in: a smaller crop)
    translate: float = 0.05  # shift of up to this fraction of the image side
    brightness: float = 0.1  # additive, uniform in [-b, b]
    contrast: float = 0.1  # multiplicative about the image mean, uniform in [1-c, 1+c]

    def __post_init__(self):
        for name in ("rot90", "flip"):
            if not isinstance(getattr(self, name), bool):
                _bad(f"augment.{name}", getattr(self, name), "true or false")
        for name in ("rotate", "translate", "brightness", "contrast"):
            _check_number(f"augment.{name}", getattr(self, name))
        lo_hi = self.scale
        if (len(lo_hi) != 2 or not all(_is_number(v) and v > 0 for v in lo_hi) or lo_hi[0] > lo_hi[1]):
            _bad("augment.scale", list(lo_hi), "two zoom factors [low, high] with 0 < low <= high")

    @classmethod
    def from_value(cls, value) -> "AugmentConfig | None":
        """``True``/``None`` -> defaults, ``False`` -> no augmentation, dict -> overrides."""
        if value is False:
            return None
        if value is True or value is None:
            return cls()
        if isinstance(value, cls):
            return value
        value = dict(value)
        if "scale" in value:
            value["scale"] = tuple(value["scale"]) if isinstance(value["scale"], (list, tuple)) else (value["scale"],)
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            from .io import InputError

            raise InputError(f"augment: unknown option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**value)

    def to_dict(self) -> dict:
        return asdict(self)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bad(key: str, value, wanted: str):
    from .io import InputError

    raise InputError(f"{key}: {value!r} must be {wanted}")


def _check_number(key: str, value, low: float = 0.0, high: float | None = None) -> None:
    """A real number in [low, high]; else one error naming ``key``."""
    if not _is_number(value) or value < low or (high is not None and value > high):
        _bad(key, value, f"a number >= {low:g}" + (f" and <= {high:g}" if high is not None else ""))


DSA_OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
AUGMENT_MODES = ("single", "all")  # DSA single mode | every op of AugmentConfig on every image + cutout


@dataclass(frozen=True)
class DSAConfig:
    """The families of DSA single mode and their strengths (defaults: the references' values)."""

    ops: tuple = DSA_OPS
    brightness: float = 1.0  # color: add (u − 0.5) · brightness
    saturation: float = 2.0  # color: deviation from the pixel's channel mean × u · saturation
    contrast: float = 0.5  # color: deviation from the image mean × (u + contrast)
    crop: float = 0.125  # shift by an integer of at most round(crop · side) px per axis, zeros shifted in
    cutout: float = 0.5  # a zero square of round(cutout · side) px at a uniform position
    flip: float = 0.5  # horizontal flip with this probability
    scale: float = 1.2  # per-axis zoom factors U(1/scale, scale)
    rotate: float = 15.0  # U(−rotate, rotate) degrees

    def __post_init__(self):
        for name in ("brightness", "saturation", "contrast", "rotate"):
            _check_number(f"augment.{name}", getattr(self, name))
        for name in ("crop", "cutout", "flip"):
            _check_number(f"augment.{name}", getattr(self, name), high=1.0)
        if isinstance(self.scale, (list, tuple)):
            _bad("augment.scale", list(self.scale), "one zoom factor >= 1 in DSA single mode (U(1/scale, scale)); "
                 "a [low, high] range is the all-ops mode's (mode: all)")
        _check_number("augment.scale", self.scale, low=1.0)

    @classmethod
    def from_dict(cls, value: dict, cutout: float | None = None) -> DSAConfig:
        value = dict(value)
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            from .io import InputError

            raise InputError(f"augment (mode single): unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(cls.__dataclass_fields__)}")
        if "ops" in value:
            ops = value["ops"].split("_") if isinstance(value["ops"], str) else list(value["ops"])
            bad = [o for o in ops if o not in DSA_OPS]
            if bad or not ops:
                from .io import InputError

                raise InputError(f"augment.ops: {bad or ops} not among {list(DSA_OPS)}")
            value["ops"] = tuple(ops)
        if cutout is not None and "cutout" not in value:
            value["cutout"] = float(cutout)
        return cls(**value)


def parse_augment(augment=True, cutout: float = 0.0) -> tuple[str, AugmentConfig | DSAConfig | None]:
    """``(mode, settings)`` of an ``augment`` value: ``False`` -> ``("none", None)``; ``True``/``None``
    -> DSA single mode with ``cutout`` as its cutout ratio; a dict with ``mode: single`` and
    :class:`DSAConfig` keys, or ``mode: all`` and :class:`AugmentConfig` keys.  A wrong option or
    value is one :class:`~gzmorph.io.InputError` naming it."""
    if augment is False:
        return "none", None
    if not isinstance(augment, (bool, dict)) and augment is not None:
        _bad("augment", augment, "true, false or a mapping of options")
    value = {} if augment is True or augment is None else dict(augment)
    mode = value.pop("mode", "single")
    if mode not in AUGMENT_MODES:
        from .io import InputError

        raise InputError(f"augment.mode must be one of {AUGMENT_MODES}, not {mode!r}")
    if mode == "single":
        return mode, DSAConfig.from_dict(value, cutout)
    return mode, AugmentConfig.from_value(value or True)


def check_augment(value, cutout: float = 0.0) -> None:
    """Raise the :class:`~gzmorph.io.InputError` that an ``augment`` setting would raise when used
    (a config check at DAG build time, not at a batch that draws the op)."""
    parse_augment(value, cutout)
