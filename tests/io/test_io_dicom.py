"""read_dicom: the standard's order on generated fixtures with hand-computed values, and real files."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_fixtures import make_acr_nema, make_dicom

from resnet_apps.errors import DicomError, MissingCodecError, NoPixelDataError
from resnet_apps.io import FrameRequiredError, hash_identifier, read_dicom, read_dicom_header
from resnet_apps.io.dicom import is_dicom_bytes

RAMP = np.arange(20, dtype=np.uint16).reshape(4, 5)  # stored values 0..19, rows=4 (H), cols=5 (W)


def linear_exact(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.3.2 LINEAR_EXACT, scaled to [0, 1]."""
    return np.clip((x - center) / width + 0.5, 0.0, 1.0)


def linear(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR (the default), scaled to [0, 1]."""
    out = ((x - (center - 0.5)) / (width - 1) + 0.5).astype(np.float64)
    out[x <= center - 0.5 - (width - 1) / 2] = 0.0
    out[x > center - 0.5 + (width - 1) / 2] = 1.0
    return out


@pytest.mark.subprocess
def test_torch_never_imported_by_io() -> None:
    code = "import resnet_apps.io, sys; assert 'torch' not in sys.modules, 'io imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- header window, modality LUT, photometric ---------------------------------------------------


def test_header_window_linear_rows_are_h(tmp_path: Path) -> None:
    # window (10, 11) LINEAR: hand formula; shape stays rows x cols = 4 x 5
    image, meta = read_dicom(make_dicom(tmp_path / "a.dcm", RAMP, window=(10, 11)))
    assert image.shape == (4, 5) and image.dtype == np.float32
    np.testing.assert_allclose(image, linear(RAMP.astype(float), 10, 11), atol=1e-6)
    assert meta.window == (10.0, 11.0) and meta.window_source == "header[0]"
    assert (meta.rows, meta.cols) == (4, 5) and meta.photometric == "MONOCHROME2"
    assert image[0, 0] == 0.0 and image[3, 4] == 1.0  # 0 -> black, 19 -> white


def test_monochrome1_is_exact_inverse_after_voi(tmp_path: Path) -> None:
    # same stored values and window: MONOCHROME1 == 1 - MONOCHROME2, pixel by pixel
    m2, _ = read_dicom(make_dicom(tmp_path / "m2.dcm", RAMP, window=(10, 11)))
    m1, meta = read_dicom(make_dicom(tmp_path / "m1.dcm", RAMP, window=(10, 11), photometric="MONOCHROME1"))
    np.testing.assert_array_equal(m1, 1.0 - m2)
    assert meta.photometric == "MONOCHROME1" and m1[0, 0] == 1.0  # low stored value = white in MONOCHROME1


def test_slope_intercept_applied_before_window(tmp_path: Path) -> None:
    # modality values 2*p - 10 span -10..28; LINEAR_EXACT window (9, 38) maps them onto [0, 1]
    path = make_dicom(
        tmp_path / "s.dcm", RAMP, slope=2, intercept=-10, window=(9, 38), voi_function="LINEAR_EXACT"
    )
    image, _ = read_dicom(path)
    expected = linear_exact(2.0 * RAMP - 10.0, 9, 38)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert image[0, 0] == 0.0 and image[3, 4] == 1.0
    # stored 9 -> 8 and stored 10 -> 10 in modality units straddle the centre 9
    assert image.flat[9] < 0.5 < image.flat[10]


def test_modality_lut_sequence_before_window(tmp_path: Path) -> None:
    # LUT maps stored p to 100 + p * p (16-bit entries, as PS3.3 C.11.1.1 requires);
    # LINEAR_EXACT (200, 400) then windows those values
    lut = 100 + np.arange(20) ** 2
    path = make_dicom(
        tmp_path / "mlut.dcm",
        RAMP,
        modality_lut=([20, 0, 16], lut),
        window=(200, 400),
        voi_function="LINEAR_EXACT",
    )
    image, _ = read_dicom(path)
    np.testing.assert_allclose(image, linear_exact(100.0 + RAMP.astype(float) ** 2, 200, 400), atol=1e-6)


def test_explicit_window_and_header_choice(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "w.dcm", RAMP, window=[(10, 11), (5, 4)], voi_function="LINEAR_EXACT")
    first, meta0 = read_dicom(path)
    second, meta1 = read_dicom(path, window=1)
    explicit, meta2 = read_dicom(path, window=(0, 40))
    np.testing.assert_allclose(first, linear_exact(RAMP.astype(float), 10, 11), atol=1e-6)
    np.testing.assert_allclose(second, linear_exact(RAMP.astype(float), 5, 4), atol=1e-6)
    np.testing.assert_allclose(explicit, linear_exact(RAMP.astype(float), 0, 40), atol=1e-6)
    assert (meta0.window_source, meta1.window_source, meta2.window_source) == (
        "header[0]",
        "header[1]",
        "explicit",
    )
    with pytest.raises(DicomError, match="window index 2"):
        read_dicom(path, window=2)


def test_percentile_window_when_no_header_window(tmp_path: Path) -> None:
    # no window, no VOI LUT: 0.5 / 99.5 percentiles of 0..19 are 0.095 and 18.905
    image, meta = read_dicom(make_dicom(tmp_path / "p.dcm", RAMP))
    assert meta.window_source == "percentile"
    center, width = meta.window
    assert center == pytest.approx(9.5) and width == pytest.approx(18.81)
    np.testing.assert_allclose(image, linear_exact(RAMP.astype(float), 9.5, 18.81), atol=1e-5)


def test_voi_lut_sequence(tmp_path: Path) -> None:
    # 20-entry LUT, first mapped value 0, 8 bits: output = 10 * p / 255
    lut = np.arange(20) * 10
    image, meta = read_dicom(make_dicom(tmp_path / "l.dcm", RAMP, voi_lut=([20, 0, 8], lut)))
    assert meta.window_source == "voi_lut" and meta.window is None
    np.testing.assert_allclose(image, RAMP * 10 / 255.0, atol=1e-6)


def test_padding_masked_and_black_even_in_monochrome1(tmp_path: Path) -> None:
    pixels = RAMP.copy()
    pixels[0, :] = 1000  # a padded top row
    path = make_dicom(tmp_path / "pad.dcm", pixels, padding=1000, photometric="MONOCHROME1")
    image, meta = read_dicom(path)
    assert meta.valid is not None and not meta.valid[0].any() and meta.valid[1:].all()
    assert (image[0] == 0.0).all()
    # the percentile window ignored the padding: it spans the real 5..19, not up to 1000
    assert meta.window[0] - meta.window[1] / 2 < 6 and meta.window[0] + meta.window[1] / 2 < 20
    assert image[1, 0] == pytest.approx(1.0)  # lowest real value is white in MONOCHROME1


# --- frames, colour, signedness ----------------------------------------------------------------


def test_multi_frame_needs_frame_and_picks_it(tmp_path: Path) -> None:
    stack = np.stack([RAMP, RAMP + 100, RAMP + 200]).astype(np.uint16)
    path = make_dicom(tmp_path / "mf.dcm", stack, frames=3, window=(210, 40), voi_function="LINEAR_EXACT")
    with pytest.raises(FrameRequiredError, match="data.dicom_frame .* --frame .* 0..2"):
        read_dicom(path)
    image, meta = read_dicom(path, frame=2)
    np.testing.assert_allclose(image, linear_exact(RAMP + 200.0, 210, 40), atol=1e-6)
    assert meta.frame == 2 and meta.number_of_frames == 3
    with pytest.raises(FrameRequiredError, match="frame 3"):
        read_dicom(path, frame=3)


def test_rgb_converted_to_grey_with_warning(tmp_path: Path) -> None:
    # red, green, blue, white, black columns; LINEAR_EXACT (127.5, 255) maps luma y to y / 255
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]], dtype=np.uint8)
    pixels = np.broadcast_to(colours, (2, 5, 3)).copy()
    path = make_dicom(
        tmp_path / "rgb.dcm", pixels, rgb=True, window=(127.5, 255), voi_function="LINEAR_EXACT"
    )
    with pytest.warns(UserWarning, match="converted to grey"):
        image, meta = read_dicom(path)
    assert image.shape == (2, 5)
    np.testing.assert_allclose(image[0], [0.299, 0.587, 0.114, 1.0, 0.0], atol=1e-5)


def test_signed_pixels_and_bits_stored(tmp_path: Path) -> None:
    # signed 12-bit: -2048..2047; LINEAR_EXACT (0, 4096): x / 4096 + 0.5
    values = np.array([[-2048, -1, 0, 2047]], dtype=np.int16)
    image, meta = read_dicom(
        make_dicom(
            tmp_path / "s.dcm",
            values,
            signed=True,
            bits_stored=12,
            window=(0, 4096),
            voi_function="LINEAR_EXACT",
        )
    )
    assert meta.pixel_representation == 1 and meta.bits_stored == 12
    np.testing.assert_allclose(image[0], [0.0, 0.5 - 1 / 4096, 0.5, 0.5 + 2047 / 4096], atol=1e-6)
    # a writer that did not sign-extend: -1 as 12-bit 0x0FFF in the 16-bit container still reads as -1
    raw = np.array([[0x0800, 0x0FFF, 0, 0x07FF]], dtype=np.uint16).view(np.int16)
    image2, _ = read_dicom(
        make_dicom(
            tmp_path / "s2.dcm",
            raw,
            signed=True,
            bits_stored=12,
            window=(0, 4096),
            voi_function="LINEAR_EXACT",
        )
    )
    np.testing.assert_allclose(image2, image, atol=1e-6)


def test_unsigned_high_bits_beyond_bits_stored_are_dropped(tmp_path: Path) -> None:
    # 10 bits stored; bit 12 set (overlay junk) must not change the value
    clean = np.array([[0, 5, 512, 1023]], dtype=np.uint16)
    dirty = clean | np.uint16(1 << 12)
    kwargs = dict(bits_stored=10, window=(512, 1024), voi_function="LINEAR_EXACT")
    a, _ = read_dicom(make_dicom(tmp_path / "c.dcm", clean, **kwargs))
    b, _ = read_dicom(make_dicom(tmp_path / "d.dcm", dirty, **kwargs))
    np.testing.assert_array_equal(a, b)


def test_missing_codec_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a compressed file that every pydicom plugin refuses, and GDCM too: MissingCodecError with the hint
    import resnet_apps.io.dicom_decode as dicom_module

    path = make_dicom(tmp_path / "rle.dcm", RAMP, window=(10, 11))
    ds = pydicom.dcmread(path)
    ds.compress(pydicom.uid.RLELossless)
    ds.save_as(path)
    assert read_dicom(path)[0].shape == (4, 5)  # decodes with the installed plugins

    def refuse(*args: object, **kwargs: object) -> np.ndarray:
        raise RuntimeError("Unable to decode as exceptions were raised by all available plugins")

    def gdcm_fails(*args: object, **kwargs: object) -> np.ndarray:
        raise ValueError("Unsupported JPEG data precision 12")

    monkeypatch.setattr(dicom_module, "pixel_array", refuse)
    monkeypatch.setattr(dicom_module, "_decode_with_gdcm", gdcm_fails)
    with pytest.raises(MissingCodecError, match=r"rle.dcm.*RLE Lossless.*gdcmconv") as caught:
        read_dicom(path)
    # every plugin is installed here: the error must not ask to install what is installed
    assert "pip install" not in str(caught.value)
    assert "installed plugins (pylibjpeg" in str(caught.value)


# --- bad input ---------------------------------------------------------------------------------


def test_no_pixel_data_is_typed(tmp_path: Path) -> None:
    with pytest.raises(NoPixelDataError, match="no pixel data"):
        read_dicom(make_dicom(tmp_path / "sr.dcm", no_pixels=True))


def test_truncated_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    full = make_dicom(tmp_path / "full.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DicomError, match="truncated.dcm"):
        read_dicom(truncated)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DicomError, match="garbage.dcm"):
        read_dicom(garbage)
    with pytest.raises(DicomError, match="missing.dcm"):
        read_dicom(tmp_path / "missing.dcm")


# --- identifiers ---------------------------------------------------------------------------------


def test_identifiers_never_kept_only_keyed_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_dicom(
        tmp_path / "id.dcm", RAMP, patient_name="Secret^Name", patient_id="ID-777", birth_date="19450508"
    )
    _, meta = read_dicom(path)
    text = repr(dataclasses.asdict(meta))
    for planted in ("Secret", "ID-777", "19450508"):
        assert planted not in text
    fields = {f.name for f in dataclasses.fields(meta)}
    assert not fields & {"patient_name", "patient_id", "birth_date", "PatientName", "PatientID"}
    assert meta.patient_hash == hash_identifier("ID-777") and len(meta.patient_hash) == 16
    monkeypatch.setenv("RESNET_APPS_HASH_KEY", "another-site-key-0123456789")
    assert read_dicom_header(path).patient_hash != meta.patient_hash


# --- ACR-NEMA ------------------------------------------------------------------------------------


def test_generated_acr_nema_reads_as_implicit_little_endian(tmp_path: Path) -> None:
    path = make_acr_nema(tmp_path / "raw.dcm", np.arange(12, dtype=np.uint16).reshape(3, 4) * 100)
    assert is_dicom_bytes(path.read_bytes()[:132])
    image, meta = read_dicom(path, window=(550, 1100))
    assert meta.transfer_syntax == "Implicit VR Little Endian" and image.shape == (3, 4)
    assert np.all(np.diff(image.ravel()) >= 0) and image[0, 0] < image[2, 3]


# --- real files ------------------------------------------------------------------------------------


def _real(shared_data: Path, name: str) -> Path:
    return shared_data / "dicom_radiographs" / name


def test_every_real_dicom_decodes(shared_data: Path) -> None:
    files = sorted((shared_data / "dicom_radiographs").rglob("*.dcm"))
    assert len(files) >= 10
    syntaxes = set()
    for path in files:
        try:
            image, meta = read_dicom(path)
        except MissingCodecError as error:  # only acceptable for 12-bit JPEG, with the hint
            assert path.name == "RG3_JPLY.dcm" and "pip install" in str(error)
            continue
        assert image.shape == (meta.rows, meta.cols) and 0.0 <= image.min() < image.max() <= 1.0, path
        syntaxes.add(meta.transfer_syntax_uid)
    assert len(syntaxes) >= 7  # implicit, RLE, JPEG lossless, JPEG-LS x2, J2K x2 (+ JPEG extended)


def test_rg3_jply_12bit_jpeg_matches_lossless_version(shared_data: Path) -> None:
    # the same film as RG3_RLE, lossy 12-bit: display values agree within a few grey levels
    try:
        lossy, _ = read_dicom(_real(shared_data, "non_chest_codec_variants/RG3_JPLY.dcm"))
    except MissingCodecError as error:
        assert "python-gdcm" in str(error)
        pytest.skip("no 12-bit JPEG decoder installed (hint given)")
    lossless, _ = read_dicom(_real(shared_data, "non_chest_codec_variants/RG3_RLE.dcm"))
    assert float(np.abs(lossy - lossless).mean()) < 0.005


def test_rg1_monochrome1_lungs_darker_than_mediastinum(shared_data: Path) -> None:
    image, meta = read_dicom(_real(shared_data, "chest/RG1_J2KI.dcm"))
    assert meta.photometric == "MONOCHROME1" and image.shape == (1955, 1841)
    h, w = image.shape
    rows = slice(h // 4, 3 * h // 4)
    spine = image[rows, int(0.45 * w) : int(0.55 * w)].mean()
    left, right = (
        image[rows, int(0.15 * w) : int(0.3 * w)].mean(),
        image[rows, int(0.7 * w) : int(0.85 * w)].mean(),
    )
    assert spine > left + 0.1 and spine > right + 0.1  # measured: 0.84 vs 0.68 / 0.65


def test_cr_mono1_chest_orientation_and_values(shared_data: Path) -> None:
    path = _real(shared_data, "chest/CR-MONO1-10-chest.dcm")
    assert path.read_bytes()[128:132] != b"DICM"  # no preamble, no file meta
    image, meta = read_dicom(path)
    assert image.shape == (440, 440) and meta.transfer_syntax == "Implicit VR Little Endian"
    # pixel for pixel the inverse window of the stored values in row-major order (not transposed)
    ds = pydicom.dcmread(path, force=True)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    raw = ds.pixel_array.astype(float)
    np.testing.assert_allclose(image, 1.0 - linear(raw, 550, 1024), atol=1e-5)
    # anatomy: the mediastinum is a vertical bright band (columns), the lungs either side darker
    h, w = image.shape
    centre = image[h // 4 : 3 * h // 4, int(0.42 * w) : int(0.58 * w)].mean()
    lungs = image[h // 4 : 3 * h // 4, int(0.12 * w) : int(0.3 * w)].mean()
    assert centre > lungs + 0.15  # measured: 0.67 vs 0.40


def test_real_header_facts(shared_data: Path) -> None:
    meta = read_dicom_header(_real(shared_data, "non_chest_codec_variants/RG2_RLE.dcm"))
    assert (meta.rows, meta.cols, meta.bits_stored, meta.photometric) == (2140, 1760, 10, "MONOCHROME2")
    assert meta.pixel_spacing == (0.2, 0.2) and meta.transfer_syntax == "RLE Lossless"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # header reads are silent
        read_dicom_header(_real(shared_data, "chest/RG1_JLSN.dcm"))


@pytest.mark.parametrize(
    ("center", "width", "function"),
    [
        (10.0, 11.0, "LINEAR"),  # the default
        (100.5, 1.0, "LINEAR"),  # width 1: a threshold
        (-3.0, 0.5, "LINEAR_EXACT"),  # fractional width is legal for LINEAR_EXACT
        (500.0, 300.0, "SIGMOID"),
    ],
)
def test_window_formula_matches_pydicom(center: float, width: float, function: str) -> None:
    # our float32 windowing must agree with pydicom's apply_windowing scaled to [0, 1]
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    from resnet_apps.io.dicom_voi import _window

    values = np.random.default_rng(1).uniform(-50, 1000, size=(64, 64))
    shim = Dataset()
    shim.PhotometricInterpretation, shim.PixelRepresentation, shim.BitsStored = "MONOCHROME2", 0, 1
    shim.WindowCenter, shim.WindowWidth, shim.VOILUTFunction = center, width, function
    np.testing.assert_allclose(
        _window(values, center, width, function), apply_windowing(values, shim), atol=1e-5
    )


def test_palette_colour_goes_through_its_lut_then_grey(tmp_path: Path) -> None:
    # indices 0..3 -> black, red, green, white (8-bit palette); grey = BT.601 luma / 255
    path = make_dicom(tmp_path / "pal.dcm", np.array([[0, 1, 2, 3]], dtype=np.uint8), window=(127.5, 255))
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.VOILUTFunction = "LINEAR_EXACT"
    for colour, entries in (("Red", [0, 255, 0, 255]), ("Green", [0, 0, 255, 255]), ("Blue", [0, 0, 0, 255])):
        ds.add_new(f"{colour}PaletteColorLookupTableDescriptor", "US", [4, 0, 8])
        ds.add_new(f"{colour}PaletteColorLookupTableData", "OW", bytes(np.array(entries, np.uint8)))
    ds.save_as(path)
    with pytest.warns(UserWarning, match="PALETTE COLOR"):
        image, _ = read_dicom(path)
    np.testing.assert_allclose(image[0], [0.0, 0.299, 0.587, 1.0], atol=1e-5)
