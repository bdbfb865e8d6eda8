"""``evaluate RUN --data dicomweb+http://... --labels LABELS.csv`` against a real Orthanc on loopback.

Two patients' studies of generated CRs are uploaded; LABELS.csv labels study A instance by instance and
study B as a whole (one of its instances overridden by its own row), leaves one instance unlabelled and
names one that does not exist; study B also holds an undecodable instance. The metrics must equal those
of ``evaluate RUN --data FOLDER`` on the same files, the AUROC the one of the probabilities that
``predict`` gives those files, and nothing local may carry a UID or a patient field.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from dicom_fixtures import make_dicom
from orthanc_server import PASSWORD, USER, Server, grey_run
from pydicom import dcmread
from pydicom.uid import generate_uid
from sklearn.metrics import roc_auc_score

from resnet_apps.cli import main

pytestmark = [pytest.mark.pacs, pytest.mark.subprocess]

PATIENTS = {"A": ("Doe^Jane", "PID-A-0001"), "B": ("Roe^Rick", "PID-B-0002")}


def _cr(path: Path, pixels: np.ndarray, study: str, series: str, patient: str) -> Path:
    name, pid = PATIENTS[patient]
    make_dicom(path, pixels, study_uid=study, window=(2048, 4096), patient_name=name, patient_id=pid)
    ds = dcmread(path)
    ds.SeriesInstanceUID = series  # one series per study (the helper's default series is shared)
    ds.save_as(path, enforce_file_format=True)
    return path


def _collection(folder: Path) -> tuple[list[tuple[Path, str | None]], Path, list[str], list[str]]:
    """(file, expected label or None when unlabelled), the undecodable file, LABELS.csv, the study UIDs."""
    rng = np.random.default_rng(1)
    studies = [generate_uid(), generate_uid()]
    series = [generate_uid(), generate_uid()]
    files: list[tuple[Path, str | None]] = []
    for k, label in enumerate(["NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA", None]):
        pixels = rng.integers(0, 4096, (48 + 4 * k, 40))
        files.append((_cr(folder / f"a{k}.dcm", pixels, studies[0], series[0], "A"), label))
    for k, label in enumerate(["PNEUMONIA", "PNEUMONIA", "NORMAL"]):
        pixels = rng.integers(0, 4096, (40, 44 + 4 * k))
        files.append((_cr(folder / f"b{k}.dcm", pixels, studies[1], series[1], "B"), label))
    bad = _cr(folder / "bad.dcm", np.zeros((8, 8), dtype=np.uint16), studies[1], series[1], "B")
    header = dcmread(bad)
    header.Rows = 64  # claims 64 x 8 pixels but holds 8 x 8: stored and retrieved, never decoded
    header.save_as(bad, enforce_file_format=True)
    labels = folder / "labels.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["StudyInstanceUID", "SOPInstanceUID", "label"])
        for path, label in files[:4]:  # study A: instance by instance (a4 unlabelled)
            writer.writerow([studies[0], dcmread(path).SOPInstanceUID, label])
        writer.writerow([studies[1], "", "PNEUMONIA"])  # study B as a whole ...
        writer.writerow([studies[1], dcmread(files[-1][0]).SOPInstanceUID, "NORMAL"])  # ... but for b2
        writer.writerow([studies[0], generate_uid(), "NORMAL"])  # an instance the server does not hold
    return files, bad, labels, studies


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())["evaluation"]


def _headline(evaluation: dict) -> dict[str, float]:
    return {row["label"]: row["value"] for row in evaluation["headline"]}


def test_evaluate_from_dicomweb_matches_the_folder_evaluation(
    orthanc: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files, bad, labels, studies = _collection(tmp_path / "fixtures")
    for path, _ in files:
        orthanc.upload(path)
    orthanc.upload(bad)
    run = grey_run(tmp_path)
    monkeypatch.setenv("RESNET_APPS_DICOMWEB_USER", USER)
    monkeypatch.setenv("RESNET_APPS_DICOMWEB_PASSWORD", PASSWORD)
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET_APPS_CACHE_DIR", str(cache))

    out = tmp_path / "eval-pacs"
    argv = ["evaluate", str(run), "--data", orthanc.source, "--labels", str(labels), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "retrieved 8 labelled instance(s) of 2 study(ies) in" in printed.out
    # the run's recipe caches arrays, but nothing decoded from the PACS outlives the temporary folder
    assert not [p for p in cache.rglob("*.npy")]
    pacs = _metrics(out)

    # the same labelled files as a folder of class folders, evaluated and predicted the folder way
    local = tmp_path / "local"
    labelled = [(p, lab) for p, lab in files if lab is not None]
    for path, label in labelled:
        (local / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, local / label / path.name)
    assert main(["evaluate", str(run), "--data", str(local), "--out", str(tmp_path / "eval-local")]) == 0
    folder = _metrics(tmp_path / "eval-local")
    assert [p for p in cache.rglob("*.npy")]  # (the same recipe does cache a folder's arrays)
    assert main(["predict", str(run), str(local), "--out", str(tmp_path / "pred"), "--no-progress"]) == 0
    with open(tmp_path / "pred" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    truth = [int(Path(r["path"]).parent.name == "PNEUMONIA") for r in rows]
    auroc = roc_auc_score(truth, [float(r["p_PNEUMONIA"]) for r in rows])

    assert pacs["n_samples"] == folder["n_samples"] == len(labelled) == 7
    support = {row["class"]: row["support"] for row in pacs["per_class"]}
    assert support == {"NORMAL": 3, "PNEUMONIA": 4}
    assert _headline(pacs) == pytest.approx(_headline(folder))
    assert sorted(pacs["samples"]["y_prob"]) == sorted(folder["samples"]["y_prob"])
    roc = {curve["label"]: curve["auc"] for curve in pacs["curves"]["roc"]}
    assert roc["PNEUMONIA"] == pytest.approx(auroc, abs=1e-5)
    notes = " ".join(pacs["notes"])
    assert "7 labelled image instance(s) of 2 study(ies)" not in notes  # the bad one was retrieved ...
    assert "8 labelled image instance(s) of 2 study(ies)" in notes
    assert "1 instance(s) could not be decoded" in notes  # ... and left out when it would not decode
    assert "1 image instance(s) without a label" in notes and "1 labelled instance(s)" in notes
    assert pacs["n_groups"] == 2 and pacs["bootstrap"]["unit"] == "group"  # CIs resample the 2 patients
    assert len(set(pacs["samples"]["groups"])) == 2

    secrets = [*studies, *(dcmread(p).SOPInstanceUID for p, _ in files), dcmread(bad).SOPInstanceUID]
    secrets += [field for pair in PATIENTS.values() for field in pair]
    for path in [p for p in out.rglob("*") if p.is_file()]:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert not [s for s in secrets if s in text], path
    assert not [s for s in secrets if s in printed.out + printed.err]
