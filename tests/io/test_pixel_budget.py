"""The pixel budget: what a header claims is refused before any decode (sparse files, forged headers)."""

from __future__ import annotations

import resource
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dicom_fixtures import make_dicom
from PIL import Image

from resnet_apps.data.dataset import RecordDataset
from resnet_apps.data.loading import Preprocessing
from resnet_apps.data.records import Record
from resnet_apps.errors import ImageReadError, PixelBudgetError
from resnet_apps.io import read_dicom, read_geotiff, read_image
from resnet_apps.io.budget import DEFAULT_MAX_PIXELS, check_pixels
from resnet_apps.io.inspect import inspect_file


def sparse_geotiff(path: Path, bands: int = 13, side: int = 20000) -> Path:
    """A tiled GeoTIFF whose header claims bands x side x side but holds no tile: a few KB on disk."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=side,
            height=side,
            count=bands,
            dtype="uint16",
            tiled=True,
            blockxsize=512,
            blockysize=512,
            SPARSE_OK=True,
        ):
            pass
    return path


def forged_png(path: Path, width: int, height: int, colour_type: int = 0) -> Path:
    """A PNG of signature + IHDR (+ an empty IDAT and IEND) that claims width x height: ~70 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b""))
    return path


def test_budget_arithmetic() -> None:
    # the default is 1.5e8 px x 3 bands; exactly at the budget passes, one value more is refused
    assert DEFAULT_MAX_PIXELS == 150_000_000 * 3
    assert check_pixels("a.tif", 100, 100, 3, max_pixels=30_000) == 30_000
    with pytest.raises(PixelBudgetError, match=r"a.tif: header claims 100 x 100 px x 3 band\(s\) = 3e\+04"):
        check_pixels("a.tif", 100, 100, 3, max_pixels=29_999)
    with pytest.raises(PixelBudgetError, match="x 4 frames"):
        check_pixels("a.dcm", 100, 100, 1, frames=4, max_pixels=39_999)


def test_sparse_geotiff_refused_before_any_read(tmp_path: Path) -> None:
    path = sparse_geotiff(tmp_path / "huge.tif")
    assert path.stat().st_size < 200_000  # the 13 x 20000 x 20000 claim costs nothing on disk
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PixelBudgetError, match=r"huge.tif: header claims 20000 x 20000 px x 13 band"):
        read_geotiff(path)
    with pytest.raises(PixelBudgetError):  # read_image and the data layer go through the same check
        read_image(path)
    # a window, or a few bands, within the budget is read (only that part is decoded)
    chip, meta = read_geotiff(path, bands=["B04"], window=(100, 200, 64, 32))
    assert chip.shape == (1, 64, 32) and meta.window == (100, 200, 64, 32)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 500  # the 9.7 GiB allocation never happened


def test_inspect_samples_a_large_geotiff(tmp_path: Path) -> None:
    path = sparse_geotiff(tmp_path / "huge.tif")
    info = inspect_file(path)
    assert "error" not in info
    assert info["shape"] == [13, 20000, 20000]  # the file's size, though statistics come from a sample
    assert "sample of" in info["statistics_from"]
    assert len(info["percentiles"]) == 13 and info["percentiles"][0]["50"] == 0.0
    assert info["transform"][0] == 1.0  # the file's transform, not that of the sample


def test_inspect_uses_overviews_when_present(tmp_path: Path) -> None:
    path = tmp_path / "ovr.tif"
    data = np.arange(3000 * 3000, dtype=np.uint16).reshape(1, 3000, 3000) % 1000
    with rasterio.open(path, "w", driver="GTiff", width=3000, height=3000, count=1, dtype="uint16") as dst:
        dst.write(data)
        dst.build_overviews([2, 4], rasterio.enums.Resampling.nearest)
    info = inspect_file(path)
    assert "sample of" in info["statistics_from"]
    row = info["percentiles"][0]
    assert row["0"] == 0.0 and 990.0 <= row["100"] <= 999.0 and 400.0 <= row["50"] <= 600.0


