"""Read a DICOM radiograph the way a viewer shows it: ``read_dicom(path) -> ([H, W] float32, DicomMeta)``.

The chain follows the standard's order (PS3.3 C.11 and C.7.6.3):

1. decode the pixel data (pydicom with the pylibjpeg plugins; GDCM read directly where those fail,
   e.g. 12-bit JPEG Extended), honouring BitsStored and PixelRepresentation;
2. modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence), ``pydicom.pixels.apply_modality_lut``;
3. VOI: the header's window, a VOI LUT Sequence, an explicit window or a percentile window (``dicom_voi``);
4. MONOCHROME1 inverted *after* VOI, so bone is bright;
5. Pixel Padding Value masked (``meta.valid`` False and pixel 0); rows are H and columns W.

MONAI's ``PydicomReader`` stops after step 2 and torchxrayvision skips step 2; both are easy to get
wrong, hence one function here. Patient names, IDs and birth dates are never kept: ``patient_hash``
and ``study_hash`` are keyed HMAC-SHA256 digests (io.identity). No torch in this module.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from resnet_apps.errors import DicomError, NoPixelDataError
from resnet_apps.io.budget import check_pixels
from resnet_apps.io.dicom_decode import decode_pixels
from resnet_apps.io.dicom_redact import redacted_warnings
from resnet_apps.io.dicom_voi import WindowArg, apply_voi_choice
from resnet_apps.io.identity import keyed_hash
from resnet_apps.io.sniff import sniff_bytes

# A frame of a multi-frame file: a 0-based index or a policy (data.dicom_frame, --frame)
FrameArg: TypeAlias = int | Literal["first", "middle", "last"] | str | None
FRAME_POLICIES = ("first", "middle", "last")

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class FrameRequiredError(DicomError):
    """A multi-frame DICOM read without ``frame=``, or with a frame it does not have."""


# pydicom's validation warnings quote header values ("Invalid value for VR UI: '1.2.3.abc'"), which may
# be identifiers: quoted text in its log records and in the warnings our readers pass on is withheld
@dataclass
class DicomMeta:
    """What models and reports need from a DICOM header; never a patient's name, ID or birth date.

    ``valid`` is [H, W] bool (False on Pixel Padding Value) after a pixel read, None after a header read.
    ``window`` is the (center, width) applied in modality units, None when a VOI LUT was applied.
    ``window_source`` is "header[i]", "voi_lut", "explicit" or "percentile".
    """

    path: str
    modality: str | None = None
    view_position: str | None = None
    pixel_spacing: tuple[float, float] | None = None  # (row, col) mm; ImagerPixelSpacing if no PixelSpacing
    photometric: str | None = None
    transfer_syntax: str | None = None  # name, e.g. "JPEG 2000 Image Compression"
    transfer_syntax_uid: str | None = None
    window: tuple[float, float] | None = None
    window_source: str | None = None
    bits_allocated: int | None = None
    bits_stored: int | None = None
    pixel_representation: int | None = None  # 0 unsigned, 1 signed
    samples_per_pixel: int = 1
    rows: int | None = None
    cols: int | None = None
    number_of_frames: int = 1
    frame: int | None = None
    sop_class: str | None = None  # name, e.g. "Computed Radiography Image Storage"
    body_part: str | None = None
    patient_hash: str | None = None
    study_hash: str | None = None
    has_pixels: bool = True
    valid: np.ndarray | None = field(default=None, repr=False)
    kind: str = "dicom"


def hash_identifier(value: Any) -> str | None:
    """Keyed hash of an identifier (``resnet_apps.io.identity.keyed_hash``), 16 hex chars; None when empty.

    The key is the machine's secret (``RESNET_APPS_HASH_KEY`` or the key file), so the same patient gets
    the same hash within a site (for group splits) without the ID ever being stored, and the hash of a
    patient ID here equals its hash as a group column value in an index CSV.
    """
    if value is None or str(value).strip() == "":
        return None
    return keyed_hash(str(value).strip())


def is_dicom_bytes(head: bytes) -> bool:
    """True for a Part 10 file ("DICM" at 128, whatever its preamble) or an ACR-NEMA stream (``io.sniff``)."""
    return sniff_bytes(head) == "dicom"


def _read_dataset(path: Path, stop_before_pixels: bool) -> Dataset:
    """dcmread with force (ACR-NEMA files), and a transfer syntax filled in where the file has none."""
    if not path.is_file():
        raise DicomError(f"{path}: no such file; fix: check the path")
    try:
        # elements over 64 KiB (the pixel data) are read on first access, after the pixel budget check
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels, defer_size="64 KB")
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, OverflowError) as error:
        raise DicomError(f"{path}: not a readable DICOM file ({type(error).__name__}: {error})") from error
    if len(ds) == 0:
        raise DicomError(f"{path}: no DICOM elements could be read; fix: check it is a DICOM file")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # Old ACR-NEMA stream: pydicom guessed the encoding while parsing; record it as a syntax.
        implicit, little = getattr(ds, "original_encoding", (True, True))
        syntax = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
        ds.file_meta = meta if meta is not None else FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0:  # the WG04 files carry 0\0, which means "unknown"
            return (row, col)
    return None


def _str(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value).strip() or None if value is not None else None


def _meta_from_header(ds: Dataset, path: Path) -> DicomMeta:
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    sop = ds.get("SOPClassUID")
    return DicomMeta(
        path=str(path),
        modality=_str(ds, "Modality"),
        view_position=_str(ds, "ViewPosition"),
        pixel_spacing=_spacing(ds),
        photometric=_str(ds, "PhotometricInterpretation"),
        transfer_syntax=syntax.name if syntax.is_transfer_syntax else str(syntax),
        transfer_syntax_uid=str(syntax),
        bits_allocated=int(ds.BitsAllocated) if "BitsAllocated" in ds else None,
        bits_stored=int(ds.BitsStored) if "BitsStored" in ds else None,
        pixel_representation=int(ds.PixelRepresentation) if "PixelRepresentation" in ds else None,
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
        rows=int(ds.Rows) if "Rows" in ds else None,
        cols=int(ds.Columns) if "Columns" in ds else None,
        number_of_frames=int(ds.get("NumberOfFrames", 1) or 1),
        sop_class=UID(str(sop)).name if sop else None,
        body_part=_str(ds, "BodyPartExamined"),
        patient_hash=hash_identifier(ds.get("PatientID")),
        study_hash=hash_identifier(ds.get("StudyInstanceUID")),
        has_pixels=any(tag in ds for tag in _PIXEL_TAGS),
    )


def read_dicom_header(path: str | os.PathLike[str]) -> DicomMeta:
    """Header-only metadata (no pixel decode): for grouping by ``patient_hash`` and for ``inspect``."""
    path = Path(path)
    with redacted_warnings(path):
        return _meta_from_header(_read_dataset(path, stop_before_pixels=True), path)


def _padding_mask(ds: Dataset, stored: np.ndarray) -> np.ndarray | None:
    """[H, W] True where the stored value is Pixel Padding Value (or within its range limit)."""
    if "PixelPaddingValue" not in ds:
        return None
    first = int(ds.PixelPaddingValue)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return stored == first
    low, high = sorted((first, int(limit)))
    return (stored >= low) & (stored <= high)


def _to_grey(arr: np.ndarray, path: Path, photometric: str) -> np.ndarray:
    warnings.warn(
        f"{path}: colour DICOM ({photometric}) converted to grey with ITU-R BT.601 luma weights",
        UserWarning,
        stacklevel=3,
    )
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return arr.astype(np.float32) @ weights


def resolve_frame(frame: FrameArg, frames: int, path: str | os.PathLike[str]) -> int | None:
    """The 0-based frame to decode: an index, or a policy "first" / "middle" / "last"; None if single-frame.

    Raises:
        FrameRequiredError: a multi-frame file without a frame, a frame out of range or an unknown policy.
    """
    how = (
        "pick one with data.dicom_frame in the recipe or --frame on predict / inspect: "
        f"an index 0..{frames - 1} or first / middle / last"
    )
    if isinstance(frame, str) and not frame.lstrip("-").isdigit():
        if frame not in FRAME_POLICIES:
            raise FrameRequiredError(f"{path}: frame {frame!r} is neither an index nor a policy; {how}")
        if frames <= 1:
            return None
        return {"first": 0, "middle": frames // 2, "last": frames - 1}[frame]
    index = None if frame is None else int(frame)
    if frames > 1:
        if index is None:
            raise FrameRequiredError(f"{path}: a multi-frame file ({frames} frames); {how}")
        if not 0 <= index < frames:
            raise FrameRequiredError(
                f"{path}: frame {index} asked but the file has {frames} frames (0..{frames - 1}); {how}"
            )
        return index
    if index not in (None, 0):
        raise FrameRequiredError(
            f"{path}: frame {index} asked of a single-frame file; fix: drop data.dicom_frame / --frame "
            "or use first"
        )
    return None


def read_dicom(
    path: str | os.PathLike[str],
    window: WindowArg = None,
    frame: FrameArg = None,
    *,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, DicomMeta]:
    """Read one DICOM image as display values, 0 black and 1 white, as a viewer shows it.

    Args:
        path: a DICOM Part 10 file or a raw ACR-NEMA stream (read as implicit VR little endian).
        window: None (the header's first window, else its VOI LUT, else a 0.5-99.5 percentile
            window), an int index of the header's windows, ``"voi_lut"``, ``"percentile"`` or an
            explicit ``(center, width)`` in modality units (after Rescale Slope/Intercept).
        frame: 0-based frame of a multi-frame file, or a policy "first" / "middle" / "last" (required
            there; a policy or 0 is accepted for a single-frame file).
        max_pixels: pixel budget in values, Rows x Columns x frames x samples from the header, checked
            before the pixel data is read (``io.budget``; None: the default).

    Returns:
        image [H, W] float32 in [0, 1] (H = Rows, W = Columns), and its ``DicomMeta`` whose
        ``valid`` [H, W] is False on padding pixels (set to 0).

    Raises:
        NoPixelDataError: an object without an image (SR, presentation state, ...).
        FrameRequiredError: a multi-frame file without ``frame=`` or with a frame out of range.
        PixelBudgetError: the header claims more than ``max_pixels`` values.
        MissingCodecError: no installed decoder for the transfer syntax (names the package).
        UnsupportedSyntaxError: no decoder exists for the syntax (says how to convert).
        DicomError: unreadable, truncated or inconsistent file.
    """
    path = Path(path)
    with redacted_warnings(path):
        return _read_dicom(path, window, frame, max_pixels)


def _read_dicom(
    path: Path, window: WindowArg, frame: FrameArg, max_pixels: int | None
) -> tuple[np.ndarray, DicomMeta]:
    ds = _read_dataset(path, stop_before_pixels=False)
    meta = _meta_from_header(ds, path)
    if not meta.has_pixels:
        raise NoPixelDataError(
            f"{path}: no pixel data (SOP class {meta.sop_class or 'unknown'}, modality "
            f"{meta.modality or 'unknown'}); it is not an image; fix: leave it out of image folders"
        )
    meta.frame = resolve_frame(frame, meta.number_of_frames, path)
    check_pixels(
        path,
        meta.rows or 0,
        meta.cols or 0,
        meta.samples_per_pixel,
        frames=meta.number_of_frames,
        max_pixels=max_pixels,
    )

    stored = decode_pixels(path, ds, meta.frame)
    photometric = (meta.photometric or "MONOCHROME2").upper()
    colour = stored.ndim == 3 or photometric.startswith("PALETTE")
    if photometric.startswith("PALETTE"):
        # indices -> RGB through the file's palette (rare in radiographs), then grey like RGB
        try:
            stored = apply_color_lut(stored, ds)
        except (ValueError, KeyError, AttributeError) as error:
            raise DicomError(
                f"{path}: PALETTE COLOR lookup failed ({error}); fix: re-export as grey"
            ) from error
    if stored.ndim == 3:
        # pixel_array already converted YBR to RGB
        stored = _to_grey(stored, path, photometric)
    if stored.shape != (meta.rows, meta.cols):
        raise DicomError(
            f"{path}: decoded {stored.shape} but Rows x Columns is {meta.rows} x {meta.cols}; the file is "
            "inconsistent; fix: re-export it"
        )
    padding = _padding_mask(ds, stored) if stored.dtype.kind in "ui" else None
    valid = ~padding if padding is not None else np.ones_like(stored, dtype=bool)

    if not colour:
        try:
            values = apply_modality_lut(stored, ds)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise DicomError(
                f"{path}: modality LUT (Rescale Slope/Intercept or Modality LUT Sequence) cannot be "
                f"applied ({error}); fix: correct the header (LUT entries are 8 or 16 bits)"
            ) from error
    else:
        values = stored  # colour: no modality LUT applies (PS3.3 C.11.1)
    display, meta.window, meta.window_source = apply_voi_choice(
        values, ds, window, valid if padding is not None else None, str(path)
    )
    if photometric == "MONOCHROME1":
        display = 1.0 - display  # after VOI, per PS3.3 C.7.6.3.1.2: low values are white
    display = np.clip(display, 0.0, 1.0).astype(np.float32, copy=False)
    if padding is not None:
        display[padding] = 0.0
    meta.valid = valid
    return display, meta
