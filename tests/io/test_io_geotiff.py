"""read_geotiff / write_geotiff / open_geotiff_writer on real chips and scenes and generated files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from resnet_apps.constants import EUROSAT_MS_BANDS
from resnet_apps.errors import BandError, GeoTiffError
from resnet_apps.io import GeoMeta, open_geotiff_writer, read_geotiff, write_geotiff

TRANSFORM = from_origin(500000.0, 4600000.0, 10.0, 10.0)


def make_tif(
    path: Path, data: np.ndarray, nodata: float | None = None, names: list[str] | None = None
) -> Path:
    """A small georeferenced GTiff (EPSG:32633, 10 m) with given bands [C, H, W]."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs="EPSG:32633",
        transform=TRANSFORM,
        nodata=nodata,
    ) as dst:
        dst.write(data)
        for i, name in enumerate(names or [], start=1):
            dst.set_band_description(i, name)
    return path


# --- real data -------------------------------------------------------------------------------------


def test_eurosat_chip_band_names_and_uint16(shared_data: Path) -> None:
    path = shared_data / "eurosat_ms" / "Forest" / "Forest_1.tif"
    data, meta = read_geotiff(path)
    assert data.shape == (13, 64, 64) and data.dtype == np.uint16 and meta.dtype == "uint16"
    assert meta.band_names == list(EUROSAT_MS_BANDS) and meta.crs == "EPSG:32632"
    assert meta.res[0] == pytest.approx(10.0, abs=0.01) and meta.nodata is None and meta.valid.all()
    assert data.max() > 255  # 16-bit reflectance kept, not scaled to bytes
    # by name: the planes rasterio gives for bands 4, 3, 2 and 13 (1-based) - B8A is stored last
    picked, pmeta = read_geotiff(path, bands=["B04", "B03", "B02", "B8A"])
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(picked, src.read([4, 3, 2, 13]))
    assert pmeta.band_names == ["B04", "B03", "B02", "B8A"]
    # 1-based band numbers (GDAL's, rasterio's) and case-insensitive names agree
    np.testing.assert_array_equal(read_geotiff(path, bands=[4, "b03"])[0], picked[:2])
    # cirrus B10 holds tiny values (about 5-10): a check that the plane order is EuroSAT's
    assert read_geotiff(path, bands=["B10"])[0].max() < 50


def test_window_read_equals_slice_of_full_read(shared_data: Path) -> None:
    path = shared_data / "geotiff_scenes" / "naip_m_4709963_se_14_1_20200831.tif"
    full, meta = read_geotiff(path)
    part, pmeta = read_geotiff(path, window=(100, 200, 64, 96))
    np.testing.assert_array_equal(part, full[:, 100:164, 200:296])
    assert pmeta.window == (100, 200, 64, 96) and (pmeta.width, pmeta.height) == (meta.width, meta.height)
    # the returned transform is the window's: its origin moved by 200 columns and 100 rows
    a, _, c, _, e, f = meta.transform
    assert pmeta.transform[2] == pytest.approx(c + 200 * a) and pmeta.transform[5] == pytest.approx(
        f + 100 * e
    )
    same, _ = read_geotiff(path, window=Window(200, 100, 96, 64))  # rasterio Window(col, row, w, h)
    np.testing.assert_array_equal(same, part)
    with pytest.raises(GeoTiffError, match="outside"):
        read_geotiff(path, window=(700, 0, 64, 64))


