"""Checkpoints: save_checkpoint / load_run round trips, atomic writes (the resume state is train.state's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resnet_apps import build_model, load_run
from resnet_apps.errors import CheckpointError
from resnet_apps.models.checkpoint import save_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    # On a shared 2-core machine OpenMP threads spin against each other: one thread is ~20x faster here
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


META = {
    "classes": ["a", "b", "c"],
    "preprocessing": {
        "bands": ["B02", "B03", "B04", "B08"],
        "scale": 0.0001,
        "mean": [0.1] * 4,
        "std": [0.2] * 4,
        "image_size": 32,
        "dicom_window": None,
        "grayscale": False,
    },
    "epoch": 3,
}


@pytest.mark.parametrize(
    ("task", "kwargs"),
    [
        ("classification", dict(num_classes=3, multilabel=True, dropout=0.2, pooling="avgmax")),
        ("segmentation", dict(num_classes=3, fpn_channels=32)),
    ],
)
def test_round_trip(tmp_path: Path, task: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = build_model(task, backbone="resnet18", in_chans=4, **kwargs).eval()
    stem = tmp_path / "run" / "checkpoints" / "best"
    save_checkpoint(stem, model, META)
    assert sorted(p.name for p in stem.parent.iterdir()) == [
        "best.json",
        "best.safetensors",
    ]  # no temp files left

    loaded, meta = load_run(tmp_path / "run")
    assert meta["task"] == task and meta["format_version"] == 1 and meta["classes"] == ["a", "b", "c"]
    assert meta["model"] == model.model_config and meta["model"]["in_chans"] == 4
    assert meta["weights_source"] == "none" and meta["imagenet_weights_used"] is False
    assert not loaded.training
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_which_and_stem_paths(tmp_path: Path) -> None:
    model = build_model("classification", backbone="resnet18", num_classes=2)
    save_checkpoint(tmp_path / "checkpoints" / "last.safetensors", model, {"epoch": 7})  # suffix is dropped
    assert load_run(tmp_path, which="last")[1]["epoch"] == 7
    assert load_run(tmp_path / "checkpoints" / "last")[1]["epoch"] == 7
    assert load_run(tmp_path / "checkpoints" / "last.json")[1]["epoch"] == 7
    with pytest.raises(CheckpointError, match="no checkpoint 'best'"):
        load_run(tmp_path)


def test_mismatched_meta_is_refused(tmp_path: Path) -> None:
    model = build_model("classification", backbone="resnet18", num_classes=2)
    save_checkpoint(tmp_path / "best", model, {})
    meta = json.loads((tmp_path / "best.json").read_text())
    meta["model"]["num_classes"] = 5  # tensors say 2
    (tmp_path / "best.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_run(tmp_path / "best")
    (tmp_path / "best.json").write_text(json.dumps({"epoch": 1}))
    with pytest.raises(CheckpointError, match="lacks 'task'"):
        load_run(tmp_path / "best")


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    model = build_model("classification", backbone="resnet18", num_classes=2)
    save_checkpoint(tmp_path / "best", model, {"epoch": 1})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "best", model, {"epoch": 2, "bad": object()})  # not JSON
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 1  # the old JSON is whole
    assert not list(tmp_path.glob(".*.tmp"))
