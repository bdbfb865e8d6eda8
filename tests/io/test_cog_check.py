"""io.cog_check: rio-cogeo's verdict plus CRS, transform, nodata, overviews and legend checks on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import Affine

from resnet_apps.io import GeoMeta, open_geotiff_writer
from resnet_apps.io.cog_check import check_map

CLASSES = ["Crop", "Forest", "Water"]
TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
H, W = 80, 520  # wider than one 256-px block: the COG gets overviews


def _like() -> GeoMeta:
    return GeoMeta(
        path="", crs="EPSG:32631", transform=TRANSFORM, res=(10.0, 10.0), nodata=None, band_names=["b"],
        dtype="uint8", width=W, height=H, window=(0, 0, H, W),
    )  # fmt: skip


def _mostly_two() -> np.ndarray:
    """Class 2 with one class-0 pixel in each 2 x 2 cell, at a position cycling over the cell's four pixels:
    the majority (MODE) of every cell is 2, any one-pixel sample (NEAREST) is 0 in a quarter of the cells."""
    classes = np.full((H, W), 2, dtype=np.uint8)
    for i in range(H // 2):
        for j in range(W // 2):
            k = (i + j) % 4
            classes[2 * i + k // 2, 2 * j + k % 2] = 0
    return classes[None]


def _class_map(path: Path, resampling: str | None = None) -> Path:
    with open_geotiff_writer(
        path, like=_like(), count=1, dtype="uint8", nodata=255, band_names=["class"], legend=CLASSES,
        overview_resampling=resampling,
    ) as writer:  # fmt: skip
        writer.write(_mostly_two())
    return path


def _overview(path: Path) -> np.ndarray:
    with rasterio.open(path, overview_level=0) as src:
        return src.read(1)


def test_class_maps_are_valid_cogs_with_mode_overviews_and_a_legend(tmp_path: Path) -> None:
    path = _class_map(tmp_path / "mode_class.tif")
    check = check_map(path, classes=CLASSES, crs="EPSG:32631", transform=TRANSFORM, nodata=255)
    assert check.is_valid and check.errors == [] and check.cog_errors == []
    assert check.overviews == [2, 4] and check.overview_resampling == "MODE"
    assert check.class_names == CLASSES and check.colour_table and check.crs == "EPSG:32631"
    # MODE keeps the majority class in every cell; NEAREST (GDAL's default for a palette) does not
    assert (_overview(path) == 2).all()
    nearest = _overview(_class_map(tmp_path / "nearest_class.tif", resampling="NEAREST"))
    assert (nearest == 0).any()
    assert check_map(
        tmp_path / "nearest_class.tif", classes=CLASSES
    ).is_valid  # NEAREST is allowed, AVERAGE not


def test_average_overviews_or_a_wrong_legend_fail_a_class_map(tmp_path: Path) -> None:
    path = _class_map(tmp_path / "avg_class.tif", resampling="AVERAGE")
    check = check_map(path, classes=["Crop", "Forest", "Urban"])
    assert not check.is_valid and check.cog_errors == []  # a fine COG, a wrong class map
    assert any("resampled by AVERAGE" in p for p in check.problems)
    assert any("class-name tags CLASS_0..2 are ['Crop', 'Forest', 'Water']" in p for p in check.problems)


def test_a_plain_geotiff_fails_the_cog_validator_and_our_checks(tmp_path: Path) -> None:
    path = tmp_path / "striped.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=600,
        height=600,
        count=1,
        dtype="uint8",
        crs="EPSG:32631",
        transform=Affine(*TRANSFORM),
    ) as dst:  # fmt: skip  (striped, no overviews, no nodata)
        dst.write(np.zeros((1, 600, 600), np.uint8))
    check = check_map(path, classes=CLASSES, crs="EPSG:4326", nodata=255)
    assert not check.is_valid and check.cog_errors  # rio-cogeo: not tiled
    problems = " | ".join(check.problems)
    assert "differs from the input's EPSG:4326" in problems
    assert "no nodata value" in problems and "no internal overviews on a 600 x 600 map" in problems
    assert "not palette" in problems
    assert check.to_dict()["errors"] == [*check.cog_errors, *check.problems]


def test_probability_maps_are_not_shown_as_rgb_and_use_average_overviews(tmp_path: Path) -> None:
    path = tmp_path / "prob.tif"
    with open_geotiff_writer(
        path, like=_like(), count=3, dtype="uint8", nodata=255, band_names=CLASSES,
        overview_resampling="AVERAGE", colour_bands=False,
    ) as writer:  # fmt: skip
        writer.write(np.full((3, H, W), 127, np.uint8))
    check = check_map(path, nodata=255)
    assert check.is_valid and check.overview_resampling == "AVERAGE"
    with rasterio.open(path) as src:
        # GDAL reads a 3-band MINISBLACK TIFF as gray + undefined: any interpretation but red, green, blue
        rgba = {ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha}
        assert not rgba & set(src.colorinterp) and src.descriptions == tuple(CLASSES)