def test_windowed_read_reads_only_the_window(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every rasterio read gets window= (never a full read sliced afterwards)
    calls: list[object] = []
    original = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs.get("window"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    read_geotiff(shared_data / "geotiff_scenes" / "srtm_shade.tif", window=(0, 0, 32, 32))
    assert calls and all(isinstance(w, Window) and (w.height, w.width) == (32, 32) for w in calls)


def test_nodata_mask_on_landsat_scene(shared_data: Path) -> None:
    data, meta = read_geotiff(shared_data / "geotiff_scenes" / "landsat7_RGB.byte.tif")
    assert data.shape == (3, 718, 791) and meta.nodata == 0 and meta.crs == "EPSG:32618"
    invalid = 1.0 - meta.valid.mean()
    assert 0.30 < invalid < 0.36  # SOURCES.md: about 33% is the rotated-scene collar
    assert (data[:, ~meta.valid] == 0).all()  # invalid exactly where all bands are nodata
    assert (data[:, meta.valid] != 0).any(axis=0).all()


def test_stacked_38cloud_bands(shared_data: Path) -> None:
    root = shared_data / "cloud38_landsat8_segmentation"
    stem = "patch_51_3_by_7_LC08_L1TP_064017_20160420_20170223_01_T1.TIF"
    files = [root / f"train_{b}" / f"{b}_{stem}" for b in ("red", "green", "blue", "nir")]
    data, meta = read_geotiff(files)
    assert data.shape == (4, 384, 384) and data.dtype == np.uint16
    assert meta.band_names == ["red", "green", "blue", "nir"] and meta.crs is None and not meta.georeferenced
    for plane, path in zip(data, files, strict=False):
        with rasterio.open(path) as src:
            np.testing.assert_array_equal(plane, src.read(1))
    nir_only, _ = read_geotiff(files, bands=["nir"])
    np.testing.assert_array_equal(nir_only[0], data[3])


# --- generated files --------------------------------------------------------------------------------


def test_fewer_bands_than_asked_is_band_error(tmp_path: Path) -> None:
    path = make_tif(tmp_path / "three.tif", np.zeros((3, 8, 8), np.uint16), names=["B02", "B03", "B04"])
    with pytest.raises(BandError, match=r"three.tif.*'B08'.*\['B02', 'B03', 'B04'\].*fix"):
        read_geotiff(path, bands=["B04", "B08"])
    with pytest.raises(BandError, match="band number 4.*1-based"):
        read_geotiff(path, bands=[4])
    with pytest.raises(BandError, match="band number 0"):
        read_geotiff(path, bands=[0])


def test_nan_and_nodata_make_invalid(tmp_path: Path) -> None:
    data = np.ones((2, 4, 4), np.float32)
    data[0, 0, 0] = np.nan  # NaN in one band -> invalid
    data[:, 1, 1] = -9999  # nodata in all bands -> invalid
    data[0, 2, 2] = -9999  # nodata in one band only -> still valid (GDAL dataset-mask convention)
    _, meta = read_geotiff(make_tif(tmp_path / "f.tif", data, nodata=-9999))
    expected = np.ones((4, 4), bool)
    expected[0, 0] = expected[1, 1] = False
    np.testing.assert_array_equal(meta.valid, expected)


def test_all_nodata_chip_is_all_invalid(tmp_path: Path) -> None:
    _, meta = read_geotiff(make_tif(tmp_path / "empty.tif", np.zeros((2, 8, 8), np.uint8), nodata=0))
    assert not meta.valid.any()


def test_write_read_round_trip_cog(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 4000, size=(4, 600, 520), dtype=np.uint16)
    data[:, :10, :] = 65535
    source = make_tif(tmp_path / "src.tif", data, nodata=65535)
    array, meta = read_geotiff(source)
    out = tmp_path / "out.tif"
    write_geotiff(out, array, like=meta, band_names=["B02", "B03", "B04", "B08"])
    back, bmeta = read_geotiff(out)
    np.testing.assert_array_equal(back, array)
    assert (
        bmeta.crs == "EPSG:32633"
        and bmeta.transform == pytest.approx(meta.transform)
        and bmeta.nodata == 65535
    )
    assert bmeta.band_names == ["B02", "B03", "B04", "B08"]
    np.testing.assert_array_equal(bmeta.valid, meta.valid)
    with rasterio.open(out) as src:
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        assert src.block_shapes[0] in ((256, 256), (512, 512))
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.overviews(1)  # 600 px > one 512 block: overviews exist


def test_window_chip_written_back_in_place(tmp_path: Path) -> None:
    data = np.arange(3 * 32 * 32, dtype=np.uint16).reshape(3, 32, 32)
    chip, meta = read_geotiff(make_tif(tmp_path / "src.tif", data), window=(8, 16, 8, 8))
    write_geotiff(tmp_path / "chip.tif", chip, like=meta)
    _, cmeta = read_geotiff(tmp_path / "chip.tif")
    assert cmeta.transform[2] == pytest.approx(500000.0 + 16 * 10) and cmeta.transform[5] == pytest.approx(
        4600000.0 - 8 * 10
    )


def test_incremental_writer_tile_by_tile(tmp_path: Path) -> None:
    like = GeoMeta(
        path="-",
        crs="EPSG:32633",
        transform=tuple(TRANSFORM)[:6],
        res=(10.0, 10.0),
        nodata=None,
        band_names=["b"],
        dtype="uint8",
        width=100,
        height=70,
        window=(0, 0, 70, 100),
    )
    expected = np.full((1, 70, 100), 255, np.uint8)
    out = tmp_path / "scene.tif"
    with open_geotiff_writer(out, like=like, count=1, dtype="uint8", nodata=255) as writer:
        for row in range(0, 64, 32):
            for col in range(0, 96, 32):
                tile = np.full((1, 32, 32), row // 32 * 10 + col // 32, np.uint8)
                writer.write(tile, (row, col, 32, 32))
                expected[:, row : row + 32, col : col + 32] = tile
    back, meta = read_geotiff(out)
    np.testing.assert_array_equal(back, expected)  # unwritten margin holds nodata 255
    assert meta.nodata == 255 and meta.valid[:64, :96].all() and not meta.valid[64:].any()
    assert not list(tmp_path.glob(".*partial*"))  # the intermediate file is gone


def test_writer_leaves_nothing_on_error(tmp_path: Path) -> None:
    like = GeoMeta(
        path="-",
        crs="EPSG:32633",
        transform=tuple(TRANSFORM)[:6],
        res=(10.0, 10.0),
        nodata=None,
        band_names=["b"],
        dtype="uint8",
        width=16,
        height=16,
        window=(0, 0, 16, 16),
    )
    with pytest.raises(RuntimeError):
        with open_geotiff_writer(tmp_path / "bad.tif", like=like, count=1, dtype="uint8") as writer:
            writer.write(np.zeros((1, 8, 8), np.uint8), (0, 0, 8, 8))
            raise RuntimeError("predictor crashed")
    assert list(tmp_path.iterdir()) == []
