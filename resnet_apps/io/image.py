"""Read any supported image by its content: DICOM, (Geo)TIFF, PNG, JPEG (no torch).

``read_image(path) -> ([C, H, W], meta)`` sniffs the magic bytes, not only the suffix, so a
DICOM named ``.jpg`` or a PNG named ``.tif`` is still read correctly:

==========  ===================================  ===================================
format      array                                meta
==========  ===================================  ===================================
DICOM       [1, H, W] float32 in [0, 1]          ``DicomMeta`` (``read_dicom``)
TIFF        [C, H, W] native dtype               ``GeoMeta`` (``read_geotiff``)
PNG / JPEG  [1|3, H, W] uint8 or uint16          ``ImageMeta``
==========  ===================================  ===================================

PNG/JPEG: grey -> [1, H, W], RGB -> [3, H, W], alpha dropped, palette expanded to RGB. For
segmentation masks use ``read_mask``, which keeps palette *indices* instead of expanding them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from rasterio.windows import Window

from resnet_apps.errors import ImageReadError
from resnet_apps.io.bands import select_bands
from resnet_apps.io.budget import check_pixels
from resnet_apps.io.dicom import DicomMeta, FrameArg, read_dicom
from resnet_apps.io.dicom_voi import WindowArg as DicomWindowArg
from resnet_apps.io.geotiff import BandArg, GeoMeta, WindowArg, read_geotiff
from resnet_apps.io.sniff import sniff_format


@dataclass
class ImageMeta:
    """Facts of a plain PNG/JPEG read. ``valid`` is None: such files carry no nodata."""

    path: str
    band_names: list[str]  # ["red", "green", "blue"] or ["gray"]
    dtype: str
    mode: str  # PIL mode of the file, e.g. "RGB", "L", "I;16", "P"
    format: str  # "png" | "jpeg"
    width: int
    height: int
    valid: np.ndarray | None = field(default=None, repr=False)
    kind: str = "image"


# Pillow's own bomb check (DecompressionBombError past 2 x 89.5 Mpx) is replaced by our budget, which
# is checked from the header before the decode; the switch is process-global, hence the lock.
_PIL_LOCK = threading.Lock()
_RGB_MODES = ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")


def _pil_open(path: Path, max_pixels: int | None = None, load: bool = True) -> Image.Image:
    """Open a PNG/JPEG, check the pixel budget from its header, then (``load``) decode it.

    Raises:
        PixelBudgetError: the header claims more than ``max_pixels`` values (nothing decoded).
        ImageReadError: not decodable (truncated, corrupt).
    """
    try:
        with _PIL_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # our budget below is the check
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(
            f"{path}: cannot be read as PNG/JPEG ({error}); the file may be corrupt"
        ) from error
    # a palette image is expanded to RGB after the decode: count what will be held
    planes = 3 if image.mode in ("P", "PA") else len(image.getbands())
    check_pixels(path, image.height, image.width, planes, max_pixels=max_pixels)
    if load:
        _pil_load(image, path)
    return image


def _pil_load(image: Image.Image, path: Path) -> None:
    try:
        image.load()  # decode now so truncated files fail here, with the file named
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(
            f"{path}: cannot be decoded as PNG/JPEG ({error}); the file may be truncated"
        ) from error


def _pil_band_names(mode: str) -> list[str]:
    """The band names ``_pil_to_array`` will return for a PIL mode, known before the decode."""
    return ["red", "green", "blue"] if mode in _RGB_MODES else ["gray"]


def _pil_to_array(image: Image.Image, path: Path) -> tuple[np.ndarray, list[str]]:
    """[C, H, W] native dtype and band names; alpha dropped, palette expanded, 16-bit kept."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode == "LA":
        image = image.getchannel("L")
    elif mode == "PA":
        image = image.convert("RGB")
    arr = np.asarray(image)
    if image.mode in ("I;16", "I;16B", "I;16L"):
        arr = arr.astype(np.uint16, copy=False)
    elif image.mode == "I":
        # 16-bit PNGs may open as 32-bit "I": keep them 16-bit when the values fit
        arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() <= 65535 else arr
    elif image.mode == "F":
        arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 2:
        return arr[None], ["gray"]
    if arr.ndim == 3 and arr.shape[2] >= 3:
        return np.ascontiguousarray(arr[:, :, :3].transpose(2, 0, 1)), ["red", "green", "blue"]
    raise ImageReadError(f"{path}: unsupported image layout {arr.shape} (mode {mode})")


def _select(arr: np.ndarray, names: list[str], bands: BandArg, where: str) -> tuple[np.ndarray, list[str]]:
    if bands is None:
        return arr, names
    picked = select_bands(bands, names, where)
    return arr[picked], [names[i] for i in picked]


def _crop(arr: np.ndarray, window: WindowArg, where: str) -> np.ndarray:
    if window is None:
        return arr
    if isinstance(window, Window):
        row, col, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
    else:
        row, col, h, w = (int(v) for v in window)
    if row < 0 or col < 0 or h <= 0 or w <= 0 or row + h > arr.shape[-2] or col + w > arr.shape[-1]:
        raise ImageReadError(
            f"{where}: window ({row}, {col}, {h}, {w}) outside the {arr.shape[-2]}x{arr.shape[-1]} image"
        )
    return arr[..., row : row + h, col : col + w]


