"""load_arrays makes one float copy of a large image before resizing; the values are those of the plain path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_apps.data.loading import Preprocessing, load_arrays, resize_arrays
from resnet_apps.data.records import Record


@pytest.mark.parametrize("grayscale", [False, True])
def test_channels_last_copy_gives_the_same_values(tmp_path: Path, grayscale: bool) -> None:
    raw = np.random.default_rng(0).integers(0, 256, size=(50, 40, 3)).astype(np.uint8)
    Image.fromarray(raw).save(tmp_path / "a.png")
    prep = Preprocessing(scale=1 / 255, image_size=16, grayscale=grayscale)
    got = load_arrays(Record(path="a.png"), tmp_path, prep, None)
    # reference: the straightforward [C, H, W] float path, resized the same way
    image = raw.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255)
    if grayscale:
        image = image.mean(axis=0, keepdims=True)
    want = resize_arrays({"image": image, "valid": np.ones((50, 40), bool)}, (16, 16))
    assert got["image"].shape == ((1 if grayscale else 3), 16, 16) and got["image"].flags.c_contiguous
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["valid"], want["valid"])


def test_float_nan_pixels_still_marked_invalid(tmp_path: Path) -> None:
    import rasterio

    data = np.ones((2, 20, 20), np.float32)
    data[:, :5, :] = np.nan
    with rasterio.open(
        tmp_path / "f.tif", "w", driver="GTiff", width=20, height=20, count=2, dtype="float32"
    ) as dst:
        dst.write(data)
    got = load_arrays(Record(path="f.tif"), tmp_path, Preprocessing(image_size=10), None)
    assert not got["valid"][:2].any() and got["valid"][3:].all()
    assert np.isfinite(got["image"]).all() and float(got["image"][:, 5:].min()) == 1.0
