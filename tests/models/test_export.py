"""Export: ONNX (onnxruntime) and TorchScript reproduce PyTorch's outputs; preprocessing travels beside the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.export import export_run, parity, sample_inputs
from resnet_apps.models.heads import build_model

PRE = {
    "bands": ["B04", "B08"],
    "scale": 0.0001,
    "mean": [0.1, 0.3],
    "std": [0.05, 0.1],
    "image_size": 32,
    "dicom_window": None,
    "grayscale": False,
}


def _run(tmp_path: Path, task: str) -> Path:
    torch.manual_seed(0)
    model = build_model(task, "resnet18", in_chans=2, num_classes=3, fpn_channels=16)
    run = tmp_path / f"run_{task}"
    save_checkpoint(
        run / "checkpoints" / "best",
        model,
        {"classes": ["water", "crop", "urban"], "preprocessing": PRE, "operating_threshold": 0.5},
    )
    return run


@pytest.mark.parametrize(
    ("task", "fmt", "size"),
    [
        ("segmentation", "onnx", 64),  # a 64-px tile: logits [B, K, 64, 64]
        ("classification", "torchscript", None),
    ],
)
def test_export_reproduces_pytorch(tmp_path: Path, task: str, fmt: str, size: int | None) -> None:
    pytest.importorskip("onnxruntime")
    info = export_run(_run(tmp_path, task), fmt, size=size)
    path = Path(info["path"])
    assert path.is_file() and path.stat().st_size > 1_000_000  # resnet18 weights are in the file
    assert info["parity"]["ok"] and info["parity"]["max_abs_diff"] < 1e-4
    assert info["parity"]["batches"] == [1, 3]  # a batch size other than the traced one
    side = json.loads(path.with_name(path.name + ".json").read_text())
    assert side["preprocessing"]["bands"] == ["B04", "B08"] and side["preprocessing"]["scale"] == 0.0001
    assert side["classes"] == ["water", "crop", "urban"]
    expected_size = size or 32
    assert side["input"]["shape"] == ["batch", 2, expected_size, expected_size]


def test_parity_detects_a_different_model(tmp_path: Path) -> None:
    """Classification to ONNX at the checkpoint's chip size passes; another model's outputs do not."""
    pytest.importorskip("onnxruntime")
    info = export_run(_run(tmp_path, "classification"), "onnx")
    assert info["parity"]["ok"] and info["input"]["shape"] == ["batch", 2, 32, 32]
    torch.manual_seed(1)
    other = build_model("classification", "resnet18", in_chans=2, num_classes=3).eval()
    meta = {"model": {"in_chans": 2}}
    result = parity(other, info["path"], "onnx", [sample_inputs(meta, 32, batch=2, seed=5)])
    assert not result["ok"] and result["max_abs_diff"] > 1e-3
