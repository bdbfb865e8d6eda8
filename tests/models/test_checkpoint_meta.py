"""CheckpointMeta: the one checked reader of checkpoint JSON; corrupt checkpoints give a typed error naming the file."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_apps.cli import main
from resnet_apps.errors import CheckpointError
from resnet_apps.models.checkpoint import load_run, save_checkpoint
from resnet_apps.models.decision import Decision
from resnet_apps.models.heads import build_model
from resnet_apps.models.meta import CheckpointMeta

PRE = {"bands": None, "scale": 1 / 255, "mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 16}
MULTILABEL = {
    "format_version": 1,
    "task": "classification",
    "model": {"backbone": "resnet18", "in_chans": 3, "num_classes": 3, "multilabel": True},
    "classes": ["Effusion", "Mass", "Nodule"],
    "operating_threshold": [0.2, 0.5, 0.9],
    "preprocessing": PRE,
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """MULTILABEL with one dotted field replaced (``...`` deletes it)."""
    meta = copy.deepcopy(MULTILABEL)
    *parents, leaf = path.split(".")
    node = meta
    for part in parents:
        node = node[part]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return meta


def test_multilabel_thresholds_are_per_class_and_applied() -> None:
    meta = CheckpointMeta.from_dict(MULTILABEL, source="best.json")
    assert meta.mode == "multilabel" and meta.thresholds() == (0.2, 0.5, 0.9)
    assert meta.classes == ("Effusion", "Mass", "Nodule") and meta["classes"] == MULTILABEL["classes"]
    decision = Decision.from_meta(meta)
    prob = torch.tensor([[0.3, 0.3, 0.3], [0.1, 0.6, 0.95], [0.19, 0.49, 0.89]])
    # row 0: only Effusion reaches its 0.2; row 1: Mass and Nodule; row 2: each just below its own threshold
    assert decision.labels(prob) == ["Effusion", "Mass|Nodule", ""]
    # one number for all classes is accepted and broadcast
    single = CheckpointMeta.from_dict(_with("operating_threshold", 0.4))
    assert single.thresholds() == (0.4, 0.4, 0.4)
    assert Decision.from_meta(single).labels(prob) == ["", "Mass|Nodule", "Mass|Nodule"]


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        (["not", "a", "mapping"], "JSON object"),  # a list at top level
        (_with("task", ...), "lacks 'task'"),  # missing key
        (_with("model", "resnet18"), "lacks 'task' or 'model'"),  # model block of the wrong type
        (_with("task", "detection"), "'task'"),  # unknown task
        (_with("format_version", 9), "format_version 9 is newer"),  # from a later release
        (_with("model.num_classes", "3"), "'model.num_classes'"),  # a string where an int belongs
        (_with("model.multilabel", "yes"), "'model.multilabel'"),
        (_with("model.pooling", "median"), "'model.pooling'"),
        (_with("model.dropout", 1.5), "'model.dropout'"),
        (_with("classes", "Effusion|Mass|Nodule"), "'classes'"),  # one string, not a list
        (_with("classes", ["Effusion", "Mass"]), "3 names: the model has 3 outputs"),  # misaligned
        (_with("classes", ["Mass", "Mass", "Nodule"]), "distinct"),
        (_with("operating_threshold", [0.2, 0.5]), "3 numbers, one per class"),  # too few thresholds
        (_with("operating_threshold", [0.2, "x", 0.9]), "'operating_threshold'"),
        (_with("operating_threshold", "0.5"), "'operating_threshold'"),
        (_with("positive_class", "Cat"), "'positive_class'"),
        (_with("preprocessing.mean", [0.5, 0.5]), "'preprocessing.mean'"),  # 2 values for 3 channels
        (_with("preprocessing.std", [0.25, 0.0, 0.25]), "'preprocessing.std'"),
        (_with("preprocessing.scale", -1), "'preprocessing.scale'"),
        (_with("preprocessing.image_size", "16"), "'preprocessing.image_size'"),
        (_with("preprocessing", [1, 2]), "'preprocessing' is missing or not a mapping"),
    ],
)
def test_invalid_metadata_names_file_and_field(meta: Any, field: str) -> None:
    with pytest.raises(CheckpointError, match=field) as info:
        CheckpointMeta.from_dict(meta, source="run/checkpoints/best.json")
    assert str(info.value).startswith("run/checkpoints/best.json")


def test_binary_and_list_threshold_rules() -> None:
    binary = _with("model.multilabel", False)
    binary["model"]["num_classes"] = 1
    binary["classes"] = ["NORMAL", "PNEUMONIA"]  # one logit: two names
    binary["operating_threshold"] = 0.7
    meta = CheckpointMeta.from_dict(binary)
    assert meta.mode == "binary" and meta.thresholds() == (0.7,)
    assert Decision.from_meta(meta).labels(torch.tensor([[0.69], [0.71]])) == ["NORMAL", "PNEUMONIA"]
    binary["operating_threshold"] = [0.7, 0.7]
    with pytest.raises(CheckpointError, match="needs model.multilabel"):
        CheckpointMeta.from_dict(binary)


def _saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("classification", "resnet18", in_chans=3, num_classes=3, multilabel=True)
    meta = {k: v for k, v in MULTILABEL.items() if k not in ("model", "task", "format_version")}
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best", model, meta)
    return tmp_path / "run"


def test_save_refuses_metadata_load_would_refuse(tmp_path: Path) -> None:
    model = build_model("classification", "resnet18", num_classes=3)
    with pytest.raises(CheckpointError, match="3 names: the model has 3 outputs"):
        save_checkpoint(tmp_path / "best", model, {"classes": ["a", "b"]})
    assert not list(tmp_path.iterdir())  # nothing written


def test_misaligned_class_list_is_refused_by_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: a class list one longer than the outputs used to exit 0 with a probability in `pred`."""
    run = _saved(tmp_path)
    path = run / "checkpoints" / "best.json"
    meta = json.loads(path.read_text())
    meta["classes"].append("Pneumothorax")
    path.write_text(json.dumps(meta))
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, dtype=np.uint8)).save(images / "a.png")
    code = main(["predict", str(run), str(images), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and "'classes'" in err and "4 names" not in err
    assert "3 names: the model has 3 outputs" in err
    assert not (tmp_path / "out" / "predictions.csv").exists()


def _header(length: int) -> bytes:
    return struct.pack("<Q", length)


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("empty", lambda data: b""),
        ("truncated", lambda data: data[: len(data) // 2]),  # killed mid-copy
        ("absurd header", lambda data: _header(1 << 62) + data[8:]),  # claims a 4 EiB JSON header
        ("header past the end", lambda data: _header(len(data)) + data[8:]),
        ("garbage header", lambda data: _header(16) + b"\xff" * 16 + data[24:]),
    ],
)
def test_corrupt_safetensors_gives_a_typed_error(tmp_path: Path, name: str, damage: Any) -> None:
    run = _saved(tmp_path)
    tensors = run / "checkpoints" / "best.safetensors"
    tensors.write_bytes(damage(tensors.read_bytes()))
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as info:
        load_run(run)
    assert str(tensors) in str(info.value), name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ('{"task": "classification", "model": {', "not valid JSON"),  # truncated
        ("\x00\x01\x02", "not valid JSON"),
        ("[1, 2, 3]", "must be a JSON object"),
        (
            '{"task": "classification", "model": {"backbone": "resnet18", "num_classes": "three"}}',
            "num_classes",
        ),
    ],
)
def test_corrupt_json_gives_a_typed_error(tmp_path: Path, text: str, message: str) -> None:
    run = _saved(tmp_path)
    path = run / "checkpoints" / "best.json"
    path.write_text(text)
    with pytest.raises(CheckpointError, match=message) as info:
        load_run(run)
    assert str(info.value).startswith(str(path))


