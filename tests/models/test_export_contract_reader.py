"""The exported JSON is the whole preprocessing contract: a reader written from it alone (numpy, PIL,
pydicom, rasterio, onnxruntime; no resnet_apps) reproduces ``predict``'s scores on PNG, GeoTIFF and DICOM
(issue 12 item 6)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pydicom
import pytest
import rasterio
import torch
from dicom_fixtures import make_dicom
from PIL import Image
from rasterio.transform import from_origin

from resnet_apps.cli import main
from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.heads import build_model

# --- the independent reader: only what model.onnx.json says -------------------------------------


def _block_mean(x: np.ndarray, k: int) -> np.ndarray:
    """INTER_AREA for an integer factor k: the mean of each k x k block ([C, H, W])."""
    c, h, w = x.shape
    return x.reshape(c, h // k, k, w // k, k).mean(axis=(2, 4))


def read_by_contract(path: Path, contract: dict[str, Any], in_chans: int) -> np.ndarray:
    """[in_chans, S, S] float32 model input for one file, following ``contract`` step by step."""
    head = path.read_bytes()[:132]
    valid = None
    if head[128:132] == b"DICM":  # step 1-2: DICOM display values in [0, 1], not scaled
        ds = pydicom.dcmread(path)
        x = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(
            ds.get("RescaleIntercept", 0)
        )
        assert (
            contract["dicom"]["window_setting"] is None and "first WindowCenter" in contract["dicom"]["rule"]
        )
        c, w = float(ds.WindowCenter), float(ds.WindowWidth)
        y = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)  # LINEAR, as the rule writes it
        if ds.PhotometricInterpretation == "MONOCHROME1":
            y = 1 - y
        image = y[None].astype(np.float32)
    elif head[:4] in (b"II*\x00", b"MM\x00*"):  # step 3: bands by name, "bandN" = band N (1-based)
        with rasterio.open(path) as src:
            numbers = [int(b[4:]) for b in contract["bands"]["order"]]
            raw = src.read(numbers)
            valid = ~np.all(raw == src.nodata, axis=0) if src.nodata is not None else None
        image = raw.astype(np.float32) * np.float32(contract["scale"])
    else:  # PNG: grey 1 channel, RGB 3
        arr = np.asarray(Image.open(path))
        image = (arr[None] if arr.ndim == 2 else arr[:, :, :3].transpose(2, 0, 1)).astype(np.float32)
        image *= np.float32(contract["scale"])
    if contract["grayscale"] and image.shape[0] == 3:  # step 4
        image = image.mean(axis=0, keepdims=True)
    if valid is not None:  # step 5
        image[:, ~valid] = 0
    size = contract["resize"]["to"][0]  # step 6: shrinking -> area (block mean); mask nearest (top-left)
    assert contract["resize"]["method"].startswith("OpenCV INTER_AREA when the output has fewer pixels")
    k = image.shape[1] // size
    image = _block_mean(image, k)
    if valid is not None:
        valid = valid[::k, ::k]
        image[:, ~valid] = 0
    if image.shape[0] == 1 and in_chans > 1:  # step 7
        image = np.repeat(image, in_chans, axis=0)
    mean = np.asarray(contract["normalise"]["mean"], np.float32)[:, None, None]  # step 8
    std = np.asarray(contract["normalise"]["std"], np.float32)[:, None, None]
    image = np.nan_to_num((image - mean) / std)
    if valid is not None:
        image[:, ~valid] = 0
    return image.astype(np.float32)


def score(onnx: Path, x: np.ndarray, output: dict[str, Any]) -> np.ndarray:
    logits = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(
        None, {"image": x[None]}
    )[0][0]
    if output["activation"] == "sigmoid":
        return 1 / (1 + np.exp(-logits))
    e = np.exp(logits - logits.max())
    return e / e.sum()


# --- runs, files and the comparison --------------------------------------------------------------


def _run(root: Path, in_chans: int, outputs: int, classes: list[str], pre: dict[str, Any]) -> Path:
    torch.manual_seed(in_chans)
    meta = {
        "task": "classification",
        "classes": classes,
        "positive_class": classes[-1] if outputs == 1 else None,
        "operating_threshold": 0.5 if outputs == 1 else None,
        "model": {"backbone": "resnet18", "in_chans": in_chans, "num_classes": outputs, "multilabel": False},
        "preprocessing": {"dicom_window": None, "grayscale": False, **pre},
    }
    save_checkpoint(root / "checkpoints" / "best", build_model("classification", "resnet18", in_chans=in_chans,
                    num_classes=outputs), meta)  # fmt: skip
    return root


def _check(run: Path, inputs: Path, tmp: Path) -> int:
    assert main(["export", str(run), "--format", "onnx"]) == 0
    info = json.loads((run / "export" / "model.onnx.json").read_text())
    contract = {**info["contract"], "grayscale": info["preprocessing"]["grayscale"]}
    out = tmp / f"pred-{run.name}"
    assert main(["predict", str(run), str(inputs), "--out", str(out), "--no-progress"]) == 0
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        x = read_by_contract(inputs / row["path"], contract, info["input"]["shape"][1])
        mine = score(run / "export" / "model.onnx", x, contract["output"])
        theirs = [float(row[f"p_{c}"]) for c in (info["classes"][-1:] if len(mine) == 1 else info["classes"])]
        np.testing.assert_allclose(mine, theirs, atol=1e-4, err_msg=row["path"])
    return len(rows)


def test_png_and_dicom_by_the_contract(tmp_path: Path) -> None:
    run = _run(tmp_path / "grey", 1, 1, ["NORMAL", "PNEUMONIA"],
               {"bands": None, "scale": 1 / 255, "mean": [0.45], "std": [0.22], "image_size": 16,
                "grayscale": True})  # fmt: skip
    files = tmp_path / "films"
    files.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(files / "grey.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(files / "rgb.png")
    make_dicom(files / "film.dcm", rng.integers(0, 4000, (32, 32)).astype(np.uint16), window=(1000, 2000),
               slope=2.0, intercept=-100.0)  # fmt: skip
    make_dicom(files / "inverted.dcm", rng.integers(0, 4000, (32, 32)).astype(np.uint16), window=(1800, 3000),
               photometric="MONOCHROME1")  # fmt: skip
    assert _check(run, files, tmp_path) == 4


def test_geotiff_by_the_contract(tmp_path: Path) -> None:
    run = _run(tmp_path / "ms", 3, 3, ["Crop", "Forest", "Water"],
               {"bands": ["band3", "band1", "band2"], "scale": 1e-4, "mean": [0.1, 0.12, 0.09],
                "std": [0.03, 0.04, 0.02], "image_size": 16})  # fmt: skip
    chips = tmp_path / "chips"
    chips.mkdir()
    rng = np.random.default_rng(1)
    for n in range(2):
        data = rng.integers(100, 3000, (4, 32, 32)).astype(np.uint16)
        data[:, :4, :8] = 0  # nodata block on the 2 x 2 grid: invalid, zero after normalisation
        with rasterio.open(chips / f"chip{n}.tif", "w", driver="GTiff", width=32, height=32, count=4,
                           dtype="uint16", nodata=0, crs="EPSG:32632",
                           transform=from_origin(500000, 5000000, 10, 10)) as dst:  # fmt: skip
            dst.write(data)
    assert _check(run, chips, tmp_path) == 2


@pytest.mark.parametrize("window", [None, "percentile", (40.0, 400.0)])
def test_contract_states_the_dicom_rule_in_force(window: Any) -> None:
    from resnet_apps.models.export import preprocessing_contract

    meta = {"preprocessing": {"dicom_window": window, "image_size": 64}, "model": {"num_classes": 1}}
    rule = preprocessing_contract(meta, 64)["dicom"]["rule"]
    expected = {None: "first WindowCenter", "percentile": "0.5 and 99.5 percentiles"}.get(
        window, "(40.0, 400.0)"
    )
    assert expected in rule and "MONOCHROME1 inverted" in rule
