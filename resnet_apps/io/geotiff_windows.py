"""Windows of one local GeoTIFF decoded straight into the caller's arrays, one open dataset per thread.

:func:`~resnet_apps.io.geotiff.read_geotiff` opens the file, re-derives its band names, nodata and alpha
bands, and allocates its result on every call: right for one read, wasteful for scene prediction, which
reads a scene's file tiles one by one (hundreds to thousands of reads). :class:`WindowDecoder` resolves
those facts once, keeps one rasterio dataset open per thread (a GDAL dataset must not be shared across
threads), and decodes each window into an array the caller gives, such as a view of the block being
assembled (GDAL writes through the view's strides: no intermediate copy). Measured on the 10 000 px
13-band benchmark scene, all block reads on one core: see ``docs/bench/cpu_2026-11-30_s9``.

The values are the same as ``read_geotiff(path, bands=indexes, window=...)``'s: the raw bands in the file's
dtype, and ``valid`` False where every band read equals its nodata, any band is NaN, or an alpha band is 0
(:func:`valid_mask_into` is the rule both use).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from resnet_apps.errors import GeoTiffError
from resnet_apps.io.geotiff import alpha_planes, open_raster, valid_mask_into

FileWindow = tuple[int, int, int, int]  # (row_off, col_off, height, width) in file pixels


class WindowDecoder:
    """Decode windows of chosen bands of one local GeoTIFF into given arrays.

    Args:
        path: a local GeoTIFF.
        indexes: 1-based file band numbers, in the order wanted (no alpha band: alpha folds into valid).

    Raises:
        GeoTiffError: the file cannot be opened, or a band number is not in it.
    """

    def __init__(self, path: str | Path, indexes: Sequence[int]) -> None:
        self.path = path
        self.indexes = [int(i) for i in indexes]
        with open_raster(path) as src:
            if not self.indexes or min(self.indexes) < 1 or max(self.indexes) > src.count:
                raise GeoTiffError(
                    f"{path}: bands {self.indexes} asked of a {src.count}-band file; fix: choose bands 1..{src.count}"
                )
            self.nodata = [src.nodatavals[i - 1] for i in self.indexes]
            self.alpha = [b + 1 for b in alpha_planes(src)]  # 1-based
        self._local = threading.local()
        self._opened: list[rasterio.io.DatasetReader] = []
        self._lock = threading.Lock()

    def _dataset(self) -> rasterio.io.DatasetReader:
        """This thread's dataset, for the GDAL configuration in effect (``GDAL_NUM_THREADS`` is read when a
        GeoTIFF is opened: a read with decoding threads gets a dataset opened with them)."""
        threads = rasterio.env.getenv().get("GDAL_NUM_THREADS") if rasterio.env.hasenv() else None
        cache: dict[object, rasterio.io.DatasetReader] = self._local.__dict__.setdefault("datasets", {})
        src = cache.get(threads)
        if src is None:
            src = cache[threads] = open_raster(self.path)
            with self._lock:
                self._opened.append(src)
        return src

    def read_into(self, window: FileWindow, raw: np.ndarray, valid: np.ndarray) -> None:
        """Decode ``window`` into ``raw`` [C, h, w] (the file's dtype; a strided view is written in place)
        and its validity into ``valid`` [h, w] bool.

        Raises:
            GeoTiffError: the window cannot be decoded (a truncated or corrupt file), naming the file.
        """
        row_off, col_off, height, width = window
        win = Window(col_off, row_off, width, height)
        src = self._dataset()
        try:
            src.read(self.indexes, window=win, out=raw)
            valid_mask_into(raw, self.nodata, valid)
            for band in self.alpha:  # alpha 0 = transparent = no data, as read_geotiff
                valid &= src.read(band, window=win) != 0
        except RasterioIOError as error:
            raise GeoTiffError(
                f"{self.path}: bands {self.indexes} cannot be read ({error}); the file may be truncated"
            ) from error

    def close(self) -> None:
        """Close every thread's dataset (call once no thread reads any more)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for src in opened:
            src.close()
