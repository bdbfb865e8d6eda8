"""A user's 3-band model trained on 4-band RGBA GeoTIFFs predicts those same files (issue 12 items 1, 2)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from train_fixtures import CLASSES, write_recipe

from resnet_apps.cli import main


def make_rgba_folder(root: Path, per_class: int = 4, size: int = 32) -> Path:
    """root/<Class>/<n>.tif: uint8 R, G, B plus a constant 255 4th band, no descriptions, no alpha tag."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            rgb = rng.normal(90, 20, size=(3, size, size))
            rgb[k] += 80
            data = np.concatenate([np.clip(rgb, 0, 254), np.full((1, size, size), 255)]).astype(np.uint8)
            with rasterio.open(
                root / name / f"{name}_{n}.tif", "w", driver="GTiff", width=size, height=size, count=4,
                dtype="uint8", crs="EPSG:32632", transform=from_origin(500000, 5000000, 10, 10),
            ) as dst:  # fmt: skip
                dst.write(data)
    return root


@pytest.mark.parametrize("bands", ["[1,2,3]", None])
def test_train_on_rgba_then_predict_the_same_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bands: str | None
) -> None:
    data = make_rgba_folder(tmp_path / "data")
    recipe = write_recipe(tmp_path / "r.yaml", data, data={"scale": 1 / 255, "normalize": "card"})
    run = tmp_path / "run"
    overrides = ["--set", "train.epochs=1", "--set", "eval.bootstrap=0"]
    if bands is not None:  # 1-based like gdalinfo: R, G, B; the alpha band is the valid mask
        overrides += ["--set", f"data.bands={bands}"]
    assert main(["train", str(recipe), *overrides, "--out", str(run)]) == 0
    meta = json.loads((run / "checkpoints" / "best.json").read_text())
    assert meta["preprocessing"]["bands"] == ["band1", "band2", "band3"]
    assert meta["model"]["in_chans"] == 3
    capsys.readouterr()
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(data), "--out", str(out), "--no-progress"]) == 0
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 4  # every training file predicted, none refused
    errors = out / "errors.csv"
    assert not errors.exists() or len(errors.read_text().splitlines()) <= 1
    assert {r["pred"] for r in rows} <= set(CLASSES)


def test_a_constant_band_is_named_by_inspect_and_at_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bands: [1, 2] where band 2 is blank: `inspect` lists it and training warns, naming it."""
    root = tmp_path / "data"
    rng = np.random.default_rng(2)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for n in range(4):
            data = rng.integers(100, 3000, size=(3, 16, 16)).astype(np.uint16)
            data[1] = 7  # a blank band (not 255/65535, so not alpha)
            data[0] += 500 * k
            with rasterio.open(
                root / name / f"{n}.tif", "w", driver="GTiff", width=16, height=16, count=3, dtype="uint16",
            ) as dst:  # fmt: skip
                dst.write(data)
    assert main(["inspect", "--json", str(root / "Crop" / "0.tif")]) == 0
    info = json.loads(capsys.readouterr().out)
    info = info[0] if isinstance(info, list) else info
    assert info["constant_bands"] == ["band2"] and info["alpha_band"] is None
    recipe = write_recipe(tmp_path / "r.yaml", root, data={"image_size": 16}, eval={"bootstrap": 0})
    with pytest.warns(UserWarning, match=r"\['band2'\] hold a single value.*1-based"):
        code = main(["train", str(recipe), "--set", "data.bands=[1,2]", "--set", "train.epochs=1",
                     "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 0
