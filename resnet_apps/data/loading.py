"""Pixels of one record: read (``resnet_apps.io``), scale, mark invalid pixels, resize, decode the mask.

This is the pre-augmentation, pre-normalisation half of a sample: exactly what :mod:`cache` stores.
:class:`~resnet_apps.data.preprocessing.Preprocessing` says how.
No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data.masks import MaskDecoder
from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.data.records import Record
from resnet_apps.errors import DatasetError, MaskMismatchError, NoValidPixelsError
from resnet_apps.io.bands import select_bands
from resnet_apps.io.dicom import DicomMeta
from resnet_apps.io.image import band_names_of
from resnet_apps.io.sniff import is_dicom_file


def size_hw(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``64`` -> (64, 64); ``(H, W)`` kept; None -> None."""
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)


def is_dicom_path(path: Path) -> bool:
    """DICOM by content (``io.sniff``: "DICM" at offset 128 wins over a TIFF-looking preamble)."""
    return is_dicom_file(path)


def read_pixels(
    record: Record, root: Path, prep: Preprocessing
) -> tuple[np.ndarray, np.ndarray | None, DicomMeta | None]:
    """Raw pixels of a record through ``resnet_apps.io``.

    Returns:
        (image [C, H, W] native dtype or float32, valid [H, W] bool or None, the DICOM meta or None).
    """
    import resnet_apps.io as rio  # looked up at call time, so tests can count read_dicom calls
    from resnet_apps.data.npz import npz_image, npz_member

    member = npz_member(record.path)
    if member is not None:
        return npz_image(root / member[0], member[1], member[2]), None, None
    path = root / record.path
    if record.band_paths:
        names = list(record.band_names or ())
        files = [root / p for p in record.band_paths]
        if prep.bands is not None:
            files = [files[i] for i in select_bands(prep.bands, names, str(path))]
        image, geo = rio.read_geotiff(files, max_pixels=prep.max_pixels)
        return image, geo.valid, None
    if is_dicom_path(path):
        pixels, dicom = rio.read_dicom(
            path, window=prep.dicom_window, frame=prep.dicom_frame, max_pixels=prep.max_pixels
        )
        return pixels[None].astype(np.float32, copy=False), dicom.valid, dicom
    image, meta = rio.read_image(
        path,
        bands=list(prep.bands) if prep.bands is not None else None,
        dicom_frame=prep.dicom_frame,
        max_pixels=prep.max_pixels,
    )
    return image, meta.valid, meta if isinstance(meta, DicomMeta) else None


def read_band_names(record: Record, root: Path, prep: Preprocessing) -> list[str]:
    """Names of the bands ``prep`` selects from a record, as the reader names them (``bandN``, ``B04``, ...).

    These names, not the recipe's numbers, go into the checkpoint: ``predict`` selects by them, and a
    generic ``band3`` means band number 3 there as here (``io.bands.select_bands``).
    """
    import resnet_apps.io as rio

    if prep.grayscale:
        return ["gray"]
    from resnet_apps.data.npz import npz_member

    if npz_member(record.path) is not None:
        c = read_pixels(record, root, prep)[0].shape[0]
        return (
            ["gray"] if c == 1 else ["red", "green", "blue"] if c == 3 else [f"band{i + 1}" for i in range(c)]
        )
    if record.band_paths:
        names = list(record.band_names or ())
        return [names[i] for i in select_bands(prep.bands, names, str(root / record.path))]
    bands = list(prep.bands) if prep.bands is not None else None
    _, meta = rio.read_image(
        root / record.path,
        bands=bands,
        window=(0, 0, 1, 1),
        dicom_window=prep.dicom_window,
        dicom_frame=prep.dicom_frame,
        max_pixels=prep.max_pixels,
    )
    return list(band_names_of(meta))


