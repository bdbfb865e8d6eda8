"""predictions.csv says the threshold, the DICOM window and flags films unlike the training data (issue 12 item 9)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import torch
from dicom_fixtures import make_dicom

from resnet_apps.cli import main
from resnet_apps.data.records import Record
from resnet_apps.data.seen import dicom_seen, outside_seen
from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.heads import build_model


def _film(path: Path, modality: str, body_part: str | None) -> Path:
    make_dicom(path, np.full((16, 16), 150, dtype=np.uint16), window=(100.5, 201), modality=modality)
    ds = pydicom.dcmread(path)
    if body_part is not None:
        ds.BodyPartExamined = body_part
    ds.save_as(path)
    return path


def test_training_records_what_dicom_it_saw(tmp_path: Path) -> None:
    _film(tmp_path / "a.dcm", "CR", "CHEST")
    _film(tmp_path / "b.dcm", "DX", "CHEST")
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # not DICOM: ignored
    records = [Record(path=p, label=0) for p in ("a.dcm", "b.dcm", "c.png")]
    assert dicom_seen(records, tmp_path) == {"modality": ["CR", "DX"], "body_part": ["CHEST"]}
    seen = {"modality": ["CR", "DX"], "body_part": ["CHEST"]}
    assert outside_seen({"modality": "CR", "body_part": "Chest"}, seen) == ""
    assert outside_seen({"modality": "CR", "body_part": "HIP"}, seen) == (
        "BodyPartExamined HIP not seen in training (CHEST)"
    )
    assert outside_seen({"modality": "MR", "body_part": None}, seen).startswith("Modality MR not seen")
    assert outside_seen({"modality": "MR"}, None) == ""  # an old checkpoint: nothing to judge by


def test_predict_csv_has_threshold_window_and_warning(tmp_path: Path) -> None:
    torch.manual_seed(0)
    run = tmp_path / "run"
    save_checkpoint(
        run / "checkpoints" / "best",
        build_model("classification", "resnet18", in_chans=1, num_classes=2),
        {
            "classes": ["NORMAL", "PNEUMONIA"],
            "positive_class": "PNEUMONIA",
            "operating_threshold": 0.95,
            "model": {"backbone": "resnet18", "in_chans": 1, "num_classes": 2},
            "preprocessing": {"bands": None, "scale": 1.0, "mean": [0.5], "std": [0.25], "image_size": 16,
                              "dicom_window": None, "grayscale": True},
            "data_seen": {"modality": ["CR", "DX"], "body_part": ["CHEST"]},
        },
    )  # fmt: skip
    films = tmp_path / "films"
    _film(films / "chest.dcm", "CR", "CHEST")
    _film(films / "hip.dcm", "CR", "HIP")
    _film(films / "knee_mr.dcm", "MR", None)
    out = tmp_path / "out"
    assert main(["predict", str(run), str(films), "--out", str(out), "--no-progress"]) == 0
    with open(out / "predictions.csv", newline="") as handle:
        rows = {r["path"]: r for r in csv.DictReader(handle)}
    for row in rows.values():
        assert row["threshold"] == "0.95"  # "0.90 -> NORMAL" reads right beside it
        assert row["dicom_window"] == "100.5/201 (header[0])"
        assert row["pred"] == ("PNEUMONIA" if float(row["p_PNEUMONIA"]) >= 0.95 else "NORMAL")
    assert rows["chest.dcm"]["warning"] == ""
    assert rows["hip.dcm"]["warning"] == "BodyPartExamined HIP not seen in training (CHEST)"
    assert rows["knee_mr.dcm"]["warning"] == "Modality MR not seen in training (CR, DX)"


def test_jpeg_trained_chest_model_flags_a_hip_dicom(tmp_path: Path) -> None:
    """Trained on exported PNG films (no DICOM seen): the data card's dicom_seen (chest CR/DX) is the reference."""
    from PIL import Image
    from train_fixtures import write_recipe

    rng = np.random.default_rng(0)
    for k, name in enumerate(("NORMAL", "PNEUMONIA")):
        (tmp_path / "films" / name).mkdir(parents=True)
        for n in range(6):
            Image.fromarray(rng.integers(0, 120 + 100 * k, (16, 16), dtype=np.uint8)).save(
                tmp_path / "films" / name / f"{n}.png"
            )
    recipe = write_recipe(
        tmp_path / "r.yaml",
        tmp_path / "films",
        data={"card": "chest_xray_pneumonia_kermany", "grayscale": True, "scale": 1 / 255, "image_size": 16,
              "normalize": "imagenet", "augment": "none"},
        train={"epochs": 1},
        eval={"bootstrap": 0, "metric": "auroc"},
    )  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(run)]) == 0
    meta = json.loads((run / "checkpoints" / "best.json").read_text())
    assert (
        meta["data_seen"]["body_part"] == ["CHEST"]
        and "chest_xray_pneumonia_kermany" in meta["data_seen"]["source"]
    )
    _film(tmp_path / "pacs" / "hip.dcm", "CR", "HIP")
    _film(tmp_path / "pacs" / "chest.dcm", "DX", "CHEST")
    out = tmp_path / "out"
    assert main(["predict", str(run), str(tmp_path / "pacs"), "--out", str(out), "--no-progress"]) == 0
    with open(out / "predictions.csv", newline="") as handle:
        rows = {r["path"]: r for r in csv.DictReader(handle)}
    assert rows["hip.dcm"]["warning"] == "BodyPartExamined HIP not seen in training (CHEST)"
    assert rows["chest.dcm"]["warning"] == ""
