"""One-screen summaries of image files for ``resnet-apps inspect`` (no torch, no patient identifiers).

``inspect_file(path) -> dict`` gathers plain facts (size, dtype, bands or photometric, transfer
syntax, window, CRS, resolution, nodata share, value percentiles); ``format_summary(dict) -> str``
lays them out. The dict is built from our metadata dataclasses only, which never hold a patient's
name, ID or birth date, so nothing identifying can reach the screen.
"""

from __future__ import annotations

import math
import os
import unicodedata
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from resnet_apps.errors import ResnetAppsError
from resnet_apps.io.bands import constant_bands
from resnet_apps.io.dicom import DicomMeta, FrameArg, read_dicom, read_dicom_header
from resnet_apps.io.geotiff import GeoMeta, read_geotiff
from resnet_apps.io.image import ImageMeta, read_image, sniff_format

PERCENTILES = (0, 1, 50, 99, 100)
_MAX_BANDS_SHOWN = 13
# GeoTIFF statistics come from a decimated read of at most this many pixels per band (rasterio
# out_shape, served from overviews when the file has them): a 20000 x 20000 scene costs 1 Mpx, not 400
PREVIEW_PIXELS = 1_000_000


def clean_text(text: str) -> str:
    """Free text from a header with control and format characters (escape sequences, bidi overrides,
    newlines) removed, so that a crafted header field cannot rewrite the terminal or forge lines."""
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))


def _percentiles(arr: np.ndarray, valid: np.ndarray | None) -> list[dict[str, float | None]]:
    """Per band: the PERCENTILES of valid pixels (NaN-free), as plain floats."""
    rows: list[dict[str, float | None]] = []
    for band in arr[:_MAX_BANDS_SHOWN]:
        values = band[valid] if valid is not None else band.ravel()
        values = values[~np.isnan(values)] if values.dtype.kind == "f" else values
        if values.size == 0:
            rows.append(dict.fromkeys(map(str, PERCENTILES)))
            continue
        rows.append(
            {str(p): float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=False)}
        )
    return rows


def inspect_file(
    path: str | os.PathLike[str], *, frame: FrameArg = None, max_pixels: int | None = None
) -> dict[str, Any]:
    """Facts about one image file; an ``error`` entry instead of pixel facts when it cannot be decoded.

    Args:
        path: the file.
        frame: the frame of a multi-frame DICOM to show (index or first / middle / last; default first).
        max_pixels: pixel budget of a decode (``io.budget``); GeoTIFF statistics use a decimated read.
    """
    path = Path(path)
    info: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size if path.is_file() else None}
    try:
        fmt = sniff_format(path)
    except ResnetAppsError as error:
        info["error"] = str(error)
        return info
    info["format"] = fmt
    try:
        if fmt == "dicom":
            header = read_dicom_header(path)
            info.update(_dicom_facts(header))
            chosen = frame if frame is not None else ("first" if header.number_of_frames > 1 else None)
            image, meta = read_dicom(path, frame=chosen, max_pixels=max_pixels)
            if meta.frame is not None:
                info["frame_shown"] = meta.frame
            info.update(_dicom_facts(meta))
            arr, valid = image[None], meta.valid
        elif fmt == "tiff":
            arr, geo = _geotiff_preview(path, max_pixels)
            valid = geo.valid
            info.update(_geo_facts(geo))
            if arr.shape[1:] != (geo.height, geo.width):
                info["statistics_from"] = f"a sample of {arr.shape[1] * arr.shape[2]} pixels per band"
        else:
            arr, any_meta = read_image(path, max_pixels=max_pixels)
            valid = any_meta.valid
            if isinstance(any_meta, GeoMeta):
                info.update(_geo_facts(any_meta))
            elif isinstance(any_meta, ImageMeta):
                info.update(_image_facts(any_meta))
    except ResnetAppsError as error:
        info["error"] = str(error)
        return info
    info["shape"] = [arr.shape[0], *(info["height"], info["width"])] if "height" in info else list(arr.shape)
    info["dtype"] = str(arr.dtype)
    if valid is not None:
        info["invalid_share"] = float(1.0 - valid.mean())
    info["percentiles"] = _percentiles(arr, valid)
    names = info.get("band_names") or ["gray"] * arr.shape[0]
    flat = constant_bands(arr, names, valid)
    if flat and arr.shape[0] > 1:  # one grey band may well be flat (a blank film); among bands it is a hint
        info["constant_bands"] = flat
    return info


