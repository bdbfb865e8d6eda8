"""compute_band_stats against numpy on real EuroSAT-MS files; float reservoir; the `data` CLI."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine

from resnet_apps.cli import main
from resnet_apps.data import compute_band_stats
from resnet_apps.data.stats import find_images, stats_yaml
from resnet_apps.errors import DatasetError

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]


def test_eurosat_stats_match_numpy(shared_data: Path) -> None:
    files = (
        find_images(shared_data / "eurosat_ms", "Forest/*.tif")[:8]
        + find_images(shared_data / "eurosat_ms", "SeaLake/*.tif")[:4]
    )
    stats = compute_band_stats(files, bands=["B04", "B8A", "B10"], scale=1e-4)
    assert list(stats) == ["B04", "B8A", "B10"]
    raw = []
    for path in files:
        with rasterio.open(path) as src:
            raw.append(src.read([4, 13, 10]).reshape(3, -1).astype(np.float64))  # B8A is the 13th band
    values = np.concatenate(raw, axis=1) * 1e-4
    for k, band in enumerate(["B04", "B8A", "B10"]):
        got = stats[band]
        assert got["mean"] == pytest.approx(values[k].mean(), rel=1e-9)
        assert got["std"] == pytest.approx(values[k].std(), rel=1e-9)
        # uint16 data: percentiles are exact (histogram of the raw integers), numpy's linear rule
        for name, q in (("p01", 1), ("p50", 50), ("p99", 99)):
            assert got[name] == pytest.approx(np.percentile(values[k], q), abs=1e-12)
        assert got["min"] == pytest.approx(values[k].min()) and got["max"] == pytest.approx(values[k].max())
    assert stats["B10"]["mean"] < 0.002  # cirrus band: raw 5-10 (SOURCES.md), tiny reflectance


def _float_tif(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype="float32",
        crs="EPSG:4326",
        transform=Affine(1, 0, 0, 0, -1, 0),
        nodata=nodata,
    ) as dst:
        dst.write(data.astype(np.float32))
    return path


def test_float_images_and_invalid_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(3.0, 2.0, (2, 50, 50)).astype(np.float32)
    a[:, :5, :] = -9999.0  # nodata rows: excluded
    a[1, 10, 10] = np.nan  # NaN: excluded from band 2 (and, being a pixel, from band 1 too)
    b = rng.normal(3.0, 2.0, (2, 50, 50)).astype(np.float32)
    files = [
        _float_tif(tmp_path / "a.tif", a, nodata=-9999.0),
        _float_tif(tmp_path / "b.tif", b, nodata=-9999.0),
    ]
    stats = compute_band_stats(files, scale=2.0)
    keep = np.ones((50, 50), bool)
    keep[:5] = False
    keep[10, 10] = False
    band2 = np.concatenate([a[1][keep], b[1].ravel()]).astype(np.float64) * 2.0
    got = stats[list(stats)[1]]
    assert got["mean"] == pytest.approx(band2.mean(), rel=1e-6) and got["std"] == pytest.approx(
        band2.std(), rel=1e-6
    )
    # under 1e6 values: the reservoir holds them all, so percentiles are exact here too
    assert got["p50"] == pytest.approx(np.percentile(band2, 50), rel=1e-6)
    assert got["min"] > -100


def test_mismatched_band_counts(tmp_path: Path) -> None:
    files = [
        _float_tif(tmp_path / "one.tif", np.ones((1, 4, 4))),
        _float_tif(tmp_path / "two.tif", np.ones((2, 4, 4))),
    ]
    with pytest.raises(DatasetError, match=r"two.tif: 2 band\(s\), but earlier files have 1; pass --bands"):
        compute_band_stats(files)


def test_stats_yaml_parses_back() -> None:
    stats = {
        "B10": {
            "mean": 1.2e-05,
            "std": 3e-06,
            "p01": 0.0,
            "p50": 1e-05,
            "p99": 0.0031,
            "min": 0.0,
            "max": 0.5,
        }
    }
    text = stats_yaml(stats)
    parsed = yaml.safe_load(text)["statistics"]["B10"]
    assert parsed["mean"] == pytest.approx(1.2e-05) and isinstance(
        parsed["std"], float
    )  # "3.0e-06", not a string


def test_cli_data_stats(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "data",
            "stats",
            str(shared_data / "eurosat_ms"),
            "--bands",
            "B02",
            "B03",
            "--scale",
            "0.0001",
            "--pattern",
            "River/*.tif",
            "--limit",
            "5",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    block = yaml.safe_load(out)["statistics"]
    direct = compute_band_stats(
        find_images(shared_data / "eurosat_ms", "River/*.tif")[:5], ["B02", "B03"], 1e-4
    )
    assert list(block) == ["B02", "B03"]
    assert block["B02"]["mean"] == pytest.approx(direct["B02"]["mean"], rel=1e-5)
    assert out.startswith("# resnet-apps data stats") and "5 files" in out


def test_cli_data_stats_bad_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "no image files" in capsys.readouterr().err


def test_cli_data_fetch_dispatches(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    calls: list[tuple[str, str]] = []
    fake = types.ModuleType("resnet_apps.fetch")
    fake.DATASETS = {"eurosat_ms": {}, "kermany": {}}  # type: ignore[attr-defined]
    options: list[dict[str, object]] = []

    def fake_fetch(name: str, root: str, **kwargs: object) -> Path:
        calls.append((name, str(root)))
        options.append(kwargs)
        return Path(root) / name

    fake.fetch_dataset = fake_fetch  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "resnet_apps.fetch", fake)
    import resnet_apps

    monkeypatch.setattr(resnet_apps, "fetch", fake, raising=False)
    assert main(["data", "fetch", "eurosat_ms", "--root", str(tmp_path)]) == 0
    assert calls == [("eurosat_ms", str(tmp_path))]
    # the CLI passes its download options through: no mirror, no overall deadline, https only by default
    assert {k: options[0][k] for k in ("base_url", "deadline", "allow_insecure")} == {
        "base_url": None,
        "deadline": None,
        "allow_insecure": False,
    }
    assert main(["data", "fetch", "imagenet"]) == 2
    assert "choose one of: eurosat_ms, kermany" in capsys.readouterr().err
    assert main(["data", "fetch", "--list"]) == 0
    assert "datasets: eurosat_ms, kermany" in capsys.readouterr().out
