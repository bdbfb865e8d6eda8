"""The project's one file-type sniffer (no torch): every reader, lister and ``inspect`` asks it.

A DICOM Part 10 file may start with any 128-byte preamble, including a TIFF header (dual-personality
files written by some PACS and by ``pydicom``'s ``preamble=`` users), so the ``DICM`` magic at offset
128 is tested first and wins; only then the PNG/JPEG/TIFF magics; ACR-NEMA streams (no preamble) last.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from resnet_apps.errors import ImageReadError

Format = Literal["dicom", "tiff", "png", "jpeg", "unknown"]

# suffixes listed without opening the file; anything else (PACS exports with no suffix) is sniffed
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
HEAD_BYTES = 132


def _is_acr_nema(head: bytes) -> bool:
    """An old ACR-NEMA stream: first tag in group 0008/0002, then a VR or a small implicit length."""
    if len(head) < 8 or int.from_bytes(head[0:2], "little") not in (0x0008, 0x0002):
        return False
    vr = head[4:6]
    return (vr.isalpha() and vr.isupper()) or int.from_bytes(head[4:8], "little") < 0x10000


def sniff_bytes(head: bytes) -> Format:
    """The format of a file from its first 132 bytes; ``DICM`` at offset 128 wins over any preamble."""
    if len(head) >= HEAD_BYTES and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head[:4] in _TIFF_MAGIC:
        return "tiff"
    if _is_acr_nema(head):
        return "dicom"
    return "unknown"


def sniff_format(path: str | os.PathLike[str]) -> Format:
    """ "dicom", "tiff", "png", "jpeg" or "unknown", from the first 132 bytes of the file.

    Raises:
        ImageReadError: the file cannot be opened.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as error:
        raise ImageReadError(
            f"{path}: cannot be opened ({error}); fix: check the path and permissions"
        ) from error
    return sniff_bytes(head)


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """DICOM by content; a ``.dcm`` file whose content is not recognised still counts (its reader says why)."""
    try:
        fmt = sniff_format(path)
    except ImageReadError:
        return False
    return fmt == "dicom" or (fmt == "unknown" and Path(path).suffix.lower() in DICOM_SUFFIXES)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """A file to list as an image: a known suffix, or no/another suffix and a recognised magic.

    Files with a known non-image suffix (``.csv``, ``.json``, ``.txt``, ...) are never opened.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix and not suffix[1:].isdigit():
        # "1.2.840.113619.2.55.3" (a UID file name) has a numeric "suffix": sniff it; ".csv" etc. never
        return False
    try:
        return sniff_format(path) != "unknown"
    except ImageReadError:
        return False
