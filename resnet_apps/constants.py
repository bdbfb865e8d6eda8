"""Constants shared across layers (no torch): band tables, the segmentation ignore index, model choices."""

from __future__ import annotations

from typing import Literal, get_args

# Mask value that losses and metrics skip (unlabelled, nodata, outside the scene).
IGNORE_INDEX = 255

# What a model does, and how a classification head pools the last feature map (timm SelectAdaptivePool2d
# pool types); here rather than in models/ so that torch-free readers (checkpoint metadata) share them.
Task = Literal["classification", "segmentation"]
TASKS: tuple[Task, ...] = get_args(Task)
Pooling = Literal["avg", "max", "avgmax", "catavgmax"]
POOLINGS: tuple[Pooling, ...] = get_args(Pooling)

# EuroSAT-MS band order as stored in its GeoTIFFs (note B8A comes last, after B12).
EUROSAT_MS_BANDS: tuple[str, ...] = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B09",
    "B10",
    "B11",
    "B12",
    "B8A",
)

# Sentinel-2 bands that carry red, green and blue (for band-aware conv1 initialisation).
SENTINEL2_RGB: tuple[str, str, str] = ("B04", "B03", "B02")

# Sentinel-2 MSI central wavelengths (nm) and native ground resolution (m), for data cards and reports.
SENTINEL2_WAVELENGTH_NM: dict[str, float] = {
    "B01": 442.7,
    "B02": 492.4,
    "B03": 559.8,
    "B04": 664.6,
    "B05": 704.1,
    "B06": 740.5,
    "B07": 782.8,
    "B08": 832.8,
    "B8A": 864.7,
    "B09": 945.1,
    "B10": 1373.5,
    "B11": 1613.7,
    "B12": 2202.4,
}
SENTINEL2_RESOLUTION_M: dict[str, int] = {
    "B01": 60,
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B08": 10,
    "B8A": 20,
    "B09": 60,
    "B10": 60,
    "B11": 20,
    "B12": 20,
}
