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
The distillation stage uses by default its subclass :class:`DSATransform`
(DSA in single mode, the trajectory-matching references' augmentation; see
the section at the end), chosen by :func:`make_transform`.

**DSA single mode** (Differentiable Siamese Augmentation, Zhao & Bilen, ICML 2021).  MTT
(Cazenavette et al. 2022) and Guan et al. (2023) augment with ``DiffAugment`` and
``dsa_strategy = "color_crop_cutout_flip_scale_rotate"`` in single mode (``aug_mode = "S"``):
one family per batch, drawn uniformly, its parameters drawn per sample, for the experts, the
student steps of distillation and the evaluation nets.  The constants are their ``ParamDiffAug``
(Guan et al.'s ``utils.py`` in HaowenGuan/Galaxy-Dataset-Distillation, the same as MTT's), as
:class:`DSAConfig` holds them: color = brightness ``x + (u − 0.5)·1.0``, then saturation (deviation
from the channel mean × ``2u``), then contrast (deviation from the image mean × ``u + 0.5``); crop =
an integer shift of up to ``round(0.125·side)`` px per axis, zeros shifted in; cutout = a zero
square of side ``round(0.5·side)`` centred uniformly (clipped at the border); flip = horizontal
with probability 0.5; scale = per-axis factors ``U(1/1.2, 1.2)``; rotate = ``U(−15°, 15°)``; scale
and rotate resample bilinearly (``align_corners=True``) with zeros outside.  They act on the net's
input (normalised and, with ZCA, whitened images), so every zero is the mean colour, as in the
references.  The references draw from the global torch RNG; here a draw comes from an explicit
generator (``sample``) and is applied by ``apply``, so one draw serves a real and a synthetic batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .augment_settings import AUGMENT_MODES, DSA_OPS, AugmentConfig, DSAConfig, parse_augment  # noqa: F401


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


def dihedral(x: torch.Tensor, view: int) -> torch.Tensor:
    """View ``view`` (0 to 7) of a batch of square N×C×S×S images: rotated by (view mod 4)×90°, and
    mirrored left to right for views 4 to 7.  View 0 is the batch itself."""
    out = torch.rot90(x, view % 4, dims=(-2, -1))
    return out.flip(-1) if view >= 4 else out


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


def pixel_values(images: torch.Tensor, greyscale: bool = False) -> torch.Tensor:
    """uint8 N×H×W×C -> float64 pixels × channels in [0, 1]; ``greyscale``: one column, the channels' mean."""
    b = images.reshape(-1, images.shape[-1]).double() / 255
    return b.mean(1, keepdim=True) if greyscale else b


