"""JPEG -> tensor preprocessing and the bad-image policy."""

import numpy as np
import pytest
from PIL import Image

from gzmorph.imageset import read_images, write_images
from gzmorph.io import InputError
from gzmorph.preprocess import apply_bad_image_policy, load_image, preprocess_images


def _jpeg(path, size=424, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    blob = 200 * np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (2 * (size / 10) ** 2))
    arr = np.clip(blob[..., None] + rng.normal(10, 3, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=92)
    return arr


def test_crop_and_resize_match_a_full_decode(tmp_path):
    _jpeg(tmp_path / "a.jpg")
    fast = load_image(tmp_path / "a.jpg", 64, 0.5, fast=True)
    full = load_image(tmp_path / "a.jpg", 64, 0.5, fast=False)
    assert fast.shape == full.shape == (64, 64, 3) and fast.dtype == np.uint8
    # reduced-size DCT decoding approximates the full decode closely
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 2.0
    # the centre crop keeps the galaxy centred: brightest pixel near the middle
    y, x = np.unravel_index(fast[..., 0].argmax(), (64, 64))
    assert abs(y - 32) <= 3 and abs(x - 32) <= 3


def test_16_bit_and_float_images_keep_their_contrast(tmp_path):
    """A 16-bit grey PNG was clipped at 255 (almost all white) and a float TIFF truncated to 0..1
    (all black); both now keep their pixels' order, and a blank float image is unreadable."""
    ramp = np.tile(np.linspace(0, 1, 64), (64, 1))
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "grey16.png")
    Image.fromarray((ramp * 3e-3 + 1e-4).astype(np.float32)).save(tmp_path / "flux.tiff")
    for name in ("grey16.png", "flux.tiff"):
        img = load_image(tmp_path / name, 64, 1.0)
        assert img.shape == (64, 64, 3) and (img[..., 0] == img[..., 2]).all()
        row = img[32, :, 0].astype(int)
        assert row[0] <= 3 and row[-1] >= 252 and (np.diff(row) >= 0).all(), name
    Image.fromarray(np.full((64, 64), 7.5, np.float32)).save(tmp_path / "blank.tiff")
    with pytest.raises(InputError, match=r"blank.tiff: blank image \(every pixel is 7.5\)"):
        load_image(tmp_path / "blank.tiff", 64, 1.0)


def test_real_images_parallel_equals_serial(kaggle_dir):
    paths = sorted((kaggle_dir / "images_training_rev1").glob("*.jpg"))[:70]
    a, bad_a = preprocess_images(paths, 32, workers=2, progress=False, chunk=16)
    b, bad_b = preprocess_images(paths, 32, workers=1, progress=False)
    assert not bad_a and not bad_b and np.array_equal(a, b)
    assert a.shape == (70, 32, 32, 3) and a.mean() > 5  # real pixels, not zeros


def test_bad_images_are_collected_with_their_file(tmp_path):
    _jpeg(tmp_path / "ok.jpg")
    (tmp_path / "trunc.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths = [tmp_path / "ok.jpg", tmp_path / "missing.jpg", tmp_path / "trunc.jpg"]
    images, bad = preprocess_images(paths, 16, workers=2, progress=False, chunk=1)
    assert [i for i, _ in bad] == [1, 2]
    assert "missing.jpg: image file not found" in bad[0][1]
    assert "trunc.jpg: cannot decode image" in bad[1][1]
    assert images[0].any() and not images[1].any()


def test_bad_image_policy():
    bad = [(3, "x.jpg: cannot decode image")]
    apply_bad_image_policy(bad, 1000, 0.01)  # 0.1 %: skipped
    with pytest.raises(InputError, match=r"1 of 10 images \(10.0%\).*x.jpg"):
        apply_bad_image_policy(bad, 10, 0.01)


def test_image_table_roundtrip_and_missing_ids(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    write_images(tmp_path / "i.parquet", [5, 1, 9, 3, 7], imgs)
    ids, back = read_images(tmp_path / "i.parquet", [9, 5])
    assert ids.tolist() == [9, 5] and np.array_equal(back, imgs[[2, 0]])
    with pytest.raises(KeyError, match=r"no image for ids \[4\]"):
        read_images(tmp_path / "i.parquet", [4])
    with pytest.raises(ValueError, match="uint8"):
        write_images(tmp_path / "j.parquet", [1], imgs[:1].astype(float))
    assert not (tmp_path / "j.parquet").exists()
