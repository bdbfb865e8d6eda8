"""Remote-sensing facts of an evaluated split for the report: CRS, ground resolution, area, map legend (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rasterio

from resnet_apps.data.records import Record
from resnet_apps.io.geotiff_write import class_colormap
from resnet_apps.io.sniff import sniff_format

MAX_FILES = 5000  # headers read for the area; beyond this the area is extrapolated from an even sample


def geo_summary(records: Sequence[Record], root: str | Path, classes: Sequence[str]) -> dict[str, Any] | None:
    """``{"crs", "resolution_m", "units", "area_km2", "files", "legend"}`` of GeoTIFF records; None otherwise.

    ``area_km2`` sums width x height x |pixel area| over the files (the ground the evaluation covered);
    ``legend`` gives each class the colour of the predicted class maps (``predict`` writes the same table).
    """
    if not records:
        return None
    first = Path(root) / records[0].path
    if not first.is_file() or sniff_format(first) != "tiff":
        return None
    step = max(1, len(records) // MAX_FILES)
    crs: set[str] = set()
    resolution: set[tuple[float, float]] = set()
    area, units, read = 0.0, None, 0
    for record in records[::step]:
        try:
            with rasterio.open(Path(root) / record.path) as src:
                if src.crs is not None:
                    crs.add(f"EPSG:{src.crs.to_epsg()}" if src.crs.to_epsg() else src.crs.to_wkt()[:60])
                    units = src.crs.linear_units if src.crs.is_projected else "degree"
                res = (abs(float(src.res[0])), abs(float(src.res[1])))
                resolution.add(res)
                area += src.width * src.height * res[0] * res[1]
                read += 1
        except rasterio.errors.RasterioIOError:
            continue
    metre = units in ("metre", "meter", "m")
    table = class_colormap(len(classes), None)
    return {
        "crs": sorted(crs),
        "resolution": sorted(resolution),
        "units": units,
        "area_km2": area * step / 1e6 if metre and read else None,
        "files": len(records),
        "legend": [{"class": c, "rgb": list(table[k][:3])} for k, c in enumerate(classes)],
    }
