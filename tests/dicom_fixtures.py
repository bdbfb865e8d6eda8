"""Tiny real DICOM files written with pydicom, for tests of every layer that reads DICOM.

``make_dicom(path, pixels, ...)`` writes a Part 10 file (explicit VR little endian, uncompressed)
with exactly the attributes asked for, so a test can hand-compute what ``read_dicom`` must return.
Other engineers' tests may import it: ``from tests.dicom_fixtures import make_dicom`` (or
``from dicom_fixtures import make_dicom`` with ``tests/`` on the path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

# Fixed UIDs so repeated calls give the same study hash (and tests can check grouping).
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.2"


def make_dicom(
    path: str | Path,
    pixels: np.ndarray | None = None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
    voi_function: str | None = None,
    voi_lut: tuple[Sequence[int], np.ndarray] | None = None,
    modality_lut: tuple[Sequence[int], np.ndarray] | None = None,
    padding: int | None = None,
    frames: int | None = None,
    rgb: bool = False,
    signed: bool = False,
    patient_name: str = "Doe^Jane",
    patient_id: str = "PID-0001",
    birth_date: str = "19700101",
    study_uid: str = STUDY_UID,
    modality: str = "CR",
    view_position: str | None = "PA",
    pixel_spacing: tuple[float, float] | None = (0.2, 0.2),
    no_pixels: bool = False,
) -> Path:
    """Write one DICOM file and return its path.

    Args:
        path: where to write.
        pixels: stored values: [H, W] (grey), [F, H, W] (multi-frame, with ``frames``), [H, W, 3]
            (``rgb``). Default: a 4x5 ramp 0..19 (uint16). Dtype follows ``signed`` / ``rgb``.
        photometric: MONOCHROME1 / MONOCHROME2 (grey); RGB when ``rgb``.
        bits_stored: BitsStored (default: the container's bits, 8 for rgb).
        slope, intercept: RescaleSlope / RescaleIntercept (written only when given).
        window: one (center, width) or several.
        voi_function: VOILUTFunction (LINEAR, LINEAR_EXACT, SIGMOID).
        voi_lut: (LUTDescriptor [entries, first mapped, bits], LUTData) for a VOI LUT Sequence.
        modality_lut: the same for a Modality LUT Sequence (instead of slope/intercept).
        padding: PixelPaddingValue.
        frames: NumberOfFrames (pixels must then be [F, H, W]).
        rgb: write an RGB image (SamplesPerPixel 3, 8 bit).
        signed: PixelRepresentation 1 (int16 container).
        patient_name, patient_id, birth_date: planted identifiers (tests check they never leak).
        no_pixels: write a header without Pixel Data (like a structured report).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if pixels is None:
        pixels = np.arange(20, dtype=np.uint16).reshape(4, 5)
    if rgb:
        pixels = np.asarray(pixels, dtype=np.uint8)
    elif signed:
        pixels = np.asarray(pixels, dtype=np.int16)
    elif pixels.dtype != np.uint8:
        pixels = np.asarray(pixels, dtype=np.uint16)

    meta = FileMetaDataset()
    sop_class = SecondaryCaptureImageStorage if no_pixels else ComputedRadiographyImageStorage
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = SERIES_UID
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    if view_position:
        ds.ViewPosition = view_position
    if pixel_spacing:
        ds.PixelSpacing = [f"{pixel_spacing[0]:g}", f"{pixel_spacing[1]:g}"]
    if no_pixels:
        ds.save_as(path, enforce_file_format=True)
        return path

    container = pixels.dtype.itemsize * 8
    if frames is not None:
        assert pixels.ndim == 3 and pixels.shape[0] == frames, "pixels must be [F, H, W] with frames"
        ds.NumberOfFrames = frames
        rows, cols = pixels.shape[1:3]
    else:
        rows, cols = pixels.shape[:2]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else photometric
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = container
    ds.BitsStored = bits_stored or container
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None or intercept is not None:
        ds.RescaleSlope = f"{slope if slope is not None else 1:g}"
        ds.RescaleIntercept = f"{intercept if intercept is not None else 0:g}"
    if window is not None:
        pairs = [window] if isinstance(window[0], (int, float)) else list(window)  # type: ignore[index]
        ds.WindowCenter = [f"{c:g}" for c, _ in pairs] if len(pairs) > 1 else f"{pairs[0][0]:g}"  # type: ignore[index]
        ds.WindowWidth = [f"{w:g}" for _, w in pairs] if len(pairs) > 1 else f"{pairs[0][1]:g}"  # type: ignore[index]
    if voi_function:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        item = Dataset()
        # both tags have ambiguous VRs ("US or SS", "US or OW"): state US explicitly
        item.add_new(0x00283002, "US", [int(v) for v in voi_lut[0]])  # LUTDescriptor
        item.add_new(0x00283006, "US", [int(v) for v in np.asarray(voi_lut[1]).ravel()])  # LUTData
        ds.VOILUTSequence = DicomSequence([item])
    if modality_lut is not None:
        item = Dataset()
        item.add_new(0x00283002, "US", [int(v) for v in modality_lut[0]])  # LUTDescriptor
        item.ModalityLUTType = "US"  # unspecified units
        item.add_new(0x00283006, "US", [int(v) for v in np.asarray(modality_lut[1]).ravel()])  # LUTData
        ds.ModalityLUTSequence = DicomSequence([item])
    if padding is not None:
        ds.PixelPaddingValue = int(padding)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    # US/SS tags must agree with PixelRepresentation; pydicom picks the VR from it on write
    ds.save_as(path, enforce_file_format=True)
    return path


def make_acr_nema(path: str | Path, pixels: np.ndarray) -> Path:
    """Write a raw implicit-VR-little-endian dataset without preamble or file meta (old ACR-NEMA style)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    ds.Modality = "CR"
    ds.StudyInstanceUID = STUDY_UID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = np.asarray(pixels, dtype=np.uint16).tobytes()
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    Path(path).write_bytes(buffer.getvalue())
    return Path(path)
