"""Zero-padded window reads of a scene through ``io.read_geotiff``, for the streaming loop.

Block reads reach outside the scene (the halo of edge blocks); only the part inside is read from disk
and the rest is zero with ``valid`` False, exactly as one whole-scene pass over a zero-padded scene sees it.
A ``window`` makes the reader a sub-scene: its rows and columns are the window's, and pixels outside it
count as outside the scene (read as padding, never fetched: what a remote COG's AOI prediction wants).
A URL (``io.geotiff.is_remote``) is read through GDAL's virtual file systems; a failed read of it is a
:class:`~resnet_apps.errors.RemoteReadError` naming the URL.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.io import GeoMeta, read_geotiff
from resnet_apps.io.geotiff import as_source, as_window, is_remote
from resnet_apps.io.geotiff_windows import WindowDecoder
from resnet_apps.predict.remote import read_with_retries
from resnet_apps.predict.tiling import FileTiles


def class_dtype(num_classes: int) -> tuple[str, int]:
    """Class map dtype and nodata: uint8 (nodata 255) up to 255 classes, uint16 (nodata 65535) beyond."""
    return ("uint8", 255) if num_classes <= 255 else ("uint16", 65535)


def _driver(path: str | Path) -> str | None:
    """GDAL's driver for a local raster (``GTiff``, ``VRT``, ...); None where it cannot be opened."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # as io's own opens: said once, by io
            with rasterio.open(path) as src:
                return str(src.driver)
    except RasterioIOError:
        return None


