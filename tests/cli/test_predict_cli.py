"""`resnet-apps predict` and `resnet-apps export` end to end on a saved run (tiny random resnet18 models)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin

from resnet_apps.cli import main
from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.heads import build_model


def _classifier_run(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("classification", "resnet18", in_chans=3, num_classes=2)
    run = tmp_path / "run"
    save_checkpoint(
        run / "checkpoints" / "best",
        model,
        {
            "classes": ["cat", "dog"],
            "positive_class": "dog",
            "operating_threshold": 0.5,
            "preprocessing": {
                "bands": None,
                "scale": 1 / 255,
                "mean": [0.5] * 3,
                "std": [0.25] * 3,
                "image_size": 32,
                "dicom_window": None,
                "grayscale": False,
            },
        },
    )
    return run


def test_predict_images_scene_and_gradcam(tmp_path: Path, capsys) -> None:
    run = _classifier_run(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for k in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * k, dtype=np.uint8)).save(images / f"im{k}.png")
    scene = tmp_path / "scene.tif"
    with rasterio.open(
        scene,
        "w",
        driver="GTiff",
        width=100,
        height=70,
        count=3,
        dtype="uint8",
        nodata=0,
        crs="EPSG:32631",
        transform=from_origin(0, 0, 10, 10),
    ) as dst:
        dst.write(np.full((3, 70, 100), 90, dtype=np.uint8))
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(run),
            str(images),
            str(scene),
            "--out",
            str(out),
            "--gradcam",
            "--overlap",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["tiles"] == 3 * 4  # chips of 32: ceil(70 / 32) x ceil(100 / 32) cells
    with rasterio.open(out / "scene_class.tif") as cls:
        assert cls.shape == (3, 4) and cls.transform == from_origin(0, 0, 320, 320)
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == ["im0.png", "im1.png", "im2.png"]
    assert list(rows[0]) == [
        "image_id",
        "path",
        "p_cat",
        "p_dog",
        "pred",
        "threshold",
        "dicom_window",
        "warning",
    ]
    assert rows[0]["threshold"] == "0.5" and rows[0]["dicom_window"] == "" and rows[0]["warning"] == ""
    for row in rows:
        assert abs(float(row["p_cat"]) + float(row["p_dog"]) - 1) < 1e-5
        assert row["pred"] == ("dog" if float(row["p_dog"]) >= 0.5 else "cat")
        png = out / "gradcam" / f"{row['image_id']}.png"
        assert Image.open(png).size == (32, 32)


def test_export_command(tmp_path: Path, capsys) -> None:
    run = _classifier_run(tmp_path)
    assert main(["export", str(run), "--format", "onnx"]) == 0
    assert "ok" in capsys.readouterr().out
    side = json.loads((run / "export" / "model.onnx.json").read_text())
    assert side["parity"]["ok"] and side["input"]["shape"] == ["batch", 3, 32, 32]


def test_readers_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    """`--readers 0` is refused by the parser, naming the option, before any model is loaded."""
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "no_such_run", "scene.tif", "--out", "out", "--readers", "0"])
    assert exit_info.value.code == 2
    assert "--readers" in capsys.readouterr().err
