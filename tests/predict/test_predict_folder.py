"""DICOM / image folders to CSV: hand-computed probabilities, bad files to errors.csv, resume, no identifiers."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_fixtures import make_dicom
from PIL import Image

from resnet_apps.predict.folder import image_id, list_images, predict_folder

META = {
    "task": "classification",
    "classes": ["NORMAL", "PNEUMONIA"],
    "positive_class": "PNEUMONIA",
    "operating_threshold": 0.6,
    "model": {"backbone": "stand-in", "in_chans": 1, "num_classes": 2},
    "preprocessing": {
        "bands": None,
        "scale": 1 / 255,
        "mean": [0.5],
        "std": [0.25],
        "image_size": 8,
        "dicom_window": None,
        "grayscale": True,
    },
}


class MeanLogit(torch.nn.Module):
    """logits [0, mean(x)]: p(PNEUMONIA) = sigmoid(mean of the normalised image)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))[:, None]
        return torch.cat([torch.zeros_like(m), m], dim=1)


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """4 good DICOMs (one in a subfolder, one without suffix), 1 PNG, 1 corrupt DICOM, 1 text file."""
    root = tmp_path / "export"
    (root / "sub").mkdir(parents=True)
    # constant 150 under window (100.5, 201): (150 - 100) / 200 + 0.5 = 0.75 -> (0.75 - 0.5) / 0.25 = 1
    pixels = np.full((6, 5), 150, dtype=np.uint16)
    for name in ("a.dcm", "b.dcm", "sub/c.dcm", "sub/IM0001"):
        make_dicom(root / name, pixels, window=(100.5, 201), patient_name="Doe^Jane", patient_id="PID-0001")
    # grey PNG 102: 102 / 255 = 0.4 -> (0.4 - 0.5) / 0.25 = -0.4
    Image.fromarray(np.full((7, 9), 102, dtype=np.uint8)).save(root / "sub" / "d.png")
    (root / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x13\x37" * 40)  # header, then garbage
    (root / "notes.txt").write_text("not an image")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_folder_to_csv_with_one_corrupt_file(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = predict_folder(MeanLogit(), META, [folder], out, batch_size=2, progress=False)
    assert (result["predicted"], result["errors"]) == (5, 1)
    rows = {r["path"]: r for r in _rows(out / "predictions.csv")}
    assert sorted(rows) == ["a.dcm", "b.dcm", "sub/IM0001", "sub/c.dcm", "sub/d.png"]
    # DICOM: p = sigmoid(1) = 0.731059 >= 0.6 -> PNEUMONIA; PNG: sigmoid(-0.4) = 0.401312 -> NORMAL
    assert float(rows["a.dcm"]["p_PNEUMONIA"]) == pytest.approx(_sigmoid(1.0), abs=1e-4)
    assert float(rows["a.dcm"]["p_NORMAL"]) == pytest.approx(1 - _sigmoid(1.0), abs=1e-4)
    assert rows["a.dcm"]["pred"] == "PNEUMONIA"
    assert float(rows["sub/d.png"]["p_PNEUMONIA"]) == pytest.approx(_sigmoid(-0.4), abs=1e-4)
    assert rows["sub/d.png"]["pred"] == "NORMAL"
    assert rows["sub/c.dcm"]["image_id"] == image_id("sub/c.dcm") and len(image_id("x")) == 16
    errors = _rows(out / "errors.csv")
    assert len(errors) == 1 and errors[0]["path"] == "broken.dcm" and errors[0]["reason"]
    text = (out / "predictions.csv").read_text() + (out / "errors.csv").read_text()
    assert "Doe" not in text and "PID-0001" not in text and "19700101" not in text


def test_operating_threshold_decides_binary_label(folder: Path, tmp_path: Path) -> None:
    """Same probabilities, threshold 0.75 > 0.731: the DICOMs become NORMAL."""
    meta = dict(META, operating_threshold=0.75)
    predict_folder(MeanLogit(), meta, [folder / "a.dcm"], tmp_path / "out", progress=False)
    (row,) = _rows(tmp_path / "out" / "predictions.csv")
    assert (row["path"], row["pred"]) == ("a.dcm", "NORMAL")


def test_resume_skips_finished_files(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = predict_folder(MeanLogit(), META, [folder], out, progress=False)
    assert first["predicted"] == 5
    # an interrupted write left a torn last line; a new file arrived meanwhile
    with open(out / "predictions.csv", "a") as handle:
        handle.write("deadbeef00000000,half-writ")
    make_dicom(folder / "sub" / "e.dcm", np.full((6, 5), 150, dtype=np.uint16), window=(100.5, 201))
    second = predict_folder(MeanLogit(), META, [folder], out, progress=False)
    assert (second["predicted"], second["errors"], second["skipped_done"]) == (1, 0, 6)
    rows = _rows(out / "predictions.csv")
    assert [r["path"] for r in rows].count("sub/e.dcm") == 1
    assert len(rows) == len({r["image_id"] for r in rows}) == 6
    assert len(_rows(out / "errors.csv")) == 1  # the corrupt file is not retried
    assert len(list_images([folder])) == 7  # 5 DICOM + PNG + corrupt; notes.txt is not an image
