"""Decoding DICOM pixel data: pydicom's pixel handlers, GDCM's own reader as a fallback, clear codec errors.

Split from :mod:`resnet_apps.io.dicom` (which applies the viewer chain to what this returns). No torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from resnet_apps.errors import DicomError, MissingCodecError, UnsupportedSyntaxError


@contextlib.contextmanager
def _stderr_to_void() -> Iterator[None]:
    """Silence C-level writes to file descriptor 2 (Python's sys.stderr is untouched)."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreter): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as void:
            os.dup2(void.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# pip package -> importable module of the decoder plugins pydicom can use
_PLUGINS = {
    "pylibjpeg": "pylibjpeg",
    "pylibjpeg-libjpeg": "libjpeg",
    "pylibjpeg-openjpeg": "openjpeg",
    "pylibjpeg-rle": "rle",
    "pyjpegls": "jpeg_ls",
    "python-gdcm": "gdcm",
}


def installed_plugins() -> list[str]:
    """pip names of the decoder plugins importable here (so errors never ask to install those)."""
    return [pip for pip, module in _PLUGINS.items() if importlib.util.find_spec(module) is not None]


def missing_plugins() -> list[str]:
    """pip names of the decoder plugins not installed here."""
    have = set(installed_plugins())
    return [pip for pip in _PLUGINS if pip not in have]


def _decode_with_gdcm(path: Path, ds: Dataset, frame: int | None) -> np.ndarray:
    """Decode with GDCM's own reader (it has 12-bit JPEG that pydicom's GDCM plugin refuses)."""
    try:
        import gdcm
    except ImportError as error:
        raise MissingCodecError(
            f"{path}: transfer syntax {ds.file_meta.TransferSyntaxUID.name} cannot be decoded by the "
            f"installed plugins ({', '.join(installed_plugins()) or 'none'}); fix: pip install "
            f"{' '.join(missing_plugins())}"
        ) from error
    # GDCM prints its first (8-bit libjpeg) attempt's complaints to stderr; our errors say enough
    gdcm.Trace.WarningOff()
    gdcm.Trace.ErrorOff()
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    with _stderr_to_void():  # its bundled libjpeg prints the 8-bit attempt's failure to fd 2
        if not reader.Read():
            raise DicomError(f"{path}: GDCM cannot read the file")
        image = reader.GetImage()
        buffer = image.GetBuffer()
    fmt = image.GetPixelFormat()
    dtype = {
        (8, 0): np.uint8,
        (8, 1): np.int8,
        (16, 0): np.uint16,
        (16, 1): np.int16,
        (32, 0): np.uint32,
        (32, 1): np.int32,
    }.get((int(fmt.GetBitsAllocated()), int(fmt.GetPixelRepresentation())))
    if dtype is None:
        raise MissingCodecError(f"{path}: GDCM returned an unsupported pixel format; fix: convert the file")
    # python-gdcm hands the buffer over as a str with surrogate escapes
    raw = buffer.encode("utf-8", "surrogateescape")
    cols, rows = int(image.GetDimension(0)), int(image.GetDimension(1))
    samples = int(fmt.GetSamplesPerPixel())
    frames = len(raw) // (rows * cols * samples * np.dtype(dtype).itemsize)
    if frames < 1:
        raise DicomError(f"{path}: GDCM decoded {len(raw)} bytes, fewer than one {rows}x{cols} frame")
    arr = np.frombuffer(raw, dtype=dtype, count=frames * rows * cols * samples)
    arr = arr.reshape((frames, rows, cols, samples) if samples > 1 else (frames, rows, cols))
    return arr[frame if frame is not None else 0]


def decode_pixels(path: Path, ds: Dataset, frame: int | None) -> np.ndarray:
    """Decoded stored values of one frame: [H, W] or [H, W, 3] for colour, BitsStored honoured."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = pixel_array(ds, index=frame)
    except NotImplementedError as error:
        # no decoder exists for this syntax in pydicom nor any plugin (MPEG2/4, HEVC, JPEG XL, private):
        # installing packages does not help, converting the file does
        name = syntax.name if syntax.is_transfer_syntax else "a private or unknown syntax"
        raise UnsupportedSyntaxError(
            f"{path}: transfer syntax '{name}' ({syntax}) has no pixel decoder in pydicom or its plugins "
            f"(installed here: {', '.join(installed_plugins()) or 'none'}); fix: convert the file to an "
            "uncompressed syntax with a tool that knows it, e.g. dcmtk `dcmconv +te in.dcm out.dcm` / "
            "`dcmdjpeg`, `gdcmconv --raw in.dcm out.dcm`, or for video syntaxes extract frames with ffmpeg"
        ) from error
    except RuntimeError as error:
        # every pydicom plugin failed (e.g. 12-bit JPEG Extended): try GDCM's own reader
        if not syntax.is_compressed:
            raise DicomError(f"{path}: pixel data cannot be decoded ({error})") from error
        try:
            arr = _decode_with_gdcm(path, ds, frame)
        except MissingCodecError:
            raise
        except Exception as gdcm_error:
            missing = missing_plugins()
            install = f"pip install {' '.join(missing)}, or " if missing else ""
            raise MissingCodecError(
                f"{path}: transfer syntax '{syntax.name}' ({syntax}) could not be decoded by the installed "
                f"plugins ({', '.join(installed_plugins()) or 'none'}: {error}) nor by GDCM ({gdcm_error}); "
                f"fix: {install}convert the file (e.g. gdcmconv --raw in.dcm out.dcm)"
            ) from gdcm_error
    except (ValueError, AttributeError, KeyError, TypeError, EOFError) as error:
        raise DicomError(
            f"{path}: pixel data cannot be decoded ({type(error).__name__}: {error}); the file may be "
            "truncated or corrupt; fix: re-export it"
        ) from error
    bits_stored = int(ds.get("BitsStored", arr.dtype.itemsize * 8))
    container = arr.dtype.itemsize * 8
    if arr.dtype.kind in "ui" and bits_stored < container:
        if arr.dtype.kind == "u":
            # bits above BitsStored may hold overlays or junk (PS3.5 8.1.1): drop them
            arr = arr & np.array((1 << bits_stored) - 1, dtype=arr.dtype)
        else:
            # sign-extend from BitsStored (harmless when the writer already did)
            shift = container - bits_stored
            arr = (arr << shift) >> shift
    return arr
