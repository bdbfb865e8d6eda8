"""A multi-label run end to end through the CLI: train -> evaluate -> predict a folder -> export (issue 10).

Before the typed checkpoint reader, ``predict`` crashed on every multi-label run (``float()`` of the list of
per-class thresholds). Here the thresholds chosen on validation must appear in the checkpoint, the
evaluation and the export, and be applied class by class in ``predictions.csv``, whose probability
columns must line up with the classes and agree with the exported ONNX model.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["Effusion", "Mass"]
# film i carries FINDINGS[i % 4]; patient i // 2 holds two films, so every patient (hence every split of
# whole patients) has positives and negatives of both labels and a threshold can be chosen per label
FINDINGS = ["Effusion", "Mass", "No Finding", "Effusion|Mass"]


def _films(root: Path, n: int = 24) -> None:
    """Grey 36x36 PNGs: Effusion brightens the left half, Mass the right half (a learnable signal)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        finding = FINDINGS[i % 4]
        film = rng.normal(90, 20, size=(36, 36))
        film[:, :18] += 80 * ("Effusion" in finding)
        film[:, 18:] += 80 * ("Mass" in finding)
        name = f"{i:08d}_000.png"
        Image.fromarray(np.clip(film, 0, 255).astype(np.uint8)).save(root / "images" / name)
        rows.append({"Image Index": name, "Finding Labels": finding, "Patient ID": str(i // 2)})
    with (root / "Data_Entry_2017.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["Image Index", "Finding Labels", "Patient ID"])
        writer.writeheader()
        writer.writerows(rows)


def _recipe(path: Path, root: Path) -> Path:
    recipe = {
        "name": "tiny_multilabel",
        "task": "classification",
        "data": {
            "root": str(root),
            "scale": 1 / 255,
            "normalize": "card",
            "image_size": 32,
            "grayscale": True,
            "cache": False,
            "augment": "none",
            "classes": CLASSES,
            "source": {
                "kind": "multilabel_csv",
                "index": "Data_Entry_2017.csv",
                "path_column": "Image Index",
                "labels_column": "Finding Labels",
                "group_column": "Patient ID",
                "image_dir": "images",
            },
            "split": {"method": "group", "val": 0.25, "test": 0.25, "seed": 0},
        },
        "model": {"backbone": "resnet18", "weights": "none", "multilabel": True},
        "train": {"epochs": 1, "batch_size": 4, "num_workers": 0, "warmup_epochs": 0.0},
        "eval": {"metric": "auroc", "operating_point": "youden", "bootstrap": 10, "gradcam": 2},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def _cli(*args: str) -> str:
    """``python -m resnet_apps ARGS`` in a subprocess, as a user runs it; returns stdout."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    done = subprocess.run(
        [sys.executable, "-m", "resnet_apps", *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, f"{args[0]} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.subprocess
def test_multilabel_train_evaluate_predict_export(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")  # an optional runtime, not the project's own code
    import onnxruntime as ort

    from resnet_apps.models.meta import CheckpointMeta
    from resnet_apps.predict.folder import ImageLoader

    data = tmp_path / "data"
    _films(data)
    run = tmp_path / "run"
    _cli("train", str(_recipe(tmp_path / "recipe.yaml", data)), "--out", str(run))

    # the checkpoint holds one threshold per class, in class order
    meta = CheckpointMeta.read(run / "checkpoints" / "best.json")
    assert meta.mode == "multilabel" and meta.classes == tuple(CLASSES)
    thresholds = meta.operating_threshold
    assert isinstance(thresholds, tuple) and len(thresholds) == 2
    assert all(0.0 <= t <= 1.0 + 1e-9 for t in thresholds)
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["operating_threshold"] == list(thresholds)
    # the Grad-CAM gallery judges multi-label films with sigmoid outputs and the same thresholds
    assert len(trained["gradcam"]) == 2
    for entry in trained["gradcam"]:
        assert set(entry["pred"].split("|")) <= {"", *CLASSES} and entry["correct"] == (
            entry["pred"] == entry["true"]
        )

    # evaluate: the same per-class thresholds judge the test split
    _cli("evaluate", str(run), "--split", "test", "--out", str(tmp_path / "eval"))
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["operating_threshold"] == list(thresholds)
    assert evaluated["evaluation"]["mode"] == "multilabel"
    assert [row["class"] for row in evaluated["evaluation"]["per_class"]] == CLASSES
    assert evaluated["evaluation"]["n_samples"] == 6  # 3 of 12 patients, 2 films each

    # predict the whole folder: columns line up with the classes, labels follow each class's threshold
    _cli("predict", str(run), str(data / "images"), "--out", str(tmp_path / "pred"), "--no-progress")
    with (tmp_path / "pred" / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:5] == ["image_id", "path", "p_Effusion", "p_Mass", "pred"]
    assert {row["threshold"] for row in rows} == {"|".join(f"{t:.4g}" for t in thresholds)}
    assert len(rows) == 24 and not (tmp_path / "pred" / "errors.csv").read_text().strip().count("\n")
    checked = 0
    for row in rows:
        probs = [float(row[f"p_{c}"]) for c in CLASSES]
        assert all(0.0 <= p <= 1.0 for p in probs)
        for c, p, t in zip(CLASSES, probs, thresholds, strict=True):
            # youden thresholds are validation probabilities, and validation films are in the folder too:
            # a probability within CSV rounding of its threshold cannot be judged from 6 decimals
            if abs(p - t) > 1e-6:
                assert (c in row["pred"].split("|")) == (p >= t), (row, thresholds)
                checked += 1
    assert checked >= 2 * len(rows) - 6  # at most the 6 validation films sit on a threshold
    # export: the side file carries the thresholds; ONNX reproduces predict's probabilities per column
    _cli("export", str(run), "--format", "onnx", "--out", str(tmp_path / "export"))
    side = json.loads((tmp_path / "export" / "model.onnx.json").read_text())
    assert side["multilabel"] is True and side["classes"] == CLASSES
    assert side["operating_threshold"] == list(thresholds) and side["parity"]["ok"]
    assert side["input"]["shape"] == ["batch", 1, 32, 32]
    session = ort.InferenceSession(
        str(tmp_path / "export" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    loader = ImageLoader(meta)
    x = torch.stack([loader(data / "images" / row["path"]) for row in rows]).numpy()
    logits = session.run(None, {"image": x})[0]
    onnx_prob = 1 / (1 + np.exp(-logits.astype(np.float64)))
    csv_prob = np.array([[float(row[f"p_{c}"]) for c in CLASSES] for row in rows])
    np.testing.assert_allclose(onnx_prob, csv_prob, atol=2e-5)  # 6-decimal CSV vs float32 ONNX