@pytest.mark.parametrize(
    ("colour_type", "bands"),
    [
        (0, 1),  # grey: 4e8 values, within the default budget, but Pillow's own bomb check would raise
        (2, 3),  # RGB: 1.2e9 values, over the default budget
    ],
)
def test_forged_png_header_is_a_typed_error(tmp_path: Path, colour_type: int, bands: int) -> None:
    path = forged_png(tmp_path / "bomb.png", 20000, 20000, colour_type)
    assert path.stat().st_size < 100
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageReadError, match="bomb.png") as caught:
        read_image(path)
    assert not isinstance(caught.value, Image.DecompressionBombError)
    if bands == 3:
        assert isinstance(caught.value, PixelBudgetError)
    with pytest.raises(PixelBudgetError, match="bomb.png.*20000 x 20000"):
        read_image(path, max_pixels=1_000_000)
    assert Image.MAX_IMAGE_PIXELS == limit  # Pillow's global setting is restored


def test_forged_dicom_rows_columns_refused(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "big.dcm", np.zeros((4, 5), dtype=np.uint16), window=(1, 2))
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 3  # the header lies; the pixels are 40 bytes
    ds.save_as(path)
    with pytest.raises(
        PixelBudgetError, match=r"big.dcm: header claims 60000 x 60000 px x 1 band\(s\) x 3 frames"
    ):
        read_dicom(path, frame=0)
    with pytest.raises(PixelBudgetError):
        read_image(path, dicom_frame="first")


def test_on_error_skip_lists_the_oversized_file(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.full((8, 8), 100, dtype=np.uint8)).save(good)
    forged_png(tmp_path / "bomb.png", 20000, 20000, colour_type=2)
    records = [Record(path="bomb.png", label=0), Record(path="good.png", label=1)]
    dataset = RecordDataset(
        records, tmp_path, Preprocessing(image_size=8), classes=["a", "b"], on_error="skip"
    )
    skipped = dataset.validate()
    assert [s["path"] for s in skipped] == ["bomb.png"]
    assert skipped[0]["reason"].startswith("PixelBudgetError: ")
    assert [r.path for r in dataset.records] == ["good.png"]
    fail = RecordDataset(records, tmp_path, Preprocessing(image_size=8), classes=["a", "b"])
    with pytest.raises(PixelBudgetError):
        fail.validate()


def test_recipe_budget_reaches_the_reader(tmp_path: Path) -> None:
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(image)
    records = [Record(path="img.png", label=0)]
    tight = RecordDataset(records, tmp_path, Preprocessing(max_pixels=40 * 50 * 3 - 1), classes=["a"])
    with pytest.raises(PixelBudgetError, match="img.png"):
        tight.arrays(0)
    loose = RecordDataset(records, tmp_path, Preprocessing(max_pixels=40 * 50 * 3), classes=["a"])
    assert loose.arrays(0)["image"].shape == (3, 40, 50)


def test_wrong_band_fails_before_the_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # folder predict asks a DICOM-trained checkpoint's band ["gray"] of an RGB PNG, then reads all bands:
    # the first attempt must cost no decode (a 12000 x 12000 PNG was decoded twice, 6.2 GB peak)
    from resnet_apps.errors import BandError

    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((30, 20, 3), dtype=np.uint8)).save(path)
    decodes = []
    original = Image._getdecoder  # Pillow makes one decoder per decode of a file's pixel data

    def counting_decoder(*args: object, **kwargs: object) -> object:
        decodes.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "_getdecoder", counting_decoder)
    with pytest.raises(BandError, match="gray"):
        read_image(path, bands=["gray"])
    assert decodes == []
    arr, _ = read_image(path)
    assert arr.shape == (3, 30, 20) and len(decodes) == 1