def load_arrays(
    record: Record,
    root: Path,
    prep: Preprocessing,
    decoder: MaskDecoder | None,
    facts: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Decoded, scaled, resized arrays of one record (pre-augmentation, pre-normalisation).

    ``facts``, when given, receives what prediction reports per DICOM file: ``modality``, ``body_part``,
    ``window`` (center, width) and ``window_source`` (kept out of the arrays so that the cache stays arrays).

    Returns:
        ``image`` [C, H, W] float32 (0 where invalid), ``valid`` [H, W] bool and, for pairs,
        ``mask`` [H, W] uint8 (class index, ``IGNORE_INDEX`` where unlabelled or invalid).

    Raises:
        NoValidPixelsError: every pixel is nodata / NaN / padding.
        MaskMismatchError: mask and image sizes differ.
    """
    raw, read_valid, dicom = read_pixels(record, root, prep)
    if facts is not None and dicom is not None:
        facts.update(
            modality=dicom.modality,
            body_part=dicom.body_part,
            window=dicom.window,
            window_source=dicom.window_source,
        )
    target = size_hw(prep.image_size)
    if target is not None and target != raw.shape[1:] and not (prep.grayscale and raw.shape[0] == 3):
        # one float32 copy, laid out channels-last as the resize wants it ([C, H, W] is a view of it):
        # a 12000 x 12000 RGB film costs one 1.7 GB float copy, not two
        hwc = np.empty((*raw.shape[1:], raw.shape[0]), dtype=np.float32)
        hwc[...] = raw.transpose(1, 2, 0)
        image = hwc.transpose(2, 0, 1)
    else:
        image = raw.astype(np.float32)
    integer = raw.dtype.kind in "uib"
    del raw  # the native copy is not needed any more
    if dicom is None and prep.scale != 1.0:
        image *= np.float32(prep.scale)
    if prep.grayscale and image.shape[0] == 3:
        image = image.mean(axis=0, keepdims=True)
    # integer pixels are always finite: skip a full-size boolean pass over them
    finite = np.ones(image.shape[1:], dtype=bool) if integer else np.isfinite(image).all(axis=0)
    valid = np.asarray(finite if read_valid is None else (np.asarray(read_valid, dtype=bool) & finite))
    where = root / record.path
    if not valid.any():
        raise NoValidPixelsError(
            f"{where}: no valid pixel (all nodata{', NaN' if not finite.any() else ''}); remove the file "
            "from the dataset or set data.on_error: skip"
        )
    image[:, ~valid] = 0.0  # NaN/nodata must not bleed into neighbours through interpolation
    arrays: dict[str, np.ndarray] = {"image": image, "valid": valid}
    if record.mask_path is not None:
        if decoder is None:
            raise DatasetError(
                f"{where}: record has a mask but the dataset has no mask decoder (source kind pairs)"
            )
        mask = decoder.read(root / record.mask_path)
        if mask.shape != image.shape[1:]:
            raise MaskMismatchError(
                f"{root / record.mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} but its image {where} "
                f"is {image.shape[1]}x{image.shape[2]} (H x W); fix the pairing in the index, or export "
                "the mask "
                "at the image's size (nearest-neighbour)"
            )
        mask[~valid] = IGNORE_INDEX
        arrays["mask"] = mask.astype(np.uint8)
    if target is not None and target != image.shape[1:]:
        arrays = resize_arrays(arrays, target)
    return arrays


def resize_arrays(arrays: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Resize image (area when shrinking, bilinear when enlarging) and masks (nearest) to (H, W)."""
    import albumentations as A
    import cv2

    image = arrays["image"]
    shrink = size[0] * size[1] < image.shape[1] * image.shape[2]
    resize = A.Resize(
        size[0],
        size[1],
        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
        mask_interpolation=cv2.INTER_NEAREST,
        p=1.0,
    )
    masks = [arrays["valid"].astype(np.uint8)] + ([arrays["mask"]] if "mask" in arrays else [])
    out = resize(image=np.ascontiguousarray(image.transpose(1, 2, 0)), masks=masks)
    resized = {
        "image": np.ascontiguousarray(np.atleast_3d(out["image"]).transpose(2, 0, 1)),
        "valid": np.asarray(out["masks"][0]).astype(bool),
    }
    if "mask" in arrays:
        resized["mask"] = np.asarray(out["masks"][1]).astype(np.uint8)
    resized["image"][:, ~resized["valid"]] = 0.0
    return resized
