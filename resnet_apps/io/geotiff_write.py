"""Write tiled, deflate-compressed Cloud-Optimised GeoTIFFs, whole or window by window (no torch).

``write_geotiff(path, array [C, H, W], like)`` for a chip or a scene in memory;
``open_geotiff_writer(path, like, count, dtype, nodata)`` for a scene predicted tile by tile. Both keep
the CRS, transform and nodata of ``like`` (a ``GeoMeta``) and finish with GDAL's COG driver.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning

from resnet_apps.errors import GeoTiffError
from resnet_apps.io.atomic import atomic_path, clean_stale_temps
from resnet_apps.io.geotiff import GeoMeta, WindowArg, as_window

# Creation options of the intermediate tiled GTiff that tiles are written into.
_TMP_PROFILE = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 512,
    "blockysize": 512,
    "compress": "deflate",
    "bigtiff": "IF_SAFER",
}


class GeoTiffWriter:
    """Context manager that writes a scene window by window, then turns it into a COG on exit.

    Tiles go into a tiled, deflate-compressed GTiff beside ``path`` (so a scene larger than memory
    never sits in RAM); on a clean exit GDAL's COG driver copies it, with overviews and 512x512 blocks,
    to a temporary name that is then renamed to ``path``, and the intermediate is removed. On an
    exception or a kill nothing is left at ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        like: GeoMeta,
        count: int,
        dtype: str | np.dtype,
        nodata: float | None = None,
        band_names: Sequence[str] | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.height = int(height if height is not None else like.window[2])
        self.width = int(width if width is not None else like.window[3])
        self.count, self.dtype, self.nodata = int(count), np.dtype(dtype), nodata
        if band_names is not None and len(band_names) != count:
            raise GeoTiffError(
                f"{path}: {len(band_names)} band names for {count} bands; fix: one name per band"
            )
        self.band_names = list(band_names) if band_names is not None else None
        self.like = like
        self._tmp = self.path.with_name(f".{self.path.name}.partial.tif")
        self._dst: rasterio.io.DatasetWriter | None = None

    def __enter__(self) -> GeoTiffWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # leftovers of a writer of this same file that was killed: its temporaries and intermediate
        clean_stale_temps(self.path.parent, self.path.name)
        self._tmp.unlink(missing_ok=True)
        profile = dict(
            _TMP_PROFILE,
            width=self.width,
            height=self.height,
            count=self.count,
            dtype=self.dtype.name,
            crs=self.like.crs,
            nodata=self.nodata,
            transform=rasterio.Affine(*self.like.transform),
        )
        if self.width < 512 or self.height < 512:
            profile.update(blockxsize=256, blockysize=256) if min(
                self.width, self.height
            ) >= 256 else profile.update(tiled=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._dst = rasterio.open(self._tmp, "w", **profile)
        if self.band_names:
            for i, name in enumerate(self.band_names, start=1):
                self._dst.set_band_description(i, name)
        return self

    def write(self, array: np.ndarray, window: WindowArg = None) -> None:
        """Write array [C, h, w] at window (row_off, col_off, h, w); None means the whole raster."""
        if self._dst is None:
            raise GeoTiffError(f"{self.path}: write() outside 'with open_geotiff_writer(...)'")
        if array.ndim != 3 or array.shape[0] != self.count:
            raise GeoTiffError(
                f"{self.path}: array {array.shape} is not [{self.count}, h, w]; fix: pass [C, H, W]"
            )
        win = as_window(
            window if window is not None else (0, 0, array.shape[1], array.shape[2]),
            self.width,
            self.height,
            str(self.path),
        )
        if (int(win.height), int(win.width)) != array.shape[1:]:
            raise GeoTiffError(f"{self.path}: array {array.shape[1:]} does not fill window {win}")
        self._dst.write(array.astype(self.dtype, copy=False), window=win)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._dst is not None
        self._dst.close()
        self._dst = None
        try:
            if exc_type is None:
                # the COG goes to a temporary name and is renamed when complete: a SIGKILL during the
                # conversion leaves no partial map under the final name (GDAL's own "<dst>.ovr.tmp"
                # then sits beside the temporary, and the next writer of this name removes both)
                with warnings.catch_warnings(), atomic_path(self.path) as cog:
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    rasterio.shutil.copy(
                        self._tmp,
                        cog,
                        driver="COG",
                        compress="DEFLATE",
                        blocksize=512 if min(self.width, self.height) >= 512 else 256,
                        overviews="AUTO",
                        bigtiff="IF_SAFER",
                    )
        finally:
            self._tmp.unlink(missing_ok=True)


def open_geotiff_writer(
    path: str | os.PathLike[str],
    like: GeoMeta,
    count: int,
    dtype: str | np.dtype,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
) -> GeoTiffWriter:
    """Incremental COG writer over the grid of ``like`` (its CRS, transform and window size).

    Usage: ``with open_geotiff_writer(out, like=meta, count=1, dtype="uint8", nodata=255) as w:
    w.write(tile[C, h, w], (row_off, col_off, h, w))``. Unwritten areas hold nodata (or 0).
    """
    return GeoTiffWriter(path, like, count, dtype, nodata, band_names)


def write_geotiff(
    path: str | os.PathLike[str],
    array: np.ndarray,
    like: GeoMeta,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
) -> None:
    """Write array [C, H, W] as a tiled, deflate-compressed Cloud-Optimised GeoTIFF.

    CRS and transform come from ``like`` (transform of the array's top-left pixel); ``nodata``
    defaults to ``like.nodata``. Band names are written as band descriptions.
    """
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise GeoTiffError(f"{path}: array of shape {array.shape} is not [C, H, W]")
    nodata = like.nodata if nodata is None else nodata
    with GeoTiffWriter(
        path,
        like,
        array.shape[0],
        array.dtype,
        nodata,
        band_names,
        height=array.shape[1],
        width=array.shape[2],
    ) as writer:
        writer.write(array)
