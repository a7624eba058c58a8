"""Batch augmentation and normalisation on tensors (galaxies have no "up").

Everything works on a float batch N×C×H×W with values in [0, 1], on whatever
device the batch lives on, with differentiable torch ops (``torch.rot90``,
``flip``, ``affine_grid``/``grid_sample``), so gradients flow to the input:
the distillation stage augments synthetic images it optimises.

Randomness comes only from an explicit ``torch.Generator`` (or a ``seed``):
``sample_params`` draws the transform, ``apply`` applies it, so one draw can be
applied to two batches (a synthetic and a real one, seeded per step).  With
``per_sample=False`` one transform is drawn for the whole batch, which makes
the draw independent of the batch size.

:class:`BatchTransform` is the one input pipeline built on these (uint8 or
normalised float -> augmentation -> normalisation -> cutout -> ZCA) that
classifiers, representations, distillation experts and students all use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rot90: bool = True  # random multiple of 90 degrees (exact pixel permutation)
    rotate: float = 180.0  # plus a uniform angle in [-rotate, rotate] degrees (bilinear); 0 = off
    flip: bool = True  # random horizontal flip (with rot90 this covers all 8 dihedral images)
    scale: tuple[float, float] = (0.9, 1.1)  # zoom factor range (>1 zooms in: a smaller crop)
    translate: float = 0.05  # shift of up to this fraction of the image side
    brightness: float = 0.1  # additive, uniform in [-b, b]
    contrast: float = 0.1  # multiplicative about the image mean, uniform in [1-c, 1+c]

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
            value["scale"] = tuple(value["scale"])
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            from .io import InputError

            raise InputError(f"augment: unknown option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**value)

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(n, lo, hi, gen, device):
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def sample_params(n: int, generator: torch.Generator | None = None, cfg: AugmentConfig | None = None,
                  device=None, per_sample: bool = True, seed: int | None = None) -> dict:
    """Draw one augmentation for each of ``n`` images (or one shared by all)."""
    cfg = cfg or AugmentConfig()
    device = torch.device(device) if device is not None else (generator.device if generator is not None else torch.device("cpu"))
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
    m = n if per_sample else 1
    g = generator
    p = {
        "k": torch.randint(0, 4, (m,), generator=g, device=device) if cfg.rot90 else torch.zeros(m, dtype=torch.long, device=device),
        "flip": torch.rand(m, generator=g, device=device) < 0.5 if cfg.flip else torch.zeros(m, dtype=torch.bool, device=device),
        "angle": _uniform(m, -cfg.rotate, cfg.rotate, g, device) * (math.pi / 180),
        "scale": _uniform(m, cfg.scale[0], cfg.scale[1], g, device),
        "shift": _uniform(2 * m, -cfg.translate, cfg.translate, g, device).view(m, 2) * 2,  # grid units are [-1, 1]
        "brightness": _uniform(m, -cfg.brightness, cfg.brightness, g, device),
        "contrast": _uniform(m, 1 - cfg.contrast, 1 + cfg.contrast, g, device),
    }
    if not per_sample:
        p = {k: v.expand(n, *v.shape[1:]) for k, v in p.items()}
    return p


def rot90_flip(x: torch.Tensor, k: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Per-image exact rotation by ``k``×90° then horizontal flip (a pixel permutation)."""
    out = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if x.shape[-1] != x.shape[-2]:
        return out  # rot90 only for square images
    rotated = out
    for kk in (1, 2, 3):
        rotated = torch.where((k == kk).view(-1, 1, 1, 1), torch.rot90(out, kk, dims=(-2, -1)), rotated)
    return rotated


