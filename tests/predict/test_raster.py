"""SceneReader's block reads (predict.raster): read_window and read_into give read_raw's values (the
io.read_geotiff reference) for windows inside, across and outside the scene, of a file or a sub-scene."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scene_fixtures import make_vrt

from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.predict.raster import SceneReader, zero_padding

PRE = Preprocessing(scale=0.5, mean=(100.0, 100.0), std=(50.0, 50.0))
WINDOWS = [
    (0, 40, 0, 50),
    (10, 30, 7, 29),
    (-12, 20, -5, 33),
    (50, 90, 60, 130),
    (-30, -2, 0, 10),
    (0, 90, 0, 130),
]


def _scene(path: Path) -> Path:
    data = np.random.default_rng(4).integers(1, 500, size=(2, 90, 130)).astype(np.uint16)
    data[:, 30:50, 40:70] = 0  # nodata in both bands
    data[0, 3, 3] = 0  # in one band only: valid
    with rasterio.open(
        path, "w", driver="GTiff", height=90, width=130, count=2, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(500000, 4600000, 10, 10), nodata=0, tiled=True, blockxsize=32, blockysize=32,
    ) as dst:  # fmt: skip
        dst.write(data)
    return path


@pytest.mark.parametrize("sub", [None, (5, 9, 70, 100)])
def test_read_window_equals_read_raw(tmp_path: Path, sub: tuple[int, int, int, int] | None) -> None:
    """Padding zero and invalid, nodata folded, the sub-scene's pixels only; into given views as well."""
    path = _scene(tmp_path / "s.tif")
    with SceneReader(path, PRE, window=sub) as reader:
        assert reader.geotiff
        for window in WINDOWS:
            want_raw, want_valid = reader.read_raw(window)
            raw, valid = reader.read_window(window)
            np.testing.assert_array_equal(raw, want_raw)
            np.testing.assert_array_equal(valid, want_valid)
            r0, r1, c0, c1 = window
            big_raw, big_valid = (
                np.full((2, r1 - r0, c1 - c0 + 4), 5, np.uint16),
                np.ones((r1 - r0, c1 - c0 + 4), bool),
            )
            out = (big_raw[:, :, 2:-2], big_valid[:, 2:-2])
            got = reader.read_window(window, out)
            assert got[0] is out[0] and got[1] is out[1]
            np.testing.assert_array_equal(out[0], want_raw)
            np.testing.assert_array_equal(out[1], want_valid)
            assert (big_raw[:, :, :2] == 5).all() and big_valid[:, -2:].all()  # nothing written outside


def test_read_into_only_inside_and_reopens_after_close(tmp_path: Path) -> None:
    """read_into takes windows inside the scene (a ValueError names the scene otherwise); close() closes its
    datasets, and a later read opens them again."""
    path = _scene(tmp_path / "s.tif")
    reader = SceneReader(path, PRE)
    raw, valid = np.empty((2, 20, 20), np.uint16), np.empty((20, 20), bool)
    with pytest.raises(ValueError, match=r"s\.tif: window \(-1, 19, 0, 20\) is not inside the 90x130 scene"):
        reader.read_into((-1, 19, 0, 20), raw, valid)
    reader.read_into((0, 20, 0, 20), raw, valid)
    decoder = reader._decoder
    assert decoder is not None and len(decoder._opened) == 1
    opened = decoder._opened[0]
    reader.close()
    assert opened.closed and reader._decoder is None
    reader.read_into((20, 40, 0, 20), raw, valid)
    np.testing.assert_array_equal(raw, reader.read_raw((20, 40, 0, 20))[0])
    reader.close()


def test_a_vrt_reads_through_read_raw(tmp_path: Path) -> None:
    """A VRT is not a GeoTIFF (its blocks are windows of its sources): read_window falls back to read_raw,
    with the same values as the GeoTIFF it points to."""
    tif = _scene(tmp_path / "s.tif")
    vrt = make_vrt(tif, 90, 130)
    with SceneReader(vrt, PRE) as from_vrt, SceneReader(tif, PRE) as from_tif:
        assert not from_vrt.geotiff
        for window in WINDOWS:
            a, b = from_vrt.read_window(window), from_tif.read_window(window)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        assert from_vrt._decoder is None


def test_zero_padding_zeroes_exactly_the_outside() -> None:
    """Windows above, below, left, right, across every edge and wholly outside a 10 x 12 scene: raw zero
    and valid False outside the scene, untouched inside (where the decode writes)."""
    height, width = 10, 12
    checked = 0
    for r0, r1, c0, c1 in itertools.product(
        [-5, -1, 0, 3, 9, 11], [1, 4, 10, 13, 16], [-4, 0, 5, 12], [2, 7, 12, 15]
    ):
        if r1 <= r0 or c1 <= c0:
            continue
        raw, valid = np.full((2, r1 - r0, c1 - c0), 7), np.ones((r1 - r0, c1 - c0), bool)
        zero_padding(raw, valid, (r0, r1, c0, c1), height, width)
        rows, cols = np.arange(r0, r1)[:, None], np.arange(c0, c1)[None]
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        np.testing.assert_array_equal(valid, inside)
        np.testing.assert_array_equal(raw == 7, np.broadcast_to(inside, raw.shape))
        assert (raw[:, ~inside] == 0).all()
        checked += 1
    assert checked > 200
