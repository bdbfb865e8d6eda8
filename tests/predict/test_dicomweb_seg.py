"""A segmentation run on a PACS: ``predict RUN dicomweb+... --store`` stores one DICOM SEG per instance.

Against a real Orthanc on loopback (``orthanc_server``): two generated CRs of different sizes and an
undecodable one; the SEGs are read back with dicomweb-client and checked with highdicom (segment labels,
frames, the referenced source instance, masks at the source's Rows x Columns equal to the local class
maps); a rerun stores nothing twice.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_fixtures import make_dicom
from orthanc_server import PASSWORD, USER, Server
from PIL import Image
from pydicom import dcmread
from pydicom.uid import SegmentationStorage, generate_uid

from resnet_apps.cli import main
from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.heads import build_model
from resnet_apps.predict.dicom_seg import SEG_SERIES_DESCRIPTION
from resnet_apps.predict.pacs import InstanceRef

pytestmark = [pytest.mark.pacs, pytest.mark.subprocess]

CLASSES = ["background", "right_lung", "left_lung"]


def _seg_run(tmp_path: Path) -> Path:
    """A tiny random lung-segmentation run (FPN on resnet18, whole images resized to 32 px)."""
    torch.manual_seed(0)
    model = build_model("segmentation", "resnet18", in_chans=1, num_classes=3, fpn_channels=16)
    run = tmp_path / "segrun"
    preprocessing = {"bands": None, "scale": 1 / 255, "mean": [0.5], "std": [0.25], "image_size": 32}
    save_checkpoint(
        run / "checkpoints" / "best",
        model,
        {
            "classes": CLASSES,
            "preprocessing": {**preprocessing, "resize": 32, "dicom_window": None, "grayscale": True},
        },
    )
    return run


def _predict(server: Server, run: Path, study: str, out: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    argv = ["predict", str(run), server.source, "--study", study, "--out", str(out), "--store"]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "Doe^Jane" not in printed.out + printed.err and "PID-0001" not in printed.out + printed.err
    return json.loads(printed.out.strip().splitlines()[-1])


def test_segmentation_run_stores_a_seg_per_instance(
    orthanc: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    study = generate_uid()
    rng = np.random.default_rng(2)
    sources = {}
    for k, shape in enumerate([(48, 40), (36, 52)]):
        path = make_dicom(
            tmp_path / f"cr{k}.dcm", rng.integers(0, 4096, shape), study_uid=study, window=(2048, 4096)
        )
        sources[dcmread(path).SOPInstanceUID] = dcmread(path)
        orthanc.upload(path)
    bad = make_dicom(tmp_path / "bad.dcm", np.zeros((8, 8), dtype=np.uint16), study_uid=study)
    header = dcmread(bad)
    header.Rows = 64  # claims 64 x 8 pixels, holds 8 x 8: listed in errors.csv, the run goes on
    header.save_as(bad, enforce_file_format=True)
    orthanc.upload(bad)
    run = _seg_run(tmp_path)
    monkeypatch.setenv("RESNET_APPS_DICOMWEB_USER", USER)
    monkeypatch.setenv("RESNET_APPS_DICOMWEB_PASSWORD", PASSWORD)

    out = tmp_path / "out"
    first = _predict(orthanc, run, study, out, capsys)
    assert (first["instances"], first["predicted"], first["errors"], first["stored_seg"]) == (3, 2, 1, 2)
    assert first["stored_sr"] == 0
    with open(out / "predictions.csv", newline="") as handle:
        rows = {r["image_id"]: r for r in csv.DictReader(handle)}
    local = (out / "predictions.csv").read_text() + (out / "errors.csv").read_text()
    assert study not in local and not [uid for uid in sources if uid in local]

    client = orthanc.client()
    found = client.search_for_series(study_instance_uid=study, search_filters={"Modality": "SEG"})
    assert len(found) == 1
    series = found[0]["0020000E"]["Value"][0]
    stored = [
        client.retrieve_instance(study, series, i["00080018"]["Value"][0])
        for i in client.search_for_instances(study, series)
    ]
    assert len(stored) == 2
    for ds in stored:
        assert ds.SOPClassUID == SegmentationStorage and ds.SeriesDescription == SEG_SERIES_DESCRIPTION
        # read with pydicom: highdicom 0.28 refuses to read back its own SEG of a projection radiograph
        # (its reader wants a SliceThickness that a 2D image has not), though it wrote a valid one
        assert [s.SegmentLabel for s in ds.SegmentSequence] == ["right_lung", "left_lung"]
        assert ds.SegmentationType == "BINARY"
        algorithm = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "resnet_apps segmentation resnet18"
        (referenced,) = ds.ReferencedSeriesSequence
        (instance,) = referenced.ReferencedInstanceSequence
        source = sources[instance.ReferencedSOPInstanceUID]
        assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
        assert ds.StudyInstanceUID == study and ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.PatientID == source.PatientID  # the source's patient module, as the standard asks
        ref = InstanceRef(study, source.SeriesInstanceUID, source.SOPInstanceUID)
        mask = np.asarray(Image.open(out / "masks" / f"{ref.image_id}.png"))
        assert mask.shape == (source.Rows, source.Columns) == (ds.Rows, ds.Columns)
        present = [k for k in (1, 2) if (mask == k).any()]
        assert int(ds.NumberOfFrames) == (len(present) or 2)  # empty segments get no frame
        frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
        labels = np.zeros_like(mask)
        for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
            derivation = group.DerivationImageSequence[0].SourceImageSequence[0]
            assert derivation.ReferencedSOPInstanceUID == source.SOPInstanceUID
            labels[frame == 1] = group.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        assert np.array_equal(labels, mask)  # segment numbers 1, 2 are classes 1, 2
        fractions = [float(rows[ref.image_id][f"f_{c}"]) for c in CLASSES]
        assert fractions == pytest.approx([(mask == k).mean() for k in range(3)], abs=1e-6)

    again = _predict(orthanc, run, study, tmp_path / "out2", capsys)  # a new folder: the PACS says
    assert (again["predicted"], again["stored_seg"], again["skipped_done"], again["errors"]) == (0, 0, 2, 1)
    assert len(client.search_for_instances(study, series)) == 2  # nothing stored twice
