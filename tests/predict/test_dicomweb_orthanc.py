"""PACS round trip against a real Orthanc on loopback: QIDO query, WADO retrieve, predict, STOW SR + SC, rerun.

Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) runs as a subprocess with a generated configuration
(``orthanc_server.orthanc``: loopback only, a free port, authentication on, storage in the test's tmp
folder), killed and its folder removed in the fixture's teardown, also when the test fails.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from dicom_fixtures import make_dicom
from dicomweb_client.api import DICOMwebClient
from orthanc_server import PASSWORD, USER, Server, grey_run
from PIL import Image
from pydicom import dcmread
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage, generate_uid

from resnet_apps.cli import main
from resnet_apps.predict.dicom_results import CLASSIFICATION, THRESHOLD
from resnet_apps.predict.pacs import InstanceRef

pytestmark = [pytest.mark.pacs, pytest.mark.subprocess]


def _fixtures(tmp_path: Path, shared: Path) -> tuple[list[Path], Path, str]:
    """Three good generated CRs and one undecodable one in a new study, plus the shared chest films."""
    study = generate_uid()
    folder = tmp_path / "fixtures"
    rng = np.random.default_rng(0)
    good = [
        make_dicom(
            folder / f"good{k}.dcm", rng.integers(0, 4096, (48, 40)), study_uid=study, window=(2048, 4096)
        )
        for k in range(3)
    ]
    bad = make_dicom(folder / "bad.dcm", np.zeros((8, 8), dtype=np.uint16), study_uid=study)
    header = dcmread(bad)
    header.Rows = 64  # claims 64 x 8 pixels but holds 8 x 8: Orthanc stores it, nobody can decode it
    header.save_as(bad, enforce_file_format=True)
    films = [shared / "CR-MONO1-10-chest.dcm", shared / "RG1_J2KI.dcm"]  # legacy no-meta file; JPEG 2000
    return good + [bad] + [f for f in films if f.is_file()], bad, study


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _run(server: Server, run: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    args = ["predict", str(run), server.source, "--query", "ModalitiesInStudy=CR", "--out", str(out)]
    assert main([*args, "--store", "--gradcam", "--no-progress"]) == 0
    printed = capsys.readouterr()
    for planted in ("Doe^Jane", "PID-0001", "19700101"):  # the fixtures' patient: never on the console
        assert planted not in printed.out + printed.err
    return json.loads(printed.out.strip().splitlines()[-1])


def _series(client: DICOMwebClient, study: str, modality: str) -> list[str]:
    found = client.search_for_series(study_instance_uid=study, search_filters={"Modality": modality})
    return [s["0020000E"]["Value"][0] for s in found]


def test_orthanc_round_trip(
    orthanc: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = Path(
        os.environ.get("RESNET_APPS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
    )
    files, bad, study = _fixtures(tmp_path, shared / "dicom_radiographs" / "chest")
    for path in files:
        orthanc.upload(path)
    sources = {dcmread(p, force=True).SOPInstanceUID: p for p in files if p != bad}
    run = grey_run(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setenv("RESNET_APPS_DICOMWEB_USER", USER)
    monkeypatch.setenv("RESNET_APPS_DICOMWEB_PASSWORD", PASSWORD)

    first = _run(orthanc, run, out, capsys)
    n_good = len(sources)
    assert first["instances"] == n_good + 1
    assert (first["predicted"], first["errors"], first["skipped_done"]) == (n_good, 1, 0)
    assert (first["stored_sr"], first["stored_sc"]) == (n_good, n_good)

    predictions = _rows(out / "predictions.csv")
    errors = _rows(out / "errors.csv")
    assert len(predictions) == n_good and len(errors) == 1
    local_text = (out / "predictions.csv").read_text() + (out / "errors.csv").read_text()
    for uid in [study, *sources]:
        assert uid not in local_text  # hashed ids only
    assert "Doe^Jane" not in local_text and "PID-0001" not in local_text
    by_id = {r["image_id"]: r for r in predictions}
    sha = hashlib.sha256((run / "checkpoints" / "best.safetensors").read_bytes()).hexdigest()

    client = orthanc.client()
    studies = {dcmread(p, force=True).StudyInstanceUID for p in sources.values()}
    srs, scs = [], []
    for uid in studies:
        for series in _series(client, uid, "SR"):
            srs += [client.retrieve_instance(uid, series, i["00080018"]["Value"][0])
                    for i in client.search_for_instances(uid, series)]  # fmt: skip
        for series in _series(client, uid, "OT"):
            scs += [client.retrieve_instance(uid, series, i["00080018"]["Value"][0])
                    for i in client.search_for_instances(uid, series)]  # fmt: skip
    assert len(srs) == n_good and len(scs) == n_good

    referenced = set()
    for ds in srs:
        assert ds.SOPClassUID == ComprehensiveSRStorage
        evidence = ds.CurrentRequestedProcedureEvidenceSequence[0]
        source_uid = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        source = dcmread(sources[source_uid], force=True)
        assert ds.StudyInstanceUID == evidence.StudyInstanceUID == source.StudyInstanceUID
        assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID  # a new series in the same study
        assert ds.PatientID == source.get("PatientID", "")  # the source patient module, as the standard asks
        referenced.add(source_uid)
        report = hd.sr.MeasurementReport.from_sequence(hd.sr.ComprehensiveSR.from_dataset(ds).content)
        (group,) = report.get_image_measurement_groups()
        assert group.source_images[0].referenced_sop_instance_uid == source_uid
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert values[THRESHOLD.meaning] == pytest.approx(0.5)
        row = by_id[InstanceRef(source.StudyInstanceUID, source.SeriesInstanceUID, source_uid).image_id]
        assert values["Probability"] == pytest.approx(float(row["p_PNEUMONIA"]), abs=1e-6)
        (label,) = group.get_qualitative_evaluations(CLASSIFICATION)
        assert label.value.meaning == row["pred"]
        text = " ".join(str(item.get("TextValue", "")) for item in group[0].ContentSequence)
        assert f"weights sha256 {sha}" in text and "is reported as PNEUMONIA" in text
    assert referenced == set(sources)

    for ds in scs:
        assert ds.SOPClassUID == SecondaryCaptureImageStorage
        source_uid = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
        assert (
            source_uid in sources
            and ds.StudyInstanceUID == dcmread(sources[source_uid], force=True).StudyInstanceUID
        )
        assert ds.pixel_array.shape == (32, 32, 3)
    overlays = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((out / "gradcam").glob("*.png"))]
    assert any(np.array_equal(scs[0].pixel_array, o) for o in overlays)

    # rerun, same folder: nothing retrieved, predicted or stored again
    second = _run(orthanc, run, out, capsys)
    assert (second["predicted"], second["stored_sr"], second["stored_sc"]) == (0, 0, 0)
    assert second["skipped_done"] == n_good + 1
    # rerun into a new folder: the PACS says what is done (the undecodable one is tried and listed again)
    third = _run(orthanc, run, tmp_path / "out2", capsys)
    assert (third["predicted"], third["errors"], third["stored_sr"], third["skipped_done"]) == (
        0,
        1,
        0,
        n_good,
    )
    counts = sum(
        len(client.search_for_instances(uid, s)) for uid in studies for s in _series(client, uid, "SR")
    )
    assert counts == n_good  # nothing stored twice
