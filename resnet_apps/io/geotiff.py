"""GeoTIFF read/write with band names, nodata, georeference and windows (rasterio; no torch).

``read_geotiff(path | [paths], bands=None, window=None) -> ([C, H, W] native dtype, GeoMeta)``

- Bands are chosen by name (``"B04"``; names come from the band descriptions, else EuroSAT's order
  for a 13-band file without descriptions, else ``"band1"``...) or by **1-based** band number, as GDAL
  and rasterio count (``io.bands.select_bands``).
- An alpha band (colour interpretation alpha, or a constant 255/65535 last band of an RGBA file) is
  never returned (asking for it is a BandError): it is folded into ``meta.valid`` (alpha 0 = invalid).
- A list of single-band files (38-Cloud's ``red``/``green``/``blue``/``nir`` folders) is stacked
  in list order; each band is named by its description or else by its file's stem.
- The dtype is kept (uint16 reflectance stays uint16): scaling belongs to the data card.
- ``meta.valid`` [H, W] is False where every band read equals nodata (GDAL's per-dataset mask
  convention: a genuinely dark red value in an otherwise valid pixel stays valid) or any band is NaN.
- ``window`` reads only that window from disk (rasterio ``window=``).
- A remote raster (``https://``, ``s3://``, ``/vsicurl/...``: see :func:`is_remote`) is passed to rasterio
  as a string, so GDAL's virtual file systems read only the blocks a window needs (range requests); the
  GDAL options that make this cheap are set by the caller (``predict.remote.gdal_env``).

Writing (``write_geotiff``, ``open_geotiff_writer``) lives in ``geotiff_write.py``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeAlias

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from resnet_apps.constants import EUROSAT_MS_BANDS
from resnet_apps.errors import GeoTiffError
from resnet_apps.io.bands import select_bands
from resnet_apps.io.budget import check_pixels

# (row_off, col_off, height, width) in pixels, or a rasterio Window
WindowArg: TypeAlias = None | tuple[int, int, int, int] | Window
BandArg: TypeAlias = None | Sequence[str | int]
# what GDAL reaches through a virtual file system (rasterio maps http(s):// to /vsicurl/, s3:// to /vsis3/)
REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "az://", "/vsi")
_ALPHA_SEEN: dict[tuple[str, int, int], list[int]] = {}


@dataclass
class GeoMeta:
    """Georeference and band facts of a GeoTIFF read.

    ``transform`` is the affine (a, b, c, d, e, f) of the *returned array's* top-left pixel (the
    file's transform shifted by the window), so ``write_geotiff(path, array, like=meta)`` places a
    chip where it came from. ``width``/``height`` are the file's; ``window`` is what was read as
    (row_off, col_off, height, width). ``crs`` is "EPSG:n" when it has a code, else WKT, else None.
    """

    path: str
    crs: str | None
    transform: tuple[float, float, float, float, float, float]
    res: tuple[float, float]
    nodata: float | None
    band_names: list[str]
    dtype: str
    width: int
    height: int
    window: tuple[int, int, int, int]
    georeferenced: bool = True
    valid: np.ndarray | None = field(default=None, repr=False)
    kind: str = "geotiff"
    band_numbers: list[int] = field(default_factory=list)  # 1-based file (stack) numbers of the bands read
    alpha_band: int | None = None  # 1-based number of the alpha band folded into ``valid``
    block_shape: tuple[int, int] | None = None  # (rows, cols) of the first file's internal tiles or strips


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for a URL or GDAL virtual path (read through GDAL, not the local file system)."""
    return str(path).startswith(REMOTE_PREFIXES)


def as_source(path: str | os.PathLike[str]) -> str | Path:
    """A local file as a Path; a URL kept as the string (``Path`` would fold its ``//``)."""
    return str(path) if is_remote(path) else Path(path)


def source_stem(path: str | os.PathLike[str]) -> str:
    """The file name less its last suffix, of a path or of a URL's path (its query dropped)."""
    if is_remote(path):
        from urllib.parse import urlsplit

        return PurePosixPath(urlsplit(str(path)).path).stem
    return Path(path).stem


def _crs_string(crs: rasterio.crs.CRS | None) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def file_band_names(src: rasterio.io.DatasetReader, fallback: str | None = None) -> list[str]:
    """Band names of an open file: descriptions, else EuroSAT order for 13 bands, else band1...

    Args:
        src: an open rasterio dataset.
        fallback: name for a single band without a description (used when stacking files).
    """
    descriptions = list(src.descriptions)
    if all(descriptions):
        return [str(d) for d in descriptions]
    if src.count == len(EUROSAT_MS_BANDS):
        return list(EUROSAT_MS_BANDS)  # EuroSAT-MS files carry no descriptions; SOURCES.md gives the order
    if src.count == 1 and fallback:
        return [fallback]
    return [d or f"band{i + 1}" for i, d in enumerate(descriptions)]


