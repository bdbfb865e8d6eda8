"""No patient identifier in any output: plant names/IDs/birth dates in DICOMs, run all, grep every file."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import torch
import yaml
from dicom_fixtures import make_dicom  # noqa: I001

PLANTED = ("Planted^Secretname", "PHI-ID-7731", "19230405")


def _dataset(root: Path) -> Path:
    """16 DICOM chest-like films of 8 patients; the patient IDs also sit in the index CSV's group column."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        patient, label = f"{PLANTED[1]}-{i // 2}", i % 2
        pixels = rng.integers(100, 900, size=(48, 48)).astype(np.uint16)
        pixels[8:40, 8:40] += 1500 * label  # "PNEUMONIA" films carry a bright patch
        name = f"film_{i:02d}.dcm"
        make_dicom(
            root / name,
            pixels,
            patient_name=f"{PLANTED[0]}{i}",
            patient_id=patient,
            birth_date=PLANTED[2],
            window=(1200, 2400),
        )
        rows.append({"filename": name, "label": ["NORMAL", "PNEUMONIA"][label], "patient": patient})
    with (root / "index.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["filename", "label", "patient"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_no_patient_identifier_reaches_any_output(tmp_path: Path) -> None:
    from resnet_apps.cli import main

    torch.set_num_threads(1)
    data = _dataset(tmp_path / "data")
    # positive control: the inputs really carry the identifiers the grep looks for
    assert all(secret.encode() in (data / "film_01.dcm").read_bytes() for secret in PLANTED)
    recipe = {
        "name": "phi",
        "task": "classification",
        "data": {
            "root": str(data),
            "grayscale": True,
            "normalize": "none",
            "image_size": 32,
            "augment": "chest_xray",
            "source": {"kind": "csv", "index": "index.csv", "group_column": "patient"},
            "split": {"method": "group", "val": 0.25, "test": 0.25, "seed": 0},
            "cache": False,
        },
        "model": {"backbone": "resnet18", "weights": "none"},
        "train": {"epochs": 1, "batch_size": 4, "num_workers": 0},
        "eval": {"metric": "auroc", "operating_point": "youden", "bootstrap": 20, "gradcam": 2},
    }
    path = tmp_path / "phi.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    assert main(["train", str(path), "--out", str(run)]) == 0
    assert main(["evaluate", str(run), "--split", "val"]) == 0
    assert main(["report", str(run)]) == 0
    outputs = [run]
    if importlib.util.find_spec("resnet_apps.predict.folder") is not None:
        assert (
            main(
                [
                    "predict",
                    str(run),
                    str(data),
                    "--out",
                    str(tmp_path / "pred"),
                    "--gradcam",
                    "--no-progress",
                ]
            )
            == 0
        )
        outputs.append(tmp_path / "pred")
    files = [f for out in outputs for f in out.rglob("*") if f.is_file()]
    assert any(f.name == "metrics.json" for f in files) and any(f.suffix == ".png" for f in files)
    for f in files:
        content = f.read_bytes()
        for secret in PLANTED:
            assert secret.encode() not in content, f"{secret!r} found in {f.relative_to(tmp_path)}"
            assert secret.encode("utf-16-le") not in content, f"{secret!r} (UTF-16) found in {f}"
    # the grouping still worked: patients never cross splits, and they are counted (hashed) in split.json
    split = yaml.safe_load((run / "split.json").read_text())
    assert split["leakage"]["ok"] is True and sum(split["groups"].values()) == 8
