"""SR and Secondary Capture built from a classified instance, without a PACS: content, references, patient module."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from dicom_fixtures import make_dicom
from pydicom import dcmread
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from resnet_apps.models.decision import Decision
from resnet_apps.predict.dicom_results import (
    CLASSIFICATION,
    THRESHOLD,
    ModelInfo,
    ResultUids,
    build_sc,
    build_sr,
    evidence_header,
)
from resnet_apps.predict.dicomweb import finding_from_row

META = {"classes": ["NORMAL", "PNEUMONIA"], "positive_class": "PNEUMONIA", "operating_threshold": 0.6}
MODEL = ModelInfo("resnet_apps classification resnet18", "resnet_apps 0.1.0, checkpoint best", "ab" * 32)


@pytest.fixture
def source(tmp_path: Path):
    """A CR without PatientSex, StudyDate or PatientOrientation (common in real files)."""
    path = make_dicom(tmp_path / "cr.dcm", np.full((6, 5), 150, dtype=np.uint16))
    return evidence_header(dcmread(path))


def test_sr_states_finding_probability_threshold_and_model(source) -> None:
    finding = finding_from_row({"p_NORMAL": "0.250000", "p_PNEUMONIA": "0.750000", "pred": "PNEUMONIA"},
                               Decision.from_meta(META))  # fmt: skip
    assert "PixelData" not in source and source.PatientSex == ""  # header only; type 2 present, empty
    uids = ResultUids.for_source(source.StudyInstanceUID, source.SOPInstanceUID, MODEL.result_key(0.6))
    sr = build_sr(source, finding, MODEL, uids)
    assert sr.SOPClassUID == ComprehensiveSRStorage and sr.SOPInstanceUID == uids.sr_instance
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert (sr.PatientName, sr.PatientID) == (source.PatientName, source.PatientID)
    ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == source.SeriesInstanceUID
    assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    report = hd.sr.MeasurementReport.from_sequence(hd.sr.ComprehensiveSR.from_dataset(sr).content)
    (group,) = report.get_image_measurement_groups()
    values = {m.name.meaning: m.value for m in group.get_measurements()}
    assert values == {"Probability": pytest.approx(0.75), THRESHOLD.meaning: pytest.approx(0.6)}
    (label,) = group.get_qualitative_evaluations(CLASSIFICATION)
    assert label.value.meaning == "PNEUMONIA"
    texts = [str(item.get("TextValue", "")) for item in group[0].ContentSequence]
    assert "weights sha256 " + "ab" * 32 in texts
    assert any("p(PNEUMONIA) >= 0.6 is reported as PNEUMONIA, below it as NORMAL" in t for t in texts)


def test_multiclass_finding_reports_the_label_probability() -> None:
    decision = Decision.from_meta({"classes": ["a", "b", "c"], "model": {"num_classes": 3}})
    finding = finding_from_row({"p_a": "0.2", "p_b": "0.5", "p_c": "0.3", "pred": "b"}, decision)
    assert finding.probability == pytest.approx(0.5)
    assert "most probable class" in finding.meaning


def test_secondary_capture_of_the_overlay(source) -> None:
    uids = ResultUids.for_source(source.StudyInstanceUID, source.SOPInstanceUID, MODEL.result_key(0.6))
    overlay = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    sc = build_sc(source, overlay, MODEL, uids)
    assert sc.SOPClassUID == SecondaryCaptureImageStorage and sc.SOPInstanceUID == uids.sc_instance
    assert sc.SeriesInstanceUID == uids.sc_series != uids.sr_series
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.PatientOrientation == []  # unknown in the source: left empty, not guessed
    np.testing.assert_array_equal(sc.pixel_array, overlay)