def _geotiff_preview(path: Path, max_pixels: int | None) -> tuple[np.ndarray, GeoMeta]:
    """Pixels for statistics, at most about ``PREVIEW_PIXELS`` per band, and the file's own meta.

    Small rasters are read whole. Larger ones are read from their overviews when they have them
    (rasterio ``out_shape``), else as up to 64 blocks spread over the raster, each thinned by a stride:
    a decimated read of a raster without overviews decodes every block (30 s and 1.4 GB for a sparse
    13 x 20000 x 20000 file), a block sample decodes 64. Returns [C, 1, N] values and meta whose
    ``valid`` is [1, N] for the sample; ``meta.transform`` and size are the file's.
    """
    _, head = read_geotiff(path, window=(0, 0, 1, 1))  # header facts for one pixel's read
    if head.height * head.width <= PREVIEW_PIXELS:
        return read_geotiff(path, max_pixels=max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            has_overviews = bool(src.overviews(1))
            blocks = [window for _, window in src.block_windows(1)]
    if has_overviews:
        factor = math.ceil(math.sqrt(head.height * head.width / PREVIEW_PIXELS))
        shape = (math.ceil(head.height / factor), math.ceil(head.width / factor))
        with rasterio.Env(GDAL_CACHEMAX=64):
            arr, meta = read_geotiff(path, out_shape=shape, max_pixels=max_pixels)
        values, valid = (
            arr.reshape(arr.shape[0], 1, -1),
            None if meta.valid is None else meta.valid.reshape(1, -1),
        )
    else:
        picks = [blocks[int(i)] for i in np.linspace(0, len(blocks) - 1, min(64, len(blocks)))]
        parts, masks = [], []
        for window in picks:
            win = (int(window.row_off), int(window.col_off), int(window.height), int(window.width))
            with rasterio.Env(GDAL_CACHEMAX=64):
                block, bmeta = read_geotiff(path, window=win, max_pixels=max_pixels)
            stride = max(
                1, math.ceil(math.sqrt(block.shape[1] * block.shape[2] * len(picks) / PREVIEW_PIXELS))
            )
            parts.append(block[:, ::stride, ::stride].reshape(block.shape[0], -1))
            if bmeta.valid is not None:
                masks.append(bmeta.valid[::stride, ::stride].reshape(-1))
        values = np.concatenate(parts, axis=1)[:, None, :]
        valid = np.concatenate(masks)[None, :] if len(masks) == len(parts) else None
    head.valid = valid
    head.window = (0, 0, head.height, head.width)
    return values, head


def _dicom_facts(meta: DicomMeta) -> dict[str, Any]:
    # an explicit allow-list: hashes are fine, identifiers never exist in DicomMeta anyway
    keys = (
        "modality",
        "view_position",
        "body_part",
        "sop_class",
        "photometric",
        "transfer_syntax",
        "transfer_syntax_uid",
        "bits_allocated",
        "bits_stored",
        "pixel_representation",
        "rows",
        "cols",
        "number_of_frames",
        "pixel_spacing",
        "window",
        "window_source",
        "patient_hash",
        "study_hash",
    )
    facts = {k: getattr(meta, k) for k in keys if getattr(meta, k) is not None}
    return {k: clean_text(v) if isinstance(v, str) else v for k, v in facts.items()}


def _geo_facts(meta: GeoMeta) -> dict[str, Any]:
    return {
        "crs": meta.crs,
        "resolution": meta.res,
        "transform": meta.transform,
        "nodata": meta.nodata,
        "band_names": meta.band_names,
        "band_numbers": meta.band_numbers,
        "alpha_band": meta.alpha_band,
        "width": meta.width,
        "height": meta.height,
        "georeferenced": meta.georeferenced,
    }


def _image_facts(meta: ImageMeta) -> dict[str, Any]:
    return {"mode": meta.mode, "band_names": meta.band_names, "width": meta.width, "height": meta.height}


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def format_summary(info: dict[str, Any]) -> str:
    """A compact, aligned text block for one file."""
    size = info.get("bytes")
    lines = [
        f"{clean_text(info['path'])}  [{info.get('format', '?')}, {size / 1024:.1f} KiB]"
        if size
        else clean_text(info["path"])
    ]
    order = (
        "shape",
        "dtype",
        "band_names",
        "band_numbers",
        "alpha_band",
        "constant_bands",
        "photometric",
        "modality",
        "view_position",
        "body_part",
        "sop_class",
        "transfer_syntax",
        "transfer_syntax_uid",
        "bits_allocated",
        "bits_stored",
        "pixel_representation",
        "number_of_frames",
        "frame_shown",
        "pixel_spacing",
        "window",
        "window_source",
        "mode",
        "crs",
        "resolution",
        "transform",
        "nodata",
        "georeferenced",
        "invalid_share",
        "statistics_from",
        "patient_hash",
        "study_hash",
    )
    for key in order:
        if key in info and info[key] is not None:
            value = info[key]
            if key == "invalid_share":
                value = f"{100 * value:.2f}% of pixels (nodata / NaN / padding)"
            lines.append(f"  {key:<20} {_fmt(value)}")
    if "percentiles" in info:
        names = info.get("band_names") or ["gray"]
        header = "  ".join(f"p{p:<9}" for p in PERCENTILES)
        lines.append(f"  {'percentiles':<20} {header}")
        for name, row in zip(names, info["percentiles"], strict=False):
            cells = "  ".join(
                f"{_fmt(row[str(p)]) if row[str(p)] is not None else '-':<10}" for p in PERCENTILES
            )
            lines.append(f"    {str(name):<18} {cells}")
    if "error" in info:
        lines.append(f"  {'error':<20} {clean_text(info['error'])}")
    return "\n".join(lines)
