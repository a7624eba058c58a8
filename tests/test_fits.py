"""FITS images (gzmorph.fits): bands chosen by HDU, the Lupton asinh RGB, bad cutouts unreadable."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.visualization import make_lupton_rgb

from gzmorph.fits import FitsLayoutError, FitsOptions, load_fits, read_bands
from gzmorph.io import InputError
from gzmorph.preprocess import apply_bad_image_policy, image_stem, load_image, preprocess_images


def galaxy(n: int = 48, seed: int = 0, amp: float = 50.0) -> np.ndarray:
    """A round blob on noise, float32, with its centre a little above the middle row."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n]
    blob = amp * np.exp(-((x - n / 2) ** 2 + (y - n / 2) ** 2) / (2 * (n / 8) ** 2))
    return (blob + rng.normal(0, 0.5, (n, n))).astype(np.float32)


def test_one_band_is_grey_and_matches_lupton(tmp_path):
    path = tmp_path / "g.fits"
    img = galaxy()
    fits.PrimaryHDU(img).writeto(path)
    out = load_fits(path, 48, 1.0, {"stretch": 3.0, "Q": 5.0})
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    expected = np.flipud(make_lupton_rgb(img, img, img, minimum=0.0, stretch=3.0, Q=5.0))
    assert np.array_equal(out, expected)  # same size: the area resize is the identity
    other = load_fits(path, 48, 1.0, {"stretch": 20.0, "Q": 5.0})
    assert not np.array_equal(out, other)  # the stretch reaches astropy


def test_first_fits_row_is_the_bottom_of_the_picture(tmp_path):
    img = np.zeros((16, 16), np.float32)
    img[0, :] = 100.0  # FITS row 0: the bottom of the sky image
    path = tmp_path / "edge.fits"
    fits.PrimaryHDU(img).writeto(path)
    out = load_fits(path, 16, 1.0)
    assert out[-1].max() > 0 and out[0].max() == 0


def test_three_bands_from_a_cube_and_from_named_extensions(tmp_path):
    r, g, b = galaxy(seed=1, amp=60), galaxy(seed=2, amp=30), galaxy(seed=3, amp=10)
    fits.PrimaryHDU(np.stack([r, g, b])).writeto(tmp_path / "cube.fits")
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(g, name="G"), fits.ImageHDU(r, name="R"),
                         fits.ImageHDU(b, name="B")])
    hdul.writeto(tmp_path / "ext.fits")
    cube = load_fits(tmp_path / "cube.fits", 24, 0.5, {"bands": 3})
    ext = load_fits(tmp_path / "ext.fits", 24, 0.5, {"bands": 3, "extensions": ["R", "G", "B"]})
    assert np.array_equal(cube, ext)
    assert cube[..., 0].mean() > cube[..., 2].mean()  # red is the brightest band
    by_index = read_bands(tmp_path / "ext.fits", {"extensions": [2]})
    assert np.array_equal(by_index[0], r)


def test_first_image_hdu_is_found_past_an_empty_primary(tmp_path):
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(galaxy(), name="SCI")]).writeto(tmp_path / "g.fits")
    assert load_fits(tmp_path / "g.fits", 16, 0.5).shape == (16, 16, 3)


def test_gzipped_fits_is_read(tmp_path):
    fits.PrimaryHDU(galaxy()).writeto(tmp_path / "g.fits.gz")
    assert load_image(tmp_path / "g.fits.gz", 16, 0.5).shape == (16, 16, 3)
    assert image_stem(tmp_path / "g.fits.gz") == "g"


