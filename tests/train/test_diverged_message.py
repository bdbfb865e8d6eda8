"""A non-finite loss: the message mentions a kept checkpoint only when one exists."""

from __future__ import annotations

from pathlib import Path

import torch

from resnet_apps.errors import TrainingDivergedError
from resnet_apps.train.diverged import loss_not_finite_error


def test_no_checkpoint_yet_is_said_plainly(tmp_path: Path) -> None:
    error = loss_not_finite_error(tmp_path, float("nan"), 1, 0, torch.zeros(2), {}, None, "classification")
    assert isinstance(error, TrainingDivergedError)
    text = str(error)
    assert "loss is nan at epoch 1, step 1" in text and "no checkpoint had been written yet" in text
    assert "last good checkpoint" not in text and "Lower train.lr" in text


def test_existing_checkpoint_is_named(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.state.safetensors").write_bytes(b"x")
    error = loss_not_finite_error(tmp_path, float("inf"), 3, 4, torch.zeros(2), {}, None, "classification")
    assert f"the last good checkpoint is kept in {tmp_path / 'checkpoints'}" in str(error)
    assert "epoch 3, step 5" in str(error)
