"""DICOM faults: syntaxes nothing decodes, multi-frame policies, redacted warnings, clean inspect text."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_fixtures import make_dicom

from resnet_apps.errors import UnsupportedSyntaxError
from resnet_apps.io import FrameRequiredError, read_dicom, read_image
from resnet_apps.io.dicom import resolve_frame
from resnet_apps.io.dicom_decode import installed_plugins
from resnet_apps.io.inspect import clean_text, format_summary, inspect_file

RAMP = np.arange(20, dtype=np.uint16).reshape(4, 5)


MPEG2 = "1.2.840.10008.1.2.4.100"


def with_syntax(path: Path, uid: str) -> Path:
    """Relabel a file's transfer syntax, its (native) pixel bytes encapsulated as one fragment.

    pydicom writes only syntaxes it knows, so the file is written as MPEG2 and the UID bytes are then
    swapped for ``uid`` (of the same length, 23 characters, so no length field changes).
    """
    from pydicom.encaps import encapsulate

    assert len(uid) == len(MPEG2)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = MPEG2
    ds.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    assert raw.count(MPEG2.encode() + b"\x00") == 1
    path.write_bytes(raw.replace(MPEG2.encode() + b"\x00", uid.encode() + b"\x00"))
    return path


@pytest.mark.parametrize(
    ("uid", "name"),
    [
        ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"),  # video: no decoder exists
        ("1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.110"),  # JPEG XL (unknown to this pydicom)
        ("1.2.826.0.1.3680043.9.1", "private or unknown"),  # a vendor's private syntax
    ],
)
def test_undecodable_syntax_says_convert_not_install(tmp_path: Path, uid: str, name: str) -> None:
    path = make_dicom(tmp_path / "x.dcm", RAMP, window=(10, 20))
    with_syntax(path, uid)
    with pytest.raises(UnsupportedSyntaxError) as caught:
        read_dicom(path)
    text = str(caught.value)
    assert "x.dcm" in text and name in text and uid in text and "no pixel decoder" in text
    assert "pip install" not in text  # installing does not help, and these plugins are installed
    assert "gdcmconv --raw" in text and "dcmconv" in text
    for plugin in installed_plugins():
        assert plugin in text  # names what is installed, so the user does not reinstall it


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("first", 0),
        ("middle", 2),
        ("last", 4),
        (3, 3),
        ("3", 3),  # from a CLI or an override as text
    ],
)
def test_frame_policies(frame: int | str, expected: int) -> None:
    assert resolve_frame(frame, 5, "f.dcm") == expected


def test_frame_errors_name_options_that_exist(tmp_path: Path) -> None:
    stack = np.stack([RAMP + 10 * k for k in range(3)])
    path = make_dicom(tmp_path / "mf.dcm", stack, frames=3, window=(20, 40))
    for bad, pattern in [
        (None, r"mf.dcm: a multi-frame file \(3 frames\); pick one with data.dicom_frame"),
        (7, "frame 7 asked but the file has 3 frames"),
        ("centre", "'centre' is neither an index nor a policy"),
    ]:
        with pytest.raises(FrameRequiredError, match=pattern) as caught:
            read_dicom(path, frame=bad)
        assert "--frame" in str(caught.value) and "first / middle / last" in str(caught.value)
    image, meta = read_dicom(path, frame="middle")
    assert meta.frame == 1
    np.testing.assert_array_equal(read_image(path, dicom_frame="last")[1].frame, 2)
    # single-frame files accept a policy (a recipe may hold one for a mixed folder)
    single = make_dicom(tmp_path / "one.dcm", RAMP, window=(10, 20))
    assert read_dicom(single, frame="middle")[1].frame is None


def test_pydicom_warnings_do_not_print_header_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "1.2.3.PATIENT9876"  # an invalid UID (letters) that pydicom's validation would quote
    path = make_dicom(tmp_path / "uid.dcm", RAMP, window=(10, 20))
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.save_as(path)
    raw = path.read_bytes().replace(b"1.2.840.10008.5.1.4.1.1.1\x00", secret.encode() + b"\x00" * 9)
    path.write_bytes(raw)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_dicom(path)
        inspect_file(path)
    texts = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert any("Invalid value" in t for t in texts), texts  # the warning still says what is wrong
    assert all(secret not in t and "PATIENT" not in t for t in texts), texts


def test_inspect_strips_control_characters(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "esc.dcm", RAMP, window=(10, 20))
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own warning about the value (this test writes it)
        ds.BodyPartExamined = "CHEST\x1b[2J\x1b]0;pwned\x07"  # clear screen + set terminal title
        ds.save_as(path)
    info = inspect_file(path)
    assert info["body_part"] == "CHEST[2J]0;pwned"
    assert "\x1b" not in format_summary(info) and "\x07" not in format_summary(info)
    assert clean_text("a\nb\u202ec\td") == "abcd"  # newlines, bidi override, tabs removed