def channel_stats(images, batch: int = 4096, greyscale: bool = False) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of uint8 N×H×W×C images (the training split);
    ``greyscale``: of the grey image (the channels' mean), one value each."""
    images = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    c = 1 if greyscale else images.shape[-1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(images), batch):
        b = pixel_values(images[i:i + batch], greyscale)
        s += b.sum(0)
        s2 += (b * b).sum(0)
    n = images.numel() // images.shape[-1]
    mean = s / n
    std = (s2 / n - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


@dataclass(frozen=True)
class Whitening:
    """ZCA whitening of flattened normalised images, ``(x − mean) @ matrix`` (kornia's
    ``ZCAWhitening``, which MTT uses): ``mean`` (D) and ``matrix`` (D×D) are the training split's."""

    matrix: torch.Tensor
    mean: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1) - self.mean.to(x.device, x.dtype)
        return (flat @ self.matrix.to(x.device, x.dtype)).view_as(x)


class BatchTransform:
    """The one input pipeline of training (``train.fit``), experts, distillation and evaluation.

    ``transform(x, generator, train)``: input uint8 N×H×W×C (images as stored) or float N×C×H×W
    already in *normalised* space (distilled images; denormalised to [0, 1] first, so that both
    kinds get the very same transform) -> [0, 1] -> augmentation (``train`` only) -> per-channel
    normalisation -> cutout (``train`` only; a ``cutout`` × side square set to 0, the mean
    colour) -> optional ZCA whitening (``zca``: a :class:`Whitening` of the normalised images).
    Differentiable in a float input.  ``sample`` draws a transform and ``apply`` applies it, so
    a synthetic and a real batch can share one draw.

    ``greyscale`` (a Zoobot-style representation): right after [0, 1] every image becomes one grey
    channel, the unweighted mean of its channels, repeated to their number, so a 3-channel backbone
    sees three equal channels; ``mean``/``std`` are then the grey image's (one value each).
    :func:`input_transform` builds it from a model file's ``norm`` record.
    """

    def __init__(self, mean, std, cfg: AugmentConfig | None = None, cutout: float = 0.0,
                 zca: Whitening | None = None, greyscale: bool = False):
        self.mean, self.std, self.cfg, self.cutout, self.zca = list(mean), list(std), cfg, float(cutout), zca
        self.greyscale = bool(greyscale)

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
        if self.greyscale:
            x = x.mean(1, keepdim=True).repeat(1, x.shape[1], 1, 1)
        if params is not None and self.cfg is not None:
            x = apply(x, params, self.cfg)
        x = normalize(x, self.mean, self.std)
        if params is not None and self.cutout:
            x = self._cutout(x, params["cut_centre"])
        if self.zca is not None:
            x = self.zca(x)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None, train: bool = False):
        params = self.sample(len(x), generator, x.device) if train else None
        return self.apply(x, params)


def input_transform(norm: dict, cfg: AugmentConfig | None = None) -> BatchTransform:
    """The input pipeline of a model file's ``norm`` record (``mean``, ``std`` and, for a greyscale
    representation, ``greyscale: true``), augmented by ``cfg`` when training."""
    return BatchTransform(norm["mean"], norm["std"], cfg, greyscale=bool(norm.get("greyscale", False)))


# --------------------------------------------------------------------------- DSA, single mode (module docstring)

