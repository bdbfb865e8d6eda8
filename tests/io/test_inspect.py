"""``resnet-apps inspect``: the facts shown, and never a patient identifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dicom_fixtures import make_dicom
from rasterio.transform import from_origin

from resnet_apps.cli import main
from resnet_apps.io import inspect_file


def test_inspect_dicom_never_prints_identifiers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_dicom(
        tmp_path / "planted.dcm",
        np.arange(20, dtype=np.uint16).reshape(4, 5),
        window=(10, 11),
        patient_name="Smith^Johanna",
        patient_id="MRN-424242",
        birth_date="19310704",
    )
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    for planted in ("Smith", "Johanna", "MRN-424242", "424242", "19310704"):
        assert planted not in text
    assert "MONOCHROME2" in text and "Explicit VR Little Endian" in text and "header[0]" in text
    assert "(10, 11)" in text and "patient_hash" in text
    assert main(["inspect", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "Smith" not in json.dumps(info) and info["shape"] == [1, 4, 5] and info["bits_stored"] == 16
    # display percentiles: LINEAR (10, 11) is (x - 9.5) / 10 + 0.5, so 0 -> 0, 19 -> 1, and the
    # median of 0..19 is the mean of f(9) = 0.45 and f(10) = 0.55
    assert info["percentiles"][0]["0"] == 0.0 and info["percentiles"][0]["100"] == 1.0
    assert info["percentiles"][0]["50"] == pytest.approx(0.5, abs=1e-6)


def test_inspect_geotiff_facts(tmp_path: Path) -> None:
    data = np.arange(2 * 10 * 10, dtype=np.uint16).reshape(2, 10, 10)
    data[:, :3, :] = 0  # 30% nodata
    path = tmp_path / "g.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=10,
        height=10,
        count=2,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(0, 100, 10, 10),
        nodata=0,
    ) as dst:
        dst.write(data)
    info = inspect_file(path)
    assert info["crs"] == "EPSG:32633" and info["resolution"] == (10.0, 10.0) and info["nodata"] == 0
    assert info["invalid_share"] == pytest.approx(0.30)
    # band 1 valid values are 30..99: min 30, max 99, median 64.5
    assert (info["percentiles"][0]["0"], info["percentiles"][0]["50"], info["percentiles"][0]["100"]) == (
        30,
        64.5,
        99,
    )


def test_inspect_real_files_and_errors(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [
        shared_data / "dicom_radiographs" / "chest" / "CR-MONO1-10-chest.dcm",
        shared_data / "geotiff_scenes" / "landsat7_RGB.byte.tif",
    ]
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(files[0].read_bytes()[:2000])  # header survives, pixel data cut
    assert main(["inspect", *map(str, files), str(broken)]) == 1  # one file failed
    out = capsys.readouterr().out
    assert "MONOCHROME1" in out and "Implicit VR Little Endian" in out and "EPSG:32618" in out
    assert "32.54% of pixels" in out and "broken.dcm" in out and "error" in out


def test_bench_io_runs_on_a_tiny_data_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the benchmark's plumbing (not its speed): one DICOM, two 13-band chips, figures written as JSON
    make_dicom(tmp_path / "dicom_radiographs" / "a.dcm", np.arange(20, dtype=np.uint16).reshape(4, 5))
    for name in ("c1", "c2"):
        chip = tmp_path / "eurosat_ms" / "Forest" / f"{name}.tif"
        chip.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(chip, "w", driver="GTiff", width=8, height=8, count=13, dtype="uint16") as dst:
            dst.write(np.ones((13, 8, 8), np.uint16))
    out = tmp_path / "bench.json"
    args = ["bench", "io", "--data", str(tmp_path), "--repeats", "1", "--chips", "2", "--json", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Explicit VR Little Endian" in text and "2 GeoTIFF chips" in text
    figures = json.loads(out.read_text())
    assert figures["dicom"][0]["size"] == "4x5" and figures["dicom"][0]["reread"] > 0
    assert figures["geotiff"]["files"] == 2 and figures["geotiff"]["first"] > 0
