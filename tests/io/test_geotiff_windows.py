"""WindowDecoder (io.geotiff_windows) and valid_mask_into: the values read_geotiff reads, decoded into the
caller's arrays (strided views included), one dataset per thread, typed errors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from resnet_apps.errors import GeoTiffError
from resnet_apps.io import read_geotiff
from resnet_apps.io.geotiff import valid_mask_into
from resnet_apps.io.geotiff_windows import WindowDecoder


def _tif(path: Path, data: np.ndarray, nodata: float | None = None, alpha: bool = False) -> Path:
    profile = dict(
        driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0], dtype=str(data.dtype),
        crs="EPSG:32633", transform=from_origin(500000, 4600000, 10, 10), nodata=nodata, tiled=True,
        blockxsize=16, blockysize=16, compress="deflate",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if alpha:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return path


def _reference(data: np.ndarray, nodata: list[float | None]) -> np.ndarray:
    """The rule spelt out: invalid where every band equals its nodata, or any band is NaN."""
    valid = np.ones(data.shape[1:], bool)
    if nodata and all(v is not None and not np.isnan(v) for v in nodata):
        valid &= ~np.all([band == v for band, v in zip(data, nodata, strict=True)], axis=0)
    if data.dtype.kind == "f":
        valid &= ~np.isnan(data).any(axis=0)
    return valid


@pytest.mark.parametrize(
    ("dtype", "nodata"),
    [("uint16", [0.0, 0.0, 0.0]), ("uint16", [0.0, 7.0, 0.0]), ("float32", [-9999.0] * 3),
     ("float32", [None] * 3), ("uint16", [0.0, None, 0.0])],
)  # fmt: skip
def test_valid_mask_into_follows_the_rule(dtype: str, nodata: list[float | None]) -> None:
    """Nodata in all bands (invalid), in some bands only (valid), in the first band only (the early exit
    must not stop too soon), NaN, and a band without nodata (no nodata rule at all)."""
    rng = np.random.default_rng(0)
    data = rng.integers(1, 50, size=(3, 20, 30)).astype(dtype)
    fill = [0 if v is None else v for v in nodata]
    data[:, 2:5, 3:9] = np.array(fill, dtype=dtype)[:, None, None]  # nodata in every band
    data[0, 10:12, :] = fill[0]  # in the first band only
    data[:2, 15, 4] = np.array(fill[:2], dtype=dtype)  # in the first two only
    if dtype == "float32":
        data[2, 7, 7] = np.nan
    valid = np.zeros((20, 30), bool)
    out = valid_mask_into(data, nodata, valid)
    assert out is valid
    np.testing.assert_array_equal(valid, _reference(data, nodata))
    if all(v is not None for v in nodata):
        assert not valid[2:5, 3:9].any() and valid[10:12].all() and valid[15, 4]
    if dtype == "float32":
        assert not valid[7, 7]


@pytest.mark.parametrize("case", ["nodata", "float_nan", "alpha"])
def test_decoder_equals_read_geotiff_into_a_strided_view(tmp_path: Path, case: str) -> None:
    """Windows decoded into views of a larger array (GDAL writes through the strides) hold what
    read_geotiff reads: bands in the order asked, nodata, NaN and alpha folded into valid."""
    rng = np.random.default_rng(1)
    if case == "alpha":
        data = rng.integers(0, 255, size=(4, 50, 70)).astype(np.uint8)
        data[3] = 255
        data[3, 20:30, 10:40] = 0  # transparent
        path, nodata, indexes = _tif(tmp_path / "a.tif", data, alpha=True), None, [3, 1]
    elif case == "float_nan":
        data = rng.normal(size=(3, 50, 70)).astype(np.float32)
        data[1, 5, 5] = np.nan
        data[:, 40:45, 60:] = -9999.0
        path, nodata, indexes = _tif(tmp_path / "f.tif", data, nodata=-9999.0), -9999.0, [1, 2, 3]
    else:
        data = rng.integers(1, 9, size=(3, 50, 70)).astype(np.uint16)
        data[:, 0:20, 0:33] = 0
        data[2, 30, 30] = 0  # one band only: stays valid
        path, nodata, indexes = _tif(tmp_path / "n.tif", data, nodata=0), 0, [2, 3]
    decoder = WindowDecoder(path, indexes)
    assert decoder.nodata == [nodata] * len(indexes)
    big_raw = np.full((len(indexes), 90, 120), 77, dtype=data.dtype)
    big_valid = np.zeros((90, 120), bool)
    for window in [(0, 0, 50, 70), (3, 17, 33, 29), (16, 32, 16, 16), (49, 69, 1, 1)]:
        row, col, h, w = window
        raw, valid = big_raw[:, 11 : 11 + h, 23 : 23 + w], big_valid[11 : 11 + h, 23 : 23 + w]
        assert not raw.flags.c_contiguous or h == 1
        decoder.read_into(window, raw, valid)
        want, meta = read_geotiff(path, bands=indexes, window=window)
        np.testing.assert_array_equal(raw, want)
        np.testing.assert_array_equal(valid, meta.valid)
    assert (big_raw[:, :11] == 77).all() and (big_raw[:, :, :23] == 77).all()  # nothing outside the views
    if case == "alpha":  # window 2's pixel (20, 17), transparent, at (17, 0) in its view
        assert not big_valid[11 + 17, 23]
    decoder.close()


def test_one_dataset_per_thread_closed_at_the_end(tmp_path: Path) -> None:
    """Threads reading at once each get their own dataset (a GDAL dataset is not thread-safe), reused for
    their later reads; close() closes every one."""
    data = np.arange(3 * 64 * 64, dtype=np.uint16).reshape(3, 64, 64)
    path = _tif(tmp_path / "s.tif", data)
    decoder = WindowDecoder(path, [1, 2, 3])
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            barrier.wait(5)
            for r in range(0, 64, 16):
                raw, valid = np.empty((3, 16, 64), np.uint16), np.empty((16, 64), bool)
                decoder.read_into((r, 0, 16, 64), raw, valid)
                np.testing.assert_array_equal(raw, data[:, r : r + 16])
                assert valid.all()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    opened = list(decoder._opened)
    assert len(opened) == 3 and len({id(s) for s in opened}) == 3
    decoder.close()
    assert all(s.closed for s in opened) and not decoder._opened


def test_decoder_errors_name_the_file(tmp_path: Path) -> None:
    """A band the file lacks, a missing file, and a truncated file: GeoTiffError naming the file."""
    data = np.random.default_rng(2).integers(0, 60000, size=(2, 64, 64)).astype(np.uint16)
    path = _tif(tmp_path / "t.tif", data)
    with pytest.raises(GeoTiffError, match=r"t\.tif.*bands \[3\].*2-band"):
        WindowDecoder(path, [3])
    with pytest.raises(GeoTiffError, match="no such file"):
        WindowDecoder(tmp_path / "missing.tif", [1])
    decoder = WindowDecoder(path, [1, 2])
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # the later tiles' bytes are gone
    raw, valid = np.empty((2, 64, 64), np.uint16), np.empty((64, 64), bool)
    with pytest.raises(GeoTiffError, match=r"t\.tif.*truncated"):
        decoder.read_into((0, 0, 64, 64), raw, valid)
    decoder.close()