def _affine_zeros(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _column(u: torch.Tensor, j: int, x: torch.Tensor) -> torch.Tensor:
    return u[:, j].to(x.device, x.dtype).view(-1, 1, 1, 1)


def dsa_op(x: torch.Tensor, op: str, u: torch.Tensor, cfg: DSAConfig) -> torch.Tensor:
    """One DSA family on a float batch N×C×H×W, given per-sample uniforms ``u`` (N×3, in [0, 1));
    differentiable in ``x``."""
    n, _, h, w = x.shape
    if op == "color":
        x = x + (_column(u, 0, x) - 0.5) * cfg.brightness
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (_column(u, 1, x) * cfg.saturation) + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * (_column(u, 2, x) + cfg.contrast) + m
    if op == "crop":  # out[r, c] = x[r + dr, c + dc], zero outside
        sr, sc = int(h * cfg.crop + 0.5), int(w * cfg.crop + 0.5)
        dr = (u[:, 0].to(x.device) * (2 * sr + 1)).floor().long().clamp_max(2 * sr) - sr
        dc = (u[:, 1].to(x.device) * (2 * sc + 1)).floor().long().clamp_max(2 * sc) - sc
        rows = (torch.arange(h, device=x.device).view(1, h) + dr.view(-1, 1) + 1).clamp(0, h + 1)
        cols = (torch.arange(w, device=x.device).view(1, w) + dc.view(-1, 1) + 1).clamp(0, w + 1)
        padded = F.pad(x, [1, 1, 1, 1])
        b = torch.arange(n, device=x.device).view(-1, 1, 1)
        return padded.permute(0, 2, 3, 1)[b, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)
    if op == "cutout":
        ch, cw = int(h * cfg.cutout + 0.5), int(w * cfg.cutout + 0.5)
        r0 = (u[:, 0].to(x.device) * (h + 1 - ch % 2)).floor().long() - ch // 2
        c0 = (u[:, 1].to(x.device) * (w + 1 - cw % 2)).floor().long() - cw // 2
        rows, cols = torch.arange(h, device=x.device).view(1, h), torch.arange(w, device=x.device).view(1, w)
        in_r = (rows >= r0.view(-1, 1)) & (rows < (r0 + ch).view(-1, 1))
        in_c = (cols >= c0.view(-1, 1)) & (cols < (c0 + cw).view(-1, 1))
        keep = ~(in_r.view(n, h, 1) & in_c.view(n, 1, w))
        return x * keep.unsqueeze(1).to(x.dtype)
    if op == "flip":
        return torch.where(_column(u, 0, x) < cfg.flip, x.flip(-1), x)
    if op == "scale":
        lo = 1.0 / cfg.scale
        s = lo + u[:, :2].to(x.device, x.dtype) * (cfg.scale - lo)
        zero = torch.zeros_like(s[:, 0])
        theta = torch.stack([torch.stack([s[:, 0], zero, zero], 1), torch.stack([zero, s[:, 1], zero], 1)], 1)
        return _affine_zeros(x, theta)
    if op == "rotate":
        a = (u[:, 0].to(x.device, x.dtype) - 0.5) * 2 * cfg.rotate * (math.pi / 180)
        zero = torch.zeros_like(a)
        theta = torch.stack([torch.stack([a.cos(), -a.sin(), zero], 1), torch.stack([a.sin(), a.cos(), zero], 1)], 1)
        return _affine_zeros(x, theta)
    raise ValueError(f"unknown DSA op {op!r}; known: {DSA_OPS}")


class DSATransform(BatchTransform):
    """The input pipeline with DSA in single mode: uint8 or normalised float -> normalised ->
    optional ZCA -> (``train``) one DSA family, drawn per batch, with per-sample parameters.

    ``sample(n, generator)`` draws ``{"op": the family's index in cfg.ops, "u": n×3 uniforms}``,
    independent of the image size, so one draw can be applied to a real and a synthetic batch of
    the same size (siamese)."""

    def __init__(self, mean, std, dsa: DSAConfig | None = None, zca: Whitening | None = None):
        super().__init__(mean, std, None, 0.0, zca)
        self.dsa = dsa or DSAConfig()

    def sample(self, n: int, generator: torch.Generator | None, device="cpu") -> dict:
        gen = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
        op = torch.randint(0, len(self.dsa.ops), (1,), generator=gen, device=gen.device)
        u = torch.rand(n, 3, generator=gen, device=gen.device)
        return {"op": op.to(device), "u": u.to(device)}

    def apply(self, x: torch.Tensor, params: dict | None) -> torch.Tensor:
        x = normalize(to_float(x), self.mean, self.std) if x.dtype == torch.uint8 else x
        if self.zca is not None:
            x = self.zca(x)
        if params is not None:
            x = dsa_op(x, self.dsa.ops[int(params["op"].flatten()[0])], params["u"], self.dsa)
        return x


def make_transform(mean, std, augment=True, cutout: float = 0.0, zca: Whitening | None = None) -> BatchTransform:
    """The input pipeline for an ``augment`` setting: ``False`` none; ``True``/``None`` DSA single
    mode (:class:`DSATransform`, ``cutout`` its cutout ratio); a dict with ``mode: single`` and
    :class:`DSAConfig` keys, or ``mode: all`` and :class:`AugmentConfig` keys (every op on every
    image, then a ``cutout`` square: :class:`BatchTransform`)."""
    mode, settings = parse_augment(augment, cutout)
    if mode == "none":
        return BatchTransform(mean, std, None, 0.0, zca)
    if mode == "single":
        return DSATransform(mean, std, settings, zca)
    return BatchTransform(mean, std, settings, cutout, zca)
