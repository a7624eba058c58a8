"""Batch augmentation: shapes, seeding, differentiability, exact dihedral symmetries, normalisation."""

import numpy as np
import pytest
import torch

from gzmorph.augment import (AugmentConfig, BatchTransform, apply, augment, channel_stats, normalize,
                             sample_params, to_float)
from gzmorph.io import InputError

torch.set_num_threads(1)
DIHEDRAL = AugmentConfig(rotate=0.0, scale=(1.0, 1.0), translate=0.0, brightness=0.0, contrast=0.0)


def batch(n=6, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_dtype():
    x = batch()
    y = augment(x, seed=1)
    assert y.shape == x.shape and y.dtype == x.dtype
    u8 = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    out = BatchTransform([0.5] * 3, [0.25] * 3, AugmentConfig())(u8, torch.Generator().manual_seed(0), True)
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32


def test_deterministic_under_a_seed():
    x = batch()
    assert torch.equal(augment(x, seed=7), augment(x, seed=7))
    assert not torch.allclose(augment(x, seed=7), augment(x, seed=8))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(augment(x, g1), augment(x, g2))


def test_one_draw_applies_to_two_batches():
    """Distillation: the same transform on a synthetic and a real batch."""
    real, syn = batch(seed=1), batch(seed=2)
    p = sample_params(len(real), torch.Generator().manual_seed(5))
    a = apply(torch.cat([real, syn]), {k: torch.cat([v, v]) for k, v in p.items()})
    assert torch.allclose(a[:len(real)], apply(real, p)) and torch.allclose(a[len(real):], apply(syn, p))
    # per_sample=False: one transform for the batch, whatever the batch size
    one = augment(real[:1], seed=9, per_sample=False)
    many = augment(real, seed=9, per_sample=False)
    assert torch.allclose(one[0], many[0], atol=1e-6)


def test_gradient_flows_to_input():
    x = batch().requires_grad_(True)
    out = augment(x, seed=0)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", range(4))
def test_flips_and_rot90_only_permute_pixels(seed):
    x = batch(8, 12, seed)
    y = augment(x, seed=seed, cfg=DIHEDRAL)
    for a, b in zip(x, y):
        assert torch.equal(torch.sort(a.flatten()).values, torch.sort(b.flatten()).values)
        # and each output is one of the 8 dihedral images of its input
        cands = [torch.rot90(f, k, (-2, -1)) for f in (a, a.flip(-1)) for k in range(4)]
        assert any(torch.equal(b, c) for c in cands)
    assert not torch.equal(x, y)


def test_rotation_about_the_centre_keeps_a_centred_blob():
    x = torch.zeros(1, 3, 33, 33)
    x[..., 12:21, 12:21] = 1.0
    cfg = AugmentConfig(rot90=False, flip=False, rotate=180.0, scale=(1.0, 1.0), translate=0.0,
                        brightness=0.0, contrast=0.0)
    y = augment(x, seed=2, cfg=cfg)
    assert y[0, 0, 16, 16] > 0.99 and y[0, 0, 0, 0] < 0.01
    assert abs(y.sum() - x.sum()) / x.sum() < 0.1


def test_brightness_and_contrast_jitter_ranges():
    x = batch(64)
    cfg = AugmentConfig(rot90=False, flip=False, rotate=0.0, scale=(1.0, 1.0), translate=0.0,
                        brightness=0.1, contrast=0.2)
    y = augment(x, seed=0, cfg=cfg)
    shift = (y - x).mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.1 + 1e-5 and shift.std() > 0.01


def test_channel_stats_and_normalize():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    mean, std = channel_stats(imgs, batch=3)
    f = imgs.reshape(-1, 3) / 255
    assert np.allclose(mean, f.mean(0)) and np.allclose(std, f.std(0))
    z = normalize(to_float(torch.from_numpy(imgs)), mean, std)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_eval_transform_does_not_augment_and_config_parsing():
    u8 = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    t = BatchTransform([0.0] * 3, [1.0] * 3, AugmentConfig())
    assert torch.equal(t(u8, None, False), to_float(u8))
    assert AugmentConfig.from_value(False) is None
    assert AugmentConfig.from_value({"scale": [1.0, 1.2]}).scale == (1.0, 1.2)
    with pytest.raises(InputError, match="bogus"):
        AugmentConfig.from_value({"bogus": 1})