def window_arrays(
    window: tuple[int, int, int, int],
    height: int,
    width: int,
    bands: int,
    dtype: np.dtype | str,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw [C, h, w] and valid [h, w] bool arrays for ``window`` over a height x width scene, ready to have
    the part inside the scene decoded into them: zero and False outside the scene, unset inside.

    Args:
        window: ``(row0, row1, col0, col1)`` in scene pixels; may reach outside the scene.
        out: arrays (or views) to use; None: new ones (``np.zeros`` only where there is padding).
    """
    r0, r1, c0, c1 = window
    inside = r0 >= 0 and c0 >= 0 and r1 <= height and c1 <= width
    if out is None:
        alloc = np.empty if inside else np.zeros  # calloc'd pages: zero without a memset
        return alloc((bands, r1 - r0, c1 - c0), dtype=dtype), alloc((r1 - r0, c1 - c0), dtype=bool)
    raw, valid = out
    if not inside:
        zero_padding(raw, valid, window, height, width)
    return raw, valid


def zero_padding(
    raw: np.ndarray, valid: np.ndarray, window: tuple[int, int, int, int], height: int, width: int
) -> None:
    """Zero the parts of ``window``'s raw [C, h, w] and valid [h, w] outside a height x width scene: the
    rows above and below it, then the columns left and right of it (a memset of the padding only: the
    pixels inside are about to be decoded over, and a whole strip of a block is 36 MB)."""
    r0, r1, c0, c1 = window
    top, bottom = min(max(-r0, 0), r1 - r0), min(max(r1 - height, 0), r1 - r0)
    left, right = min(max(-c0, 0), c1 - c0), min(max(c1 - width, 0), c1 - c0)
    for rows, cols in (
        (slice(0, top), slice(None)),
        (slice(r1 - r0 - bottom, None), slice(None)),
        (slice(top, r1 - r0 - bottom), slice(0, left)),
        (slice(top, r1 - r0 - bottom), slice(c1 - c0 - right, None)),
    ):
        raw[:, rows, cols] = 0
        valid[rows, cols] = False


class SceneReader:
    """A scene's grid (CRS, transform, size, nodata) and normalised, zero-padded window reads.

    Args:
        path: a GeoTIFF (or VRT) file, or a URL.
        pre: the checkpoint's preprocessing (bands, normalisation).
        window: ``(row_off, col_off, height, width)`` of the scene to predict; None for all of it.
        remote: read with retries (a local VRT of remote assets is remote); None: whether ``path`` is a URL.
    """

    def __init__(
        self,
        path: str | Path,
        pre: Preprocessing,
        window: tuple[int, int, int, int] | None = None,
        remote: bool | None = None,
    ) -> None:
        self.path: str | Path = as_source(path)
        self.remote = is_remote(self.path) if remote is None else remote
        self.pre = pre
        # header facts without reading the scene: one pixel at the window's corner (for a remote scene,
        # the block fetched is one the window needs anyway)
        corner = (window[0], window[1], 1, 1) if window is not None else (0, 0, 1, 1)
        probe = self._read(None, corner)[1]
        # 1-based file band numbers (alpha bands are not among probe.band_names: io folds them into valid)
        self.indexes = [probe.band_numbers[i] for i in pre.band_indexes(probe.band_names, str(self.path))]
        win = as_window(window, probe.width, probe.height, str(self.path))
        self.row_off, self.col_off = int(win.row_off), int(win.col_off)
        self.height, self.width = int(win.height), int(win.width)
        # the file's internal tiling, so that block reads start on its tiles (tiling.aligned_shift)
        tile_rows, tile_cols = probe.block_shape or (0, 0)
        self.file_tiles = FileTiles(tile_rows, tile_cols, self.row_off, self.col_off)
        # where a block of the file is what GDAL decodes whole: a local GeoTIFF (a VRT's 128 px blocks are
        # windows of its sources, each decoding its own tiles), for carried reads (predict.carry)
        self.geotiff = not self.remote and _driver(self.path) == "GTiff"
        self._decoder: WindowDecoder | None = None  # read_into's, opened on its first call
        self._decoder_lock = threading.Lock()
        self.meta: GeoMeta = dataclasses.replace(
            probe,
            transform=probe.transform,  # the corner pixel's: the window's top-left
            window=(0, 0, self.height, self.width),
            height=self.height,
            width=self.width,
            valid=None,
        )

    def _read(self, bands: list[int] | None, window: tuple[int, int, int, int]) -> tuple[np.ndarray, GeoMeta]:
        """``read_geotiff`` of a file window; a remote one retried, then a ``RemoteReadError``."""
        if self.remote:
            return read_with_retries(
                str(self.path), lambda: read_geotiff(self.path, bands=bands, window=window)
            )
        return read_geotiff(self.path, bands=bands, window=window)

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the datasets that :meth:`read_into` keeps open (it opens them again if called after)."""
        with self._decoder_lock:
            decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.close()

    def read_into(self, window: tuple[int, int, int, int], raw: np.ndarray, valid: np.ndarray) -> None:
        """Decode a window inside the scene into raw [C, h, w] and valid [h, w] bool (views are written in
        place), the values :meth:`read_raw` returns.

        A local GeoTIFF is read through one dataset per thread, its band facts resolved once
        (:class:`~resnet_apps.io.geotiff_windows.WindowDecoder`); anything else through :meth:`read_raw`.

        Args:
            window: ``(row0, row1, col0, col1)`` in scene pixels, inside the scene.
        """
        r0, r1, c0, c1 = window
        if not (0 <= r0 < r1 <= self.height and 0 <= c0 < c1 <= self.width):
            raise ValueError(
                f"{self.path}: window {window} is not inside the {self.height}x{self.width} scene"
            )
        if not self.geotiff:
            raw[...], valid[...] = self.read_raw(window)
            return
        with self._decoder_lock:
            if self._decoder is None:
                self._decoder = WindowDecoder(self.path, self.indexes)
            decoder = self._decoder
        decoder.read_into((self.row_off + r0, self.col_off + c0, r1 - r0, c1 - c0), raw, valid)

    def output_like(self, scale: int = 1) -> GeoMeta:
        """Grid of an output map ``scale`` times coarser than the scene (transform scaled, size rounded up)."""
        a, b, c, d, e, f = self.meta.transform
        height, width = -(-self.height // scale), -(-self.width // scale)
        return dataclasses.replace(
            self.meta,
            transform=(a * scale, b * scale, c, d * scale, e * scale, f),
            window=(0, 0, height, width),
            height=height,
            width=width,
        )

    def read_raw(self, window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Raw bands and validity of a window that may reach outside the scene.

        Args:
            window: ``(row0, row1, col0, col1)`` in scene (the reader's window's) pixels.

        Returns:
            raw [C, h, w] in the file's dtype (0 outside the scene) and valid [h, w] bool (False outside
            the scene and where ``io.read_geotiff`` marks nodata / NaN).
        """
        r0, r1, c0, c1 = window
        ir0, ir1, ic0, ic1 = max(r0, 0), min(r1, self.height), max(c0, 0), min(c1, self.width)
        valid = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        if ir1 <= ir0 or ic1 <= ic0:
            return np.zeros((len(self.indexes), r1 - r0, c1 - c0), dtype=self.meta.dtype), valid
        file_window = (self.row_off + ir0, self.col_off + ic0, ir1 - ir0, ic1 - ic0)
        inner, meta = self._read(self.indexes, file_window)
        rows, cols = slice(ir0 - r0, ir1 - r0), slice(ic0 - c0, ic1 - c0)
        if inner.shape[1:] == valid.shape:
            raw = inner  # interior block: no padding copy
        else:
            raw = np.zeros((inner.shape[0], r1 - r0, c1 - c0), dtype=inner.dtype)
            raw[:, rows, cols] = inner
        valid[rows, cols] = True if meta.valid is None else meta.valid
        return raw, valid

    def read_window(
        self, window: tuple[int, int, int, int], out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`read_raw`'s values, read through :meth:`read_into` (for a local GeoTIFF: a dataset kept
        open per thread, no second copy), into ``out``'s arrays where given.

        Args:
            window: ``(row0, row1, col0, col1)`` in scene pixels; may reach outside the scene.
            out: raw [C, h, w] and valid [h, w] arrays (or views) to fill; None: new ones.
        """
        if out is None and not self.geotiff:
            return self.read_raw(window)  # its arrays as they come: no copy
        raw, valid = window_arrays(window, self.height, self.width, len(self.indexes), self.meta.dtype, out)
        r0, r1, c0, c1 = window
        ir0, ir1, ic0, ic1 = max(r0, 0), min(r1, self.height), max(c0, 0), min(c1, self.width)
        if ir1 > ir0 and ic1 > ic0:
            rows, cols = slice(ir0 - r0, ir1 - r0), slice(ic0 - c0, ic1 - c0)
            self.read_into((ir0, ir1, ic0, ic1), raw[:, rows, cols], valid[rows, cols])
        return raw, valid

    def strip_cuts(self, window: tuple[int, int, int, int], least: int = 256) -> list[int]:
        """Rows at which to cut ``window`` into strips that each decode their own file tiles, once.

        Args:
            window: ``(row0, row1, col0, col1)`` in scene pixels (may reach outside the scene).
            least: the least strip height where the file's tiles (or strips) are shorter.

        Returns:
            ascending scene rows from ``row0`` to ``row1``: the file's tile rows in between (a
            multiple of them at least ``least`` high for a file of thin strips; every ``least`` rows
            where the file's tiling is unknown).
        """
        r0, r1 = window[0], window[1]
        step = self.file_tiles.rows or least
        step *= -(-least // step)  # thin strips (1 row in a plain GeoTIFF) grouped
        start = max(r0, 0)  # rows above the scene are padding: in the first strip
        first = ((start + self.row_off) // step + 1) * step - self.row_off
        return [r0, *range(first, r1, step), r1]

    def read_normalised(
        self, window: tuple[int, int, int, int], with_valid_channel: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`read_raw`, normalised by the checkpoint's preprocessing.

        Returns:
            float32 [C, h, w] (or [C + 1, h, w] with ``valid`` as a 0/1 last channel, which lets the
            predictor skip tiles without valid pixels) and valid [h, w] bool.
        """
        raw, valid = self.read_raw(window)
        if not with_valid_channel:
            return self.pre.normalise(raw, valid), valid
        x = np.empty((raw.shape[0] + 1, *raw.shape[1:]), dtype=np.float32)
        self.pre.normalise(raw, valid, out=x[:-1])
        x[-1] = valid
        return x, valid
