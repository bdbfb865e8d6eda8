"""read_image dispatches on content; PNG/JPEG layouts and dtypes; read_mask keeps codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dicom_fixtures import make_dicom
from PIL import Image

from resnet_apps.errors import BandError, ImageReadError
from resnet_apps.io import DicomMeta, GeoMeta, ImageMeta, read_image, read_mask, sniff_format

RGB = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3  # [H, W, 3], distinct values


def save(path: Path, array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> Path:
    Image.fromarray(array, mode=mode).save(path, format=fmt) if mode else Image.fromarray(array).save(
        path, format=fmt
    )
    return path


# --- layouts and dtypes (each row: what the file is -> what read_image returns) ----------------------


def test_rgb_png_is_3_h_w_uint8(tmp_path: Path) -> None:
    arr, meta = read_image(save(tmp_path / "rgb.png", RGB))
    assert isinstance(meta, ImageMeta) and meta.kind == "image" and meta.valid is None
    np.testing.assert_array_equal(arr, RGB.transpose(2, 0, 1))
    assert meta.band_names == ["red", "green", "blue"] and meta.dtype == "uint8" and meta.format == "png"


def test_grey_16bit_png_keeps_uint16(tmp_path: Path) -> None:
    grey = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)  # up to 55000 > 255
    path = tmp_path / "g16.png"
    Image.fromarray(grey).save(path)
    arr, meta = read_image(path)
    assert arr.shape == (1, 3, 4) and arr.dtype == np.uint16 and meta.band_names == ["gray"]
    np.testing.assert_array_equal(arr[0], grey)


def test_rgba_drops_alpha_and_palette_expands(tmp_path: Path) -> None:
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])
    arr, _ = read_image(save(tmp_path / "rgba.png", rgba))
    np.testing.assert_array_equal(arr, RGB.transpose(2, 0, 1))
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    pal = Image.fromarray(indices, mode="P")
    pal.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "pal.png")
    arr, meta = read_image(tmp_path / "pal.png")
    assert meta.mode == "P" and arr.shape == (3, 2, 2)
    np.testing.assert_array_equal(arr[:, 1, 0], [70, 80, 90])  # index 2 -> its palette colour


def test_bands_and_window_on_png(tmp_path: Path) -> None:
    arr, meta = read_image(save(tmp_path / "rgb.png", RGB), bands=["blue", 1], window=(1, 2, 2, 3))
    np.testing.assert_array_equal(arr, RGB[1:3, 2:5][:, :, [2, 0]].transpose(2, 0, 1))
    assert meta.band_names == ["blue", "red"]
    with pytest.raises(BandError, match="nir"):
        read_image(tmp_path / "rgb.png", bands=["nir"])


# --- content, not suffix -------------------------------------------------------------------------


def test_dispatch_on_magic_bytes_not_suffix(tmp_path: Path) -> None:
    dicom = make_dicom(tmp_path / "x.dcm", np.arange(20, dtype=np.uint16).reshape(4, 5), window=(10, 11))
    disguised = tmp_path / "photo.jpg"
    shutil.copy(dicom, disguised)
    arr, meta = read_image(disguised)
    assert isinstance(meta, DicomMeta) and arr.shape == (1, 4, 5) and arr.dtype == np.float32
    png_as_tif = save(tmp_path / "really_png.tif", RGB)
    assert sniff_format(png_as_tif) == "png" and read_image(png_as_tif)[0].shape == (3, 4, 6)
    jpeg = save(tmp_path / "j.png", RGB, fmt="JPEG")
    assert sniff_format(jpeg) == "jpeg" and read_image(jpeg)[1].format == "jpeg"


def test_tiff_goes_to_rasterio(shared_data: Path) -> None:
    arr, meta = read_image(shared_data / "eurosat_ms" / "River" / "River_1.tif", bands=["B08"])
    assert isinstance(meta, GeoMeta) and arr.shape == (1, 64, 64) and arr.dtype == np.uint16


def test_unknown_and_truncated_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(ImageReadError, match="notes.png.*unknown image format"):
        read_image(text)
    good = save(tmp_path / "big.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:400])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(cut)


# --- real files ------------------------------------------------------------------------------------


def test_real_jpeg_xray(shared_data: Path) -> None:
    path = next((shared_data / "chest_xray_pneumonia_kermany").rglob("*.jpeg"))
    arr, meta = read_image(path)
    expected = np.asarray(Image.open(path))
    expected = expected[None] if expected.ndim == 2 else expected.transpose(2, 0, 1)
    np.testing.assert_array_equal(arr, expected)


def test_read_mask_palette_indices_and_colours(shared_data: Path) -> None:
    # Dubai tile 2 masks are palette PNGs whose colours are the class colours
    path = shared_data / "dubai_aerial_landcover_segmentation" / "tile_2" / "masks" / "image_part_003.png"
    indices, info = read_mask(path)
    colours, _ = read_mask(path, rgb=True)
    assert indices.ndim == 2 and colours.shape == indices.shape + (3,) and info["mode"] == "P"
    palette = np.array(info["palette"], dtype=np.uint8)
    np.testing.assert_array_equal(palette[indices], colours)
    known = {
        (60, 16, 152),
        (132, 41, 246),
        (110, 193, 228),
        (254, 221, 58),
        (226, 169, 41),
        (155, 155, 155),
        (0, 0, 0),
    }
    found = {tuple(int(v) for v in c) for c in np.unique(colours.reshape(-1, 3), axis=0)}
    assert found <= known and len(found) >= 2


def test_read_mask_tiff_binary_cloud_mask(shared_data: Path) -> None:
    path = next((shared_data / "cloud38_landsat8_segmentation" / "train_gt").glob("*.TIF"))
    mask, info = read_mask(path)
    assert mask.ndim == 2 and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