@pytest.mark.parametrize("case, options, message", [
    ("table", {}, "no image HDU"),
    ("bands2", {"bands": 3}, "2 band(s); the source's fits.bands is 3"),
    ("bands3", {}, "3 band(s); the source's fits.bands is 1"),
    ("nan", {}, "NaN or infinite"),
    ("blank", {}, "blank FITS cutout"),
    ("plain", {"extensions": ["NOPE"]}, "no HDU 'NOPE'"),
    ("notfits", {}, "cannot read FITS file"),
    ("missing", {}, "image file not found"),
])
def test_bad_fits_is_one_error_naming_the_file(tmp_path, case, options, message):
    path = tmp_path / f"{case}.fits"
    if case == "table":
        cols = fits.ColDefs([fits.Column(name="a", format="E", array=np.arange(3.0))])
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
    elif case == "bands2":
        fits.PrimaryHDU(np.stack([galaxy(), galaxy(seed=1)])).writeto(path)
    elif case == "bands3":
        fits.PrimaryHDU(np.stack([galaxy()] * 3)).writeto(path)
    elif case == "nan":
        img = galaxy()
        img[3, 4] = np.nan
        fits.PrimaryHDU(img).writeto(path)
    elif case == "blank":
        fits.PrimaryHDU(np.zeros((20, 20), np.float32)).writeto(path)
    elif case == "plain":
        fits.PrimaryHDU(galaxy()).writeto(path)
    elif case == "notfits":
        path.write_text("SIMPLE? no, this is text\n")
    with pytest.raises(InputError) as err:
        load_image(path, 16, 0.5, fits=options)
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_band_count_is_read_from_the_header_before_the_pixels(tmp_path):
    """A header declaring a 1000x1000x5000 cube (5 GB) over a few kB of data is refused by its band
    count, without decoding it (the data are not even there: decoding would fail differently)."""
    header = fits.PrimaryHDU(np.zeros((2, 4, 4), np.uint8)).header
    header["NAXIS1"], header["NAXIS2"], header["NAXIS3"] = 1000, 1000, 5000
    (tmp_path / "cube.fits").write_bytes(header.tostring().encode() + bytes(2880))
    for bands in (1, 3):
        message = f"cube.fits: FITS image with 5000 band.s.; the source's fits.bands is {bands}"
        with pytest.raises(InputError, match=message):
            read_bands(tmp_path / "cube.fits", {"bands": bands}, max_pixels=10**7)


def test_max_pixels_refuses_before_reading(tmp_path):
    fits.PrimaryHDU(galaxy(64)).writeto(tmp_path / "big.fits")
    with pytest.raises(InputError, match="exceeds max_image_pixels=1000"):
        load_image(tmp_path / "big.fits", 16, 0.5, max_pixels=1000)


def test_bad_fits_follow_the_bad_image_policy(tmp_path):
    paths = []
    for i in range(5):
        img = galaxy(seed=i)
        if i == 2:
            img[:] = np.nan
        fits.PrimaryHDU(img).writeto(tmp_path / f"{i}.fits")
        paths.append(tmp_path / f"{i}.fits")
    images, bad = preprocess_images(paths, 16, 0.5, workers=1, progress=False,
                                    fits=[{"bands": 1}] * 5)
    assert [i for i, _ in bad] == [2] and "NaN" in bad[0][1]
    assert images[2].max() == 0 and images[0].max() > 0
    apply_bad_image_policy(bad, 5, 0.2)  # 1 of 5 is within 20 %
    with pytest.raises(InputError, match="2.fits"):
        apply_bad_image_policy(bad, 5, 0.1)


@pytest.mark.parametrize("case", ["bands3", "table"])
def test_fits_not_matching_the_options_stops_preprocessing(tmp_path, case):
    """A band count or HDU layout other than the options say is an error, not one unreadable image
    that the bad-image policy could drop: no image of such a survey would be read as meant."""
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.fits"
        if i == 3 and case == "bands3":
            fits.PrimaryHDU(np.stack([galaxy(seed=i)] * 3)).writeto(path)
        elif i == 3:
            cols = fits.ColDefs([fits.Column(name="a", format="E", array=np.arange(3.0))])
            fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
        else:
            fits.PrimaryHDU(galaxy(seed=i)).writeto(path)
        paths.append(path)
    for workers in (1, 2):
        with pytest.raises(FitsLayoutError) as err:
            preprocess_images(paths, 16, 0.5, workers=workers, progress=False, chunk=2, fits={"bands": 1})
        assert str(paths[3]) in str(err.value) and "\n" not in str(err.value)


def test_table_source_reads_its_first_fits_file_before_any_decoding(tmp_path):
    from gzmorph.sources import read_source

    for i in range(3):
        fits.PrimaryHDU(np.stack([galaxy(seed=i)] * 3)).writeto(tmp_path / f"g{i}.fits")
    (tmp_path / "cat.csv").write_text("id,p\na,g0.fits\nb,g1.fits\nc,g2.fits\n")
    with pytest.raises(FitsLayoutError, match="g0.fits: FITS image with 3 band"):
        read_source("table", tmp_path, catalogue="cat.csv", image_column="p")  # fits.bands 1 by default
    df = read_source("table", tmp_path, catalogue="cat.csv", image_column="p", fits={"bands": 3})
    assert df["id"].tolist() == ["a", "b", "c"]
    (tmp_path / "g0.fits").write_text("damaged")  # one damaged file is the bad-image policy's
    assert len(read_source("table", tmp_path, catalogue="cat.csv", image_column="p", fits={"bands": 3})) == 3


