"""Domain I/O: DICOM, GeoTIFF and plain images as ``(numpy array, small metadata dataclass)``.

This package never imports torch (a test checks it in a subprocess): numpy, pydicom, rasterio and
PIL only. See docs/ARCHITECTURE.md section 3 for the contracts.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# name -> submodule. Resolved on first use (PEP 562) so that the stdlib-only helpers (io.atomic,
# io.identity, io.tables) do not pay for pydicom, rasterio and PIL: the fetcher needs none of them.
_EXPORTS = {
    "DicomMeta": "dicom",
    "FrameRequiredError": "dicom",
    "hash_identifier": "dicom",
    "read_dicom": "dicom",
    "read_dicom_header": "dicom",
    "GeoMeta": "geotiff",
    "read_geotiff": "geotiff",
    "GeoTiffWriter": "geotiff_write",
    "open_geotiff_writer": "geotiff_write",
    "write_geotiff": "geotiff_write",
    "ImageMeta": "image",
    "read_image": "image",
    "read_mask": "image",
    "sniff_format": "image",
    "format_summary": "inspect",
    "inspect_file": "inspect",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


__all__ = [
    "DicomMeta",
    "FrameRequiredError",
    "GeoMeta",
    "GeoTiffWriter",
    "ImageMeta",
    "format_summary",
    "hash_identifier",
    "inspect_file",
    "open_geotiff_writer",
    "read_dicom",
    "read_dicom_header",
    "read_geotiff",
    "read_image",
    "read_mask",
    "sniff_format",
    "write_geotiff",
]
