"""LABELS.csv for ``evaluate --data dicomweb+...``: what it may hold, and errors that name lines, never UIDs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resnet_apps.cli import main
from resnet_apps.errors import DatasetError, DicomWebError
from resnet_apps.predict.dicomweb_labels import read_labels, retrieve_labelled

STUDY, OTHER, SOP = "1.2.3.4", "1.2.3.5", "1.2.3.4.1.1"


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_instance_rows_win_over_their_study_and_studies_keep_file_order(tmp_path: Path) -> None:
    labels = read_labels(
        _csv(
            tmp_path,
            f"SOPInstanceUID,StudyInstanceUID,label\n,{OTHER},PNEUMONIA\n{SOP},{STUDY},NORMAL\n"
            f",{STUDY}, PNEUMONIA \n",
        )
    )
    assert labels.label(STUDY, SOP) == "NORMAL"  # its own row
    assert labels.label(STUDY, "1.2.3.4.1.2") == "PNEUMONIA"  # its study's row (stripped)
    assert labels.label("9.9", "9.9.1") is None
    assert labels.studies == [OTHER, STUDY] and labels.unplaced == 0


def test_sop_only_labels_need_the_studies_named(tmp_path: Path) -> None:
    labels = read_labels(_csv(tmp_path, f"SOPInstanceUID,label\n{SOP},NORMAL\n"))
    assert labels.studies == [] and labels.unplaced == 1
    with pytest.raises(DicomWebError, match="name no StudyInstanceUID; fix: fill it, or .*--study"):
        retrieve_labelled(None, tmp_path, labels)  # type: ignore[arg-type]  # refused before any request


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"SOPInstanceUID,class\n{SOP},NORMAL\n", "needs a 'label' column"),
        ("PatientID,label\np1,NORMAL\n", "'SOPInstanceUID' and/or 'StudyInstanceUID'"),
        (f"SOPInstanceUID,label\n{SOP},\n", "line 2 has an empty 'label'"),
        ("SOPInstanceUID,StudyInstanceUID,label\n,,NORMAL\n", "line 2 names neither"),
        (f"SOPInstanceUID,label\n{SOP},NORMAL\n{SOP},PNEUMONIA\n", "line 3 gives its instance the class"),
        (f"StudyInstanceUID,label\n{STUDY},NORMAL\n{STUDY},PNEUMONIA\n", "line 3 gives its study"),
    ],
)
def test_bad_labels_name_the_line_not_the_uid(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=re.escape(message)) as caught:
        read_labels(_csv(tmp_path, text))
    assert SOP not in str(caught.value) and STUDY not in str(caught.value)


def test_missing_labels_file_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="labels CSV not found"):
        read_labels(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    "extra",
    [
        ["--data", "dicomweb+http://127.0.0.1:9/dicom-web"],  # no --labels
        ["--labels", "labels.csv"],  # no DICOMweb --data
        ["--study", STUDY],
    ],
)
def test_cli_pairs_dicomweb_data_with_labels(
    tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(tmp_path / "run"), *extra, "--out", str(tmp_path / "x")]) != 0
    assert "a DICOMweb --data needs --labels LABELS.csv" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_segmentation_run_is_refused_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.json").write_text('{"task": "segmentation", "model": {}}')
    (run / "checkpoints" / "best.safetensors").write_bytes(b"")
    labels = _csv(tmp_path, f"StudyInstanceUID,label\n{STUDY},NORMAL\n")
    argv = ["evaluate", str(run), "--data", "dicomweb+http://127.0.0.1:9/dicom-web", "--labels", str(labels)]
    assert main(argv) == 2  # port 9 would refuse the connection: the run's task is checked first
    assert "single-label classification runs" in capsys.readouterr().err