def read_image(
    path: str | os.PathLike[str],
    *,
    bands: BandArg = None,
    window: WindowArg = None,
    dicom_window: DicomWindowArg = None,
    dicom_frame: FrameArg = None,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, DicomMeta | GeoMeta | ImageMeta]:
    """Read an image of any supported format as [C, H, W].

    Args:
        path: the file; its format is taken from its magic bytes.
        bands: names or 1-based band numbers (GeoTIFF band names, or "red"/"green"/"blue"/"gray");
            checked against the header before any decode, so a wrong band costs no decode.
        window: (row_off, col_off, height, width); for TIFF only the window is read from disk.
        dicom_window: ``window=`` of ``read_dicom`` (None, index, "percentile", (center, width)).
        dicom_frame: ``frame=`` of ``read_dicom`` (an index, or "first" / "middle" / "last").
        max_pixels: pixel budget in values, checked from the header (``io.budget``; None: default).

    Returns:
        array [C, H, W] and its meta (``DicomMeta``, ``GeoMeta`` or ``ImageMeta``; each has
        ``valid`` and ``kind``). DICOM gives float32 in [0, 1]; others keep their dtype.

    Raises:
        PixelBudgetError: the header claims more than ``max_pixels`` values.
        BandError, ImageReadError: see the format readers.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file; fix: check the path")
    fmt = sniff_format(path)
    if fmt == "dicom":
        _select(np.empty((1, 0, 0)), ["gray"], bands, str(path))  # a wrong band fails before the decode
        image, dmeta = read_dicom(path, window=dicom_window, frame=dicom_frame, max_pixels=max_pixels)
        arr, _ = _select(image[None], ["gray"], bands, str(path))
        arr = _crop(arr, window, str(path))
        if window is not None and dmeta.valid is not None:
            dmeta.valid = _crop(dmeta.valid, window, str(path))
        return arr, dmeta
    if fmt == "tiff":
        return read_geotiff(path, bands=bands, window=window, max_pixels=max_pixels)
    if fmt in ("png", "jpeg"):
        pil = _pil_open(path, max_pixels, load=False)
        names = _pil_band_names(pil.mode)
        _select(np.empty((len(names), 0, 0)), names, bands, str(path))  # before the decode
        _pil_load(pil, path)
        arr, names = _pil_to_array(pil, path)
        arr, names = _select(arr, names, bands, str(path))
        arr = _crop(arr, window, str(path))
        meta = ImageMeta(
            path=str(path),
            band_names=names,
            dtype=str(arr.dtype),
            mode=pil.mode,
            format=fmt,
            width=pil.width,
            height=pil.height,
        )
        return arr, meta
    raise ImageReadError(
        f"{path}: unknown image format (not DICOM, TIFF, PNG or JPEG by its first bytes); "
        "fix: convert it to one of these"
    )


def read_mask(
    path: str | os.PathLike[str], rgb: bool = False, *, max_pixels: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a segmentation mask without changing its codes.

    Args:
        path: PNG, JPEG or TIFF mask.
        rgb: expand palette (and grey) masks to [H, W, 3] colours; for datasets whose masks are
            colour-coded but sometimes saved as palette PNGs (Dubai tile 2).
        max_pixels: pixel budget in values, checked from the header (``io.budget``; None: default).

    Returns:
        ``[H, W]`` integer array for index masks (grey PNG, palette PNG: the palette *indices*,
        single-band TIFF), or ``[H, W, 3]`` uint8 for colour-coded masks (RGB/RGBA PNG or JPEG,
        3-band TIFF; channels last so ``np.all(mask == colour, axis=-1)`` finds a class), and a
        small dict: ``mode``, ``format``, ``palette`` (list of (r, g, b) for palette PNGs, else None).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file; fix: check the mask path")
    fmt = sniff_format(path)
    if fmt == "tiff":
        arr, gmeta = read_geotiff(path, max_pixels=max_pixels)
        if rgb and arr.shape[0] == 1:
            arr = np.repeat(arr, 3, axis=0)
        out = arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr[:3].transpose(1, 2, 0))
        return out, {
            "mode": f"{arr.shape[0]}-band",
            "format": "tiff",
            "palette": None,
            "nodata": gmeta.nodata,
        }
    if fmt not in ("png", "jpeg"):
        raise ImageReadError(f"{path}: a mask must be PNG, JPEG or TIFF (found {fmt}); fix: convert it")
    pil = _pil_open(path, max_pixels)
    palette = None
    if rgb:
        return np.asarray(pil.convert("RGB")), {"mode": pil.mode, "format": fmt, "palette": None}
    if pil.mode in ("P", "PA"):
        raw = pil.getpalette() or []
        palette = [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]
        arr = np.asarray(pil.getchannel(0) if pil.mode == "PA" else pil)
    elif pil.mode in ("L", "I", "I;16", "I;16B", "I;16L", "1"):
        arr = np.asarray(pil.convert("L") if pil.mode == "1" else pil)
        if pil.mode == "1":
            arr = (arr > 0).astype(np.uint8)
    else:
        arr = np.asarray(pil.convert("RGB"))
    return arr, {"mode": pil.mode, "format": fmt, "palette": palette}


def band_names_of(meta: DicomMeta | GeoMeta | ImageMeta) -> Sequence[str]:
    """Band names of any meta (DICOM: ["gray"])."""
    return ["gray"] if isinstance(meta, DicomMeta) else meta.band_names
