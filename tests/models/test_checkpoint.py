"""Checkpoints: save_checkpoint / load_run round trips, atomic writes, resume state without pickles."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_apps import build_model, load_run
from resnet_apps.errors import CheckpointError
from resnet_apps.models.checkpoint import load_state, rng_state, save_checkpoint, save_state, set_rng_state


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


def _train_steps(model: torch.nn.Module, optimizer, scheduler, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 3, generator=generator)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def _make(model: torch.nn.Module):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return optimizer, scheduler


def test_resume_state_round_trip_adamw_lambdalr(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    optimizer, scheduler = _make(model)
    _train_steps(model, optimizer, scheduler, 3, seed=1)
    save_state(
        tmp_path / "last",
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": 3,
            "best": float("inf"),
            "note": None,
        },
    )
    assert (tmp_path / "last.state.safetensors").is_file() and (tmp_path / "last.state.json").is_file()

    state = load_state(tmp_path / "last")
    original = optimizer.state_dict()
    assert state["epoch"] == 3 and state["best"] == float("inf") and state["note"] is None
    assert state["optimizer"]["param_groups"] == original["param_groups"]  # betas stay a tuple, ids stay ints
    assert set(state["optimizer"]["state"]) == {0, 1, 2, 3}
    for pid, entry in original["state"].items():
        for key, value in entry.items():
            assert torch.equal(state["optimizer"]["state"][pid][key], value)
    assert state["scheduler"] == scheduler.state_dict()

    # resuming gives the same next steps as carrying on
    resumed = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    resumed.load_state_dict(model.state_dict())
    optimizer2, scheduler2 = _make(resumed)
    optimizer2.load_state_dict(state["optimizer"])
    scheduler2.load_state_dict(state["scheduler"])
    _train_steps(model, optimizer, scheduler, 2, seed=5)
    _train_steps(resumed, optimizer2, scheduler2, 2, seed=5)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert scheduler2.get_last_lr() == scheduler.get_last_lr()


def test_rng_state_round_trip(tmp_path: Path) -> None:
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    save_state(tmp_path / "last", {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    loaded = load_state(tmp_path / "last")["rng"]
    assert loaded["torch"].dtype == torch.uint8 and loaded["numpy"][1].dtype == np.uint32
    set_rng_state(loaded)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_state_refuses_objects(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="lambda_fn"):
        save_state(tmp_path / "last", {"lambda_fn": lambda x: x})
    with pytest.raises(CheckpointError, match="no resume state"):
        load_state(tmp_path / "nothing")