def alpha_planes(src: rasterio.io.DatasetReader) -> list[int]:
    """0-based alpha bands of an open file: GDAL colour interpretation alpha, else a constant-max last band.

    The second rule catches RGBA files written without the TIFF ExtraSamples tag: the last of 2 or 4
    undescribed 8/16-bit bands that holds only 255 (65535) on a <= 64 x 64 decimated read (cheap even for
    a scene: GDAL reads overviews or strides) is an alpha band with every pixel opaque.
    """
    interp = list(src.colorinterp)
    flagged = [i for i, ci in enumerate(interp) if ci == ColorInterp.alpha]
    if flagged or src.count not in (2, 4) or src.descriptions[-1]:
        return flagged
    top = {"uint8": 255, "uint16": 65535}.get(src.dtypes[-1])
    if top is None:
        return []
    try:  # scene prediction reads one window at a time: sample each file once
        # a remote file is taken as unchanging for the life of the process (a stat would be a request)
        stat = None if is_remote(src.name) else os.stat(src.name)
        key = (src.name, -1, -1) if stat is None else (src.name, stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None
    if key is not None and key in _ALPHA_SEEN:
        return _ALPHA_SEEN[key]
    sample = src.read(src.count, out_shape=(min(src.height, 64), min(src.width, 64)))
    found = [src.count - 1] if int(sample.min()) == top else []
    if key is not None:
        if len(_ALPHA_SEEN) > 1024:
            _ALPHA_SEEN.clear()
        _ALPHA_SEEN[key] = found
    return found


def as_window(window: WindowArg, width: int, height: int, where: str) -> Window:
    """A rasterio Window inside a height x width raster, from None (all), a tuple or a Window."""
    if window is None:
        return Window(0, 0, width, height)
    if isinstance(window, Window):
        win = window
    else:
        row_off, col_off, h, w = (int(v) for v in window)
        win = Window(col_off, row_off, w, h)
    if (
        win.col_off < 0
        or win.row_off < 0
        or win.width <= 0
        or win.height <= 0
        or win.col_off + win.width > width
        or win.row_off + win.height > height
    ):
        raise GeoTiffError(
            f"{where}: window (row_off={win.row_off}, col_off={win.col_off}, height={win.height}, "
            f"width={win.width}) is outside the {height}x{width} raster; fix: clip it to the raster"
        )
    return win


def _stack_names(paths: Sequence[str | Path]) -> list[str]:
    """Names for stacked single-band files: the stems' first tokens when the rest is shared.

    38-Cloud's ``red_patch_X.TIF``, ``nir_patch_X.TIF`` become ``red`` and ``nir``; otherwise the stems.
    """
    stems = [source_stem(p) for p in paths]
    parts = [stem.split("_", 1) for stem in stems]
    if (
        all(len(x) == 2 for x in parts)
        and len({x[1] for x in parts}) == 1
        and len({x[0] for x in parts}) == len(parts)
    ):
        return [x[0] for x in parts]
    return stems


def open_raster(path: str | Path) -> rasterio.io.DatasetReader:
    """An open rasterio dataset, or a GeoTiffError naming the file and what to check."""
    if isinstance(path, Path) and not path.is_file():
        raise GeoTiffError(f"{path}: no such file; fix: check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as error:
        raise GeoTiffError(
            f"{path}: not a readable raster ({error}); fix: check the file is a (Geo)TIFF"
        ) from error


def valid_mask_into(data: np.ndarray, nodata: Sequence[float | None], valid: np.ndarray) -> np.ndarray:
    """Write into ``valid`` [H, W] bool: False where all bands of ``data`` [C, H, W] equal their nodata, or
    any band is NaN; return it.

    A pixel is nodata only if every band is, so the usual window (no nodata pixel in its first band) costs
    one comparison of one band: the later bands are compared only while some pixel is still nodata in all
    bands so far.
    """
    valid.fill(True)
    per_band = [d is not None and not np.isnan(d) for d in nodata]
    if all(per_band) and len(per_band) > 0:
        all_nodata = data[0] == nodata[0]
        for band, value in zip(data[1:], nodata[1:], strict=False):
            if not all_nodata.any():
                break
            all_nodata &= band == value
        np.logical_not(all_nodata, out=valid)
    if data.dtype.kind == "f":
        valid &= ~np.isnan(data).any(axis=0)
    return valid


def read_geotiff(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    bands: BandArg = None,
    window: WindowArg = None,
    *,
    max_pixels: int | None = None,
    out_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, GeoMeta]:
    """Read bands of one GeoTIFF, or stack single-band GeoTIFFs, keeping their dtype.

    Args:
        path: a file, or a list of files of equal size stacked in order as bands.
        bands: None (all but alpha) or names / 1-based band numbers, in the order wanted.
        window: (row_off, col_off, height, width) or a rasterio ``Window``; only it is read.
        max_pixels: budget in values (height x width x bands read), checked from the header before
            any read (``io.budget``; None: the default 4.5e8).
        out_shape: (height, width) to decimate the window to (nearest; rasterio uses overviews when the
            file has them): a cheap preview, e.g. for ``inspect`` statistics.

    Returns:
        array [C, H, W] in the file's dtype, and ``GeoMeta`` (``valid`` [H, W] bool).

    Raises:
        BandError: a band asked for that the file(s) do not have, or an alpha band.
        GeoTiffError: unreadable file, window outside the raster, stacked files that disagree.
        PixelBudgetError: the read would hold more than ``max_pixels`` values.
    """
    paths = [as_source(path)] if isinstance(path, (str, os.PathLike)) else [as_source(p) for p in path]
    if not paths:
        raise GeoTiffError("read_geotiff: empty list of files; fix: pass at least one path")
    where = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} stacked)"
    sources = [open_raster(p) for p in paths]
    try:
        first = sources[0]
        for p, src in zip(paths[1:], sources[1:], strict=False):
            if (src.width, src.height) != (first.width, first.height) or src.transform != first.transform:
                raise GeoTiffError(
                    f"{p}: {src.height}x{src.width} with transform {tuple(src.transform)[:6]} differs from "
                    f"{paths[0]} ({first.height}x{first.width}); fix: stack only co-registered bands"
                )
        # (source index, band index within it) for every band of the stack, with its name; rasterio's
        # dtypes / nodatavals properties are rebuilt on every access, so read each once
        planes: list[tuple[int, int]] = []
        names: list[str] = []
        nodatas: list[float | None] = []
        band_dtypes: list[str] = []
        fallbacks = _stack_names(paths)
        alpha: list[int] = []
        for k, src in enumerate(sources):
            alpha += [len(planes) + b for b in alpha_planes(src)]
            fallback = fallbacks[k] if len(paths) > 1 else None
            src_nodata, src_dtypes = src.nodatavals, src.dtypes
            for b, name in enumerate(file_band_names(src, fallback)):
                planes.append((k, b + 1))
                names.append(name)
                nodatas.append(src_nodata[b])
                band_dtypes.append(src_dtypes[b])
        chosen = select_bands(bands, names, where, alpha=alpha)
        dtypes = {band_dtypes[i] for i in chosen}
        if len(dtypes) > 1:
            raise GeoTiffError(
                f"{where}: bands of different dtypes {sorted(dtypes)}; fix: read them separately"
            )
        win = as_window(window, first.width, first.height, where)
        shape = (int(win.height), int(win.width)) if out_shape is None else tuple(map(int, out_shape))
        check_pixels(where, shape[0], shape[1], len(chosen), max_pixels=max_pixels)
        data = np.empty((len(chosen), *shape), dtype=dtypes.pop())
        # one windowed read per source file, all its chosen bands at once, straight into `data`
        for k, src in enumerate(sources):
            slots = [j for j, plane in enumerate(chosen) if planes[plane][0] == k]
            if not slots:
                continue
            indexes = [planes[chosen[j]][1] for j in slots]
            # all bands of one file (the usual case): decoded straight into `data`, no second copy
            whole = slots == list(range(len(chosen)))
            try:
                if whole and out_shape is None:
                    src.read(indexes, window=win, out=data)
                else:
                    data[slots] = src.read(indexes, window=win, out_shape=(len(indexes), *shape))
            except RasterioIOError as error:
                raise GeoTiffError(
                    f"{paths[k]}: bands {indexes} cannot be read ({error}); the file may be truncated"
                ) from error
        nodata_chosen = [nodatas[i] for i in chosen]
        valid = valid_mask_into(data, nodata_chosen, np.empty(shape, dtype=bool))
        for plane in alpha:  # alpha 0 = transparent = no data, in training and prediction alike
            k, b = planes[plane]
            valid &= sources[k].read(b, window=win) != 0
        georeferenced = first.crs is not None or not first.transform.is_identity
        meta = GeoMeta(
            path=where,
            crs=_crs_string(first.crs),
            # window origin shift, as rasterio's window_transform but without its deprecated `*` product
            # (a decimated read's pixels are larger: its transform is scaled by the decimation factor)
            transform=tuple(
                first.transform
                @ rasterio.Affine.translation(win.col_off, win.row_off)
                @ rasterio.Affine.scale(win.width / shape[1], win.height / shape[0])
            )[:6],
            res=(float(first.res[0]), float(first.res[1])),
            nodata=nodata_chosen[0]
            if nodata_chosen and len(set(map(str, nodata_chosen))) == 1
            else first.nodata,
            band_names=[names[i] for i in chosen],
            dtype=str(data.dtype),
            width=int(first.width),
            height=int(first.height),
            window=(int(win.row_off), int(win.col_off), int(win.height), int(win.width)),
            georeferenced=georeferenced,
            valid=valid,
            band_numbers=[i + 1 for i in chosen],
            alpha_band=alpha[0] + 1 if alpha else None,
            block_shape=(int(first.block_shapes[0][0]), int(first.block_shapes[0][1])),
        )
        return data, meta
    finally:
        for src in sources:
            src.close()