def test_options_are_checked():
    with pytest.raises(InputError, match="bands: 2 must be 1 or 3"):
        FitsOptions.from_config({"bands": 2})
    with pytest.raises(InputError, match="set bands: 3"):
        FitsOptions.from_config({"extensions": [1, 2, 3]})
    with pytest.raises(InputError, match="unknown option"):
        FitsOptions.from_config({"strech": 3})


def test_console_commands_find_fits_and_keep_ids_as_written(tmp_path):
    from gzmorph.imagestream import find_images, image_batches, image_ids

    fits.PrimaryHDU(galaxy()).writeto(tmp_path / "007.fits.gz")
    fits.PrimaryHDU(galaxy(seed=1)).writeto(tmp_path / "12.fits")
    (tmp_path / "notes.txt").write_text("not an image")
    paths = find_images([tmp_path])
    assert [p.name for p in paths] == ["007.fits.gz", "12.fits"]
    assert image_ids(paths) == ["007", "12"]  # "007" is not the integer 7: every id a string
    assert image_ids([tmp_path / "12.fits", tmp_path / "3.png"]) == [12, 3]
    pos, images = next(image_batches(paths, 16, 0.5, batch_size=2, workers=0))
    assert list(pos) == [0, 1] and images.shape == (2, 16, 16, 3)


def test_the_commands_read_fits_as_the_models_images_were_made(tmp_path):
    """A model trained on 3-band cutouts could not classify them with gzmorph (the commands read FITS
    with the 1-band defaults): the store records its FITS options, model files keep them, the commands
    use them."""
    import torch

    from gzmorph.cli import main
    from gzmorph.imageset import ImageWriter, preprocess_meta
    from gzmorph.io import save_bundle
    from gzmorph.models import create_model
    from gzmorph.represent import MODEL_FORMAT

    options = {"bands": 3, "stretch": 0.5, "Q": 8.0, "extensions": [], "minimum": 0.0}
    with ImageWriter(tmp_path / "store.parquet", (16, 16, 3), {"crop_fraction": 0.5, "fits": options}) as w:
        w.add(np.array([1]), np.zeros((1, 16, 16, 3), np.uint8))
    assert preprocess_meta(tmp_path / "store.parquet") == {"crop_fraction": 0.5, "fits": options}
    images = tmp_path / "cutouts"
    images.mkdir()
    for i in range(3):
        fits.PrimaryHDU(np.stack([galaxy(seed=i), galaxy(seed=i + 5), galaxy(seed=i + 9)])).writeto(
            images / f"{i}.fits")
    torch.manual_seed(0)
    model = create_model("cnn", 37, 16, widths=(4, 8))
    bundle = {"format": MODEL_FORMAT, "image_size": 16, "norm": {"mean": [0.2] * 3, "std": [0.3] * 3},
              "model_config": model.config, "num_features": model.num_features, "state_dict": model.state_dict()}
    save_bundle(tmp_path / "old.pt", bundle, MODEL_FORMAT)  # a file without the record: the defaults
    assert main(["embed", str(tmp_path / "old.pt"), str(images), "-o", str(tmp_path / "a.parquet"),
                 "--workers", "0"]) == 2
    save_bundle(tmp_path / "rep.pt", {**bundle, "preprocess": preprocess_meta(tmp_path / "store.parquet")},
                MODEL_FORMAT)
    assert main(["embed", str(tmp_path / "rep.pt"), str(images), "-o", str(tmp_path / "b.parquet"),
                 "--workers", "0"]) == 0
    # gzmorph finetune on labelled cutouts too, and its classifier keeps the record for classify
    (images / "labels.csv").write_text("path,label\n0.fits,a\n1.fits,b\n2.fits,a\n")
    assert main(["finetune", str(tmp_path / "rep.pt"), str(images / "labels.csv"), "-o", str(tmp_path / "ft.pt"),
                 "--mode", "frozen", "--steps", "2", "--workers", "0"]) == 0
    from gzmorph.classify import load_model

    assert load_model(tmp_path / "ft.pt").bundle["preprocess"]["fits"] == options
    assert main(["classify", str(tmp_path / "ft.pt"), str(images), "-o", str(tmp_path / "c.parquet"),
                 "--workers", "0"]) == 0
