"""Is a written map a valid Cloud-Optimised GeoTIFF with everything a GIS needs? (no torch)

``check_map(path, classes=[...])`` runs rio-cogeo's validator (``cog_validate``: IFD order, tiling,
overviews placed before the data) and then our own checks on what the validator does not look at:

- a CRS and a georeferencing transform (not the identity), equal to ``crs`` / ``transform`` when given;
- a nodata value (``nodata`` when given);
- internal overviews whenever a side exceeds one block (a viewer zoomed out otherwise reads every block);
- for a class map (``classes`` given): the palette colour interpretation, a colour table with an opaque
  colour for every class and a transparent nodata, ``CLASS_k`` band tags equal to the class names, and
  MODE or NEAREST overviews (an average of class indexes is a class that was never predicted).

The verdict (``MapCheck.is_valid``) is True only when the validator reports no error and no check fails;
``to_dict()`` is what ``done.json`` records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import rasterio
from rasterio.enums import ColorInterp

from resnet_apps.io.geotiff_write import RESAMPLING_TAG

CLASS_MAP_RESAMPLING = ("MODE", "NEAREST")


@dataclass
class MapCheck:
    """The validator's verdict on one map, and the facts it was based on."""

    path: str
    is_valid: bool
    cog_errors: list[str]  # rio-cogeo's errors, verbatim
    cog_warnings: list[str]  # rio-cogeo's warnings, verbatim (do not fail the check)
    problems: list[str]  # our own failed checks (CRS, nodata, overviews, legend)
    crs: str | None = None
    transform: list[float] = field(default_factory=list)
    nodata: float | None = None
    size: tuple[int, int] = (0, 0)  # (height, width)
    blocksize: tuple[int, int] = (0, 0)
    overviews: list[int] = field(default_factory=list)  # decimation factors of band 1
    overview_resampling: str | None = None
    class_names: list[str] | None = None
    colour_table: bool = False

    @property
    def errors(self) -> list[str]:
        """Everything that makes the map invalid: the validator's errors, then our failed checks."""
        return [*self.cog_errors, *self.problems]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = self.errors
        if self.nodata is not None and math.isnan(self.nodata):
            out["nodata"] = "nan"  # JSON has no NaN
        return out


def check_map(
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    crs: Any = None,
    transform: Sequence[float] | None = None,
    nodata: float | None = None,
) -> MapCheck:
    """Validate ``path`` as a COG and check its georeferencing, nodata, overviews and legend.

    Args:
        path: the map.
        classes: class names, for a class map (band 1 holds class indexes 0..K-1); None otherwise.
        crs: the CRS the map must have (anything ``rasterio.crs.CRS`` compares with); None: any CRS.
        transform: the affine ``(a, b, c, d, e, f)`` the map must have; None: any non-identity transform.
        nodata: the nodata value the map must have (NaN matches NaN); None: any nodata value.

    Returns:
        the :class:`MapCheck`; never raises for an invalid map (the caller decides), only for a missing file.
    """
    from rio_cogeo.cogeo import cog_validate  # ~1 s of imports (morecantile, pydantic): only when asked

    path = Path(path)
    is_cog, cog_errors, cog_warnings = cog_validate(str(path), quiet=True)
    problems: list[str] = []
    with rasterio.open(path) as src:
        check = MapCheck(
            path=str(path),
            is_valid=False,
            cog_errors=list(cog_errors),
            cog_warnings=list(cog_warnings),
            problems=problems,
            crs=src.crs.to_string() if src.crs else None,
            transform=list(src.transform)[:6],
            nodata=src.nodata,
            size=(src.height, src.width),
            blocksize=src.block_shapes[0],
            overviews=list(src.overviews(1)),
            overview_resampling=src.tags().get(RESAMPLING_TAG),
        )
        _check_grid(src, check, crs, transform, nodata)
        if classes is not None:
            _check_legend(src, check, list(classes))
    check.is_valid = bool(is_cog) and not check.errors
    return check


def _check_grid(
    src: rasterio.io.DatasetReader,
    check: MapCheck,
    crs: Any,
    transform: Sequence[float] | None,
    nodata: float | None,
) -> None:
    """CRS, transform, nodata and overviews."""
    problems = check.problems
    if src.crs is None:
        problems.append("no CRS: the map cannot be placed on a map; write it with the input's CRS")
    elif crs is not None and src.crs != crs:
        problems.append(f"CRS {check.crs} differs from the input's {crs}")
    if src.transform.is_identity:
        problems.append("identity transform: the map is not georeferenced")
    elif transform is not None and not src.transform.almost_equals(rasterio.Affine(*transform[:6])):
        problems.append(
            f"transform {tuple(check.transform)} differs from the expected {tuple(transform[:6])}"
        )
    if src.nodata is None:
        problems.append("no nodata value: pixels outside the input's valid area would read as class 0")
    elif nodata is not None and not _same_value(src.nodata, nodata):
        problems.append(f"nodata {src.nodata} differs from the expected {nodata}")
    block_h, block_w = check.blocksize
    if (src.height > block_h or src.width > block_w) and not check.overviews:
        problems.append(
            f"no internal overviews on a {src.height} x {src.width} map with {block_h} x {block_w} blocks"
        )


def _check_legend(src: rasterio.io.DatasetReader, check: MapCheck, classes: list[str]) -> None:
    """Palette, colour table, class-name tags and overview resampling of a class map."""
    problems = check.problems
    tags = src.tags(1)
    check.class_names = [tags[f"CLASS_{k}"] for k in range(len(classes)) if f"CLASS_{k}" in tags]
    if check.class_names != classes:
        problems.append(f"class-name tags CLASS_0..{len(classes) - 1} are {check.class_names}, not {classes}")
    if src.colorinterp[0] != ColorInterp.palette:
        problems.append(f"band 1 colour interpretation is {src.colorinterp[0].name}, not palette")
    else:
        table = src.colormap(1)
        check.colour_table = True
        missing = [k for k in range(len(classes)) if k not in table or table[k][3] != 255]
        if missing:
            problems.append(f"colour table has no opaque colour for classes {missing}")
        if src.nodata is not None and table.get(int(src.nodata), (0, 0, 0, 0))[3] != 0:
            problems.append(f"nodata {src.nodata:g} is not transparent in the colour table")
    resampling = (check.overview_resampling or "").upper()
    if check.overviews and resampling not in CLASS_MAP_RESAMPLING:
        problems.append(
            f"overviews resampled by {resampling or 'an unrecorded method'}; a class map needs one of "
            f"{CLASS_MAP_RESAMPLING} (tag {RESAMPLING_TAG})"
        )


def _same_value(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