def affine(x: torch.Tensor, angle, scale, shift) -> torch.Tensor:
    """Rotate by ``angle`` (radians), zoom by ``scale`` and shift (grid units), bilinear, reflected borders."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def apply(x: torch.Tensor, params: dict, cfg: AugmentConfig | None = None) -> torch.Tensor:
    """Apply drawn ``params`` to a float batch N×C×H×W in [0, 1]; differentiable in ``x``."""
    cfg = cfg or AugmentConfig()
    x = rot90_flip(x, params["k"], params["flip"])
    if cfg.rotate or cfg.scale != (1.0, 1.0) or cfg.translate:
        x = affine(x, params["angle"], params["scale"], params["shift"])
    if cfg.contrast or cfg.brightness:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * params["contrast"].view(-1, 1, 1, 1).to(x.dtype) + mean
        x = x + params["brightness"].view(-1, 1, 1, 1).to(x.dtype)
    return x


def augment(x: torch.Tensor, generator: torch.Generator | None = None, cfg: AugmentConfig | None = None,
            seed: int | None = None, per_sample: bool = True) -> torch.Tensor:
    """Draw and apply a random augmentation (from ``generator`` or ``seed``)."""
    params = sample_params(len(x), generator, cfg, device=x.device, per_sample=per_sample, seed=seed)
    return apply(x, params, cfg)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 N×H×W×C (as stored) -> float N×C×H×W in [0, 1]; float N×C×H×W passes through."""
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).float().div_(255)
    return x


def channel_stats(images, batch: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of uint8 N×H×W×C images (the training split)."""
    images = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    c = images.shape[-1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(images), batch):
        b = images[i:i + batch].reshape(-1, c).double() / 255
        s += b.sum(0)
        s2 += (b * b).sum(0)
    n = images.numel() // c
    mean = s / n
    std = (s2 / n - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


class BatchTransform:
    """The one input pipeline of training (``train.fit``), experts, distillation and evaluation.

    ``transform(x, generator, train)``: input uint8 N×H×W×C (images as stored) or float N×C×H×W
    already in *normalised* space (distilled images; denormalised to [0, 1] first, so that both
    kinds get the very same transform) -> [0, 1] -> augmentation (``train`` only) -> per-channel
    normalisation -> cutout (``train`` only; a ``cutout`` × side square set to 0, the mean
    colour) -> optional ZCA whitening (``zca``: D×D matrix on flattened normalised images).
    Differentiable in a float input.  ``sample`` draws a transform and ``apply`` applies it, so
    a synthetic and a real batch can share one draw.
    """

    def __init__(self, mean, std, cfg: AugmentConfig | None = None, cutout: float = 0.0,
                 zca: torch.Tensor | None = None):
        self.mean, self.std, self.cfg, self.cutout, self.zca = list(mean), list(std), cfg, float(cutout), zca

    def _v(self, vals, x):
        return torch.as_tensor(vals, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images or normalised floats -> float N×C×H×W in [0, 1] (before augmentation; for display)."""
        if x.dtype == torch.uint8:
            return to_float(x)
        return x * self._v(self.std, x) + self._v(self.mean, x)

    def sample(self, n: int, generator: torch.Generator | None, device="cpu") -> dict | None:
        """Draw the training transform of ``n`` images (``None`` when there is nothing to draw)."""
        if self.cfg is None and not self.cutout:
            return None
        gen = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
        p = sample_params(n, gen, self.cfg, device=device) if self.cfg else {}
        if self.cutout:
            p["cut_centre"] = torch.rand(n, 2, generator=gen, device=gen.device).to(device)
        return p

    def _cutout(self, x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1) + 0.5
        xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w) + 0.5
        c = centre.to(x.dtype)
        half_h, half_w = self.cutout * h / 2, self.cutout * w / 2
        inside = ((ys - c[:, 0].view(-1, 1, 1) * h).abs() < half_h) & \
                 ((xs - c[:, 1].view(-1, 1, 1) * w).abs() < half_w)
        return x * (~inside).unsqueeze(1).to(x.dtype)  # 0 = the mean colour

    def apply(self, x: torch.Tensor, params: dict | None) -> torch.Tensor:
        """Apply a drawn transform (``None``: no augmentation, as in evaluation)."""
        x = self.denormalize(x)
        if params is not None and self.cfg is not None:
            x = apply(x, params, self.cfg)
        x = normalize(x, self.mean, self.std)
        if params is not None and self.cutout:
            x = self._cutout(x, params["cut_centre"])
        if self.zca is not None:
            x = (x.reshape(len(x), -1) @ self.zca.to(x.device, x.dtype)).view_as(x)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None, train: bool = False):
        params = self.sample(len(x), generator, x.device) if train else None
        return self.apply(x, params)