def test_round_trip_keeps_thresholds_and_mapping_view(tmp_path: Path) -> None:
    model, meta = load_run(_saved(tmp_path))
    assert isinstance(meta, CheckpointMeta) and meta.source.endswith("best.json")
    assert meta.operating_threshold == (0.2, 0.5, 0.9) and meta["operating_threshold"] == [0.2, 0.5, 0.9]
    assert meta.model.multilabel and meta.model.num_classes == 3 and model.multilabel
    assert meta.require_preprocessing().std == (0.25, 0.25, 0.25)


def test_dicts_built_in_code_may_leave_out_task_and_model() -> None:
    """coerce (a caller's own dict) defaults them; from_dict / read (a checkpoint file) require them."""
    meta = CheckpointMeta.coerce({"classes": ["NORMAL", "PNEUMONIA"], "operating_threshold": 0.6})
    assert meta.task == "classification" and meta.model.num_classes == 2 and meta.thresholds() == (0.6,)
    with pytest.raises(CheckpointError, match="'classes'"):  # what is given is still checked
        CheckpointMeta.coerce({"classes": "NORMAL", "model": {"num_classes": 2}})
    with pytest.raises(CheckpointError, match="lacks 'task'"):
        CheckpointMeta.from_dict({"classes": ["NORMAL", "PNEUMONIA"]})
