"""One sniffer and one band selector for the whole project, as a user meets them (issue 12 items 1, 2, 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dicom_fixtures import make_dicom
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from resnet_apps.data.loading import is_dicom_path
from resnet_apps.data.records import build_records
from resnet_apps.errors import BandError
from resnet_apps.io import read_geotiff, read_image, sniff_format
from resnet_apps.io.bands import constant_bands, select_bands
from resnet_apps.io.dicom import DicomMeta
from resnet_apps.io.sniff import is_image_file, sniff_bytes
from resnet_apps.predict.folder import list_images

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "resnet_apps", *args], capture_output=True, text=True, env=env, timeout=300
    )


def dicom_with_tiff_preamble(path: Path) -> Path:
    """A valid Part 10 file whose free 128-byte preamble starts with a little-endian TIFF header."""
    make_dicom(path, np.arange(64, dtype=np.uint16).reshape(8, 8) * 50, window=(1600, 3200))
    raw = bytearray(path.read_bytes())
    raw[:8] = b"II*\x00\x08\x00\x00\x00"
    path.write_bytes(bytes(raw))
    return path


def rgba_tif(path: Path, rgb: np.ndarray, alpha: np.ndarray, flag_alpha: bool) -> Path:
    """4-band uint8 GeoTIFF, no band descriptions; the 4th band tagged alpha only when ``flag_alpha``."""
    with rasterio.open(
        path, "w", driver="GTiff", width=rgb.shape[2], height=rgb.shape[1], count=4, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(500000, 4600000, 10, 10),
        photometric="RGB" if flag_alpha else "MINISBLACK", **({"alpha": "YES"} if flag_alpha else {}),
    ) as dst:  # fmt: skip
        dst.write(np.concatenate([rgb, alpha[None]]).astype(np.uint8))
    with rasterio.open(path) as src:  # GDAL's ALPHA=YES tags the 4th band (TIFF ExtraSamples)
        assert (src.colorinterp[3] == ColorInterp.alpha) == flag_alpha
    return path


@pytest.mark.subprocess  # `inspect` runs as the user runs it
def test_dicom_magic_wins_over_a_tiff_preamble(tmp_path: Path) -> None:
    path = dicom_with_tiff_preamble(tmp_path / "film.dcm")
    noext = dicom_with_tiff_preamble(tmp_path / "folder" / "IM0001")
    assert sniff_bytes(path.read_bytes()[:132]) == "dicom"
    assert sniff_format(path) == "dicom" and is_dicom_path(path) and is_dicom_path(noext)
    image, meta = read_image(noext)
    assert isinstance(meta, DicomMeta) and image.shape == (1, 8, 8)
    # predict's folder lister and the data layer take the suffix-less export as an image
    assert is_image_file(noext) and [rel for _, rel in list_images([tmp_path / "folder"])] == ["IM0001"]
    dicom_with_tiff_preamble(tmp_path / "classes" / "CHEST" / "IM0002")
    (tmp_path / "classes" / "CHEST" / "notes.txt").write_text("not an image")
    records, classes = build_records("folder", tmp_path / "classes")
    assert classes == ["CHEST"] and [r.path for r in records] == ["CHEST/IM0002"]
    # the user's view: inspect says dicom, and shows the modality
    result = _cli("inspect", "--json", str(path))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    info = info[0] if isinstance(info, list) else info
    assert info["format"] == "dicom" and info["modality"] == "CR" and "error" not in info


def test_plain_tiff_and_non_images_keep_their_format(tmp_path: Path) -> None:
    assert sniff_bytes(b"II*\x00" + bytes(200)) == "tiff"  # TIFF header, no DICM at 128
    (tmp_path / "notes.csv").write_text("a,b\n")
    (tmp_path / "README").write_text("not an image\n")
    assert not is_image_file(tmp_path / "notes.csv") and not is_image_file(tmp_path / "README")


@pytest.mark.parametrize(
    ("wanted", "names", "expected"),
    [
        ([1, 2, 3], ["band1", "band2", "band3", "band4"], [0, 1, 2]),  # 1-based, as GDAL counts
        (["B04", "b03"], ["B02", "B03", "B04"], [2, 1]),  # names, case-insensitive, in the order asked
        (["band3"], ["B02", "B03", "B04"], [2]),  # a generic name is its number when no band has it
        (None, ["band1", "band2", "band3", "band4"], [0, 1, 2, 3]),  # all
        (3, ["a", "b", "c"], [2]),  # one number
    ],
)
def test_select_bands_table(wanted: object, names: list[str], expected: list[int]) -> None:
    assert select_bands(wanted, names, "f.tif") == expected  # type: ignore[arg-type]


def test_select_bands_refuses_zero_past_the_end_and_alpha() -> None:
    names = ["band1", "band2", "band3", "band4"]
    with pytest.raises(BandError, match="band number 0.*1-based"):
        select_bands([0, 1, 2], names, "f.tif")
    with pytest.raises(BandError, match="band number 5"):
        select_bands([5], names, "f.tif")
    with pytest.raises(BandError, match="alpha band.*drop it from data.bands"):
        select_bands([4], names, "f.tif", alpha=[3])
    assert select_bands(None, names, "f.tif", alpha=[3]) == [0, 1, 2]


def test_constant_band_is_named() -> None:
    image = np.stack([np.arange(16.0).reshape(4, 4), np.full((4, 4), 255.0)])
    assert constant_bands(image, ["band1", "band4"]) == ["band4"]


@pytest.mark.parametrize("flag_alpha", [True, False])
def test_alpha_band_is_a_mask_not_an_input(tmp_path: Path, flag_alpha: bool) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, size=(3, 6, 7))
    alpha = np.full((6, 7), 255)
    if flag_alpha:  # tagged alpha: transparent pixels become invalid
        alpha[0, :3] = 0
    path = rgba_tif(tmp_path / "rgba.tif", rgb, alpha, flag_alpha)
    data, meta = read_geotiff(path)
    np.testing.assert_array_equal(data, rgb)
    assert meta.band_names == ["band1", "band2", "band3"] and meta.band_numbers == [1, 2, 3]
    assert meta.alpha_band == 4
    assert meta.valid is not None and int((~meta.valid).sum()) == (3 if flag_alpha else 0)
    assert not meta.valid[0, :3].any() if flag_alpha else meta.valid.all()
    np.testing.assert_array_equal(read_geotiff(path, bands=[3, 1])[0], rgb[[2, 0]])
    with pytest.raises(BandError, match="alpha"):
        read_geotiff(path, bands=[1, 2, 3, 4])


def test_rgbn_without_alpha_keeps_four_bands(tmp_path: Path) -> None:
    # a near-infrared 4th band that varies is data, not alpha
    rgbn = np.random.default_rng(1).integers(0, 255, size=(4, 5, 5))
    path = rgba_tif(tmp_path / "rgbn.tif", rgbn[:3], rgbn[3], flag_alpha=False)
    data, meta = read_geotiff(path)
    assert data.shape[0] == 4 and meta.alpha_band is None and meta.band_numbers == [1, 2, 3, 4]
