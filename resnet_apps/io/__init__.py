"""Domain I/O: DICOM, GeoTIFF and plain images as ``(numpy array, small metadata dataclass)``.

This package never imports torch (a test checks it in a subprocess): numpy, pydicom, rasterio and
PIL only. See docs/ARCHITECTURE.md section 3 for the contracts.
"""

from __future__ import annotations

from resnet_apps.io.dicom import DicomMeta, FrameRequiredError, hash_identifier, read_dicom, read_dicom_header
from resnet_apps.io.geotiff import GeoMeta, read_geotiff
from resnet_apps.io.geotiff_write import GeoTiffWriter, open_geotiff_writer, write_geotiff
from resnet_apps.io.image import ImageMeta, read_image, read_mask, sniff_format
from resnet_apps.io.inspect import format_summary, inspect_file

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
