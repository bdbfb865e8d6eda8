"""One-screen summaries of image files for ``resnet-apps inspect`` (no torch, no patient identifiers).

``inspect_file(path) -> dict`` gathers plain facts (size, dtype, bands or photometric, transfer
syntax, window, CRS, resolution, nodata share, value percentiles); ``format_summary(dict) -> str``
lays them out. The dict is built from our metadata dataclasses only, which never hold a patient's
name, ID or birth date, so nothing identifying can reach the screen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from resnet_apps.errors import ResnetAppsError
from resnet_apps.io.bands import constant_bands
from resnet_apps.io.dicom import DicomMeta, read_dicom, read_dicom_header
from resnet_apps.io.geotiff import GeoMeta
from resnet_apps.io.image import ImageMeta, read_image, sniff_format

PERCENTILES = (0, 1, 50, 99, 100)
_MAX_BANDS_SHOWN = 13


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


def inspect_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Facts about one image file; an ``error`` entry instead of pixel facts when it cannot be decoded."""
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
            if header.number_of_frames > 1:
                image, meta = read_dicom(path, frame=0)
                info["frame_shown"] = 0
            else:
                image, meta = read_dicom(path)
            info.update(_dicom_facts(meta))
            arr, valid = image[None], meta.valid
        else:
            arr, any_meta = read_image(path)
            valid = any_meta.valid
            if isinstance(any_meta, GeoMeta):
                info.update(_geo_facts(any_meta))
            elif isinstance(any_meta, ImageMeta):
                info.update(_image_facts(any_meta))
    except ResnetAppsError as error:
        info["error"] = str(error)
        return info
    info["shape"] = list(arr.shape)
    info["dtype"] = str(arr.dtype)
    if valid is not None:
        info["invalid_share"] = float(1.0 - valid.mean())
    info["percentiles"] = _percentiles(arr, valid)
    names = info.get("band_names") or ["gray"] * arr.shape[0]
    flat = constant_bands(arr, names, valid)
    if flat and arr.shape[0] > 1:  # one grey band may well be flat (a blank film); among bands it is a hint
        info["constant_bands"] = flat
    return info


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
    return {k: getattr(meta, k) for k in keys if getattr(meta, k) is not None}


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
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def format_summary(info: dict[str, Any]) -> str:
    """A compact, aligned text block for one file."""
    size = info.get("bytes")
    lines = [f"{info['path']}  [{info.get('format', '?')}, {size / 1024:.1f} KiB]" if size else info["path"]]
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
        lines.append(f"  {'error':<20} {info['error']}")
    return "\n".join(lines)
