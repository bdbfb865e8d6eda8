"""LoopState: the loop position survives the resume state file exactly, and its epoch bookkeeping."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from resnet_apps.errors import CheckpointError
from resnet_apps.train.run import LoopState
from resnet_apps.train.state import STATE_NAME, load_state, save_state


def _model_and_optimizer(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.AdamW(
        [{"params": list(model.parameters()), "lr": 0.01, "base_lr": 0.01, "backbone": False}], lr=0.01
    )
    return model, optimizer


def _mid_epoch_state() -> LoopState:
    # epoch 3 in progress after 5 steps; two finished epochs behind it, the first with an undefined metric
    history = [
        {"epoch": 1, "train_loss": 0.9, "val_metric": None, "lr": 0.001, "backbone_frozen": True},
        {"epoch": 2, "train_loss": 0.7, "val_metric": 0.625, "lr": 0.0005, "backbone_frozen": False},
    ]
    return LoopState(
        epoch=3,
        step=5,
        complete=False,
        history=history,
        best=0.625,
        best_epoch=2,
        bad_epochs=0,
        loss_sum=12.345678901234567,  # full float precision must survive JSON
        loss_n=20,
        seconds=3.25,
    )


def test_loop_state_round_trips_through_the_resume_state_file(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer(0)
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()  # the optimiser now has state (exp_avg, exp_avg_sq, step) to save
    loop = _mid_epoch_state()
    save_state(tmp_path, model, optimizer, loop)

    fresh, fresh_opt = _model_and_optimizer(1)  # different weights, no optimiser state
    loaded = load_state(tmp_path, fresh, fresh_opt)
    assert loaded == loop and loaded is not loop
    assert loaded.loss_sum == 12.345678901234567 and isinstance(loaded.loss_n, int)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # weights and BatchNorm statistics
    saved, restored = optimizer.state_dict(), fresh_opt.state_dict()
    for pid, slots in saved["state"].items():
        for name, value in slots.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(restored["state"][pid][name]))
    # what tests/test_train_resume.py polls: the same plain keys, readable from the header alone
    with safe_open(str(tmp_path / STATE_NAME), framework="pt") as handle:
        header = json.loads((handle.metadata() or {})["resnet_apps_state"])["loop"]
    assert (header["epoch"], header["step"], header["complete"]) == (3, 5, False)
    assert header == loop.to_dict()


def test_saving_copies_the_state_so_later_steps_do_not_leak_into_it(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer(0)
    loop = _mid_epoch_state()
    save_state(tmp_path, model, optimizer, loop)
    loop.step, loop.loss_sum = 6, 99.0
    loop.history.append({"epoch": 3})
    loaded = load_state(tmp_path, *_model_and_optimizer(0))
    assert (loaded.step, loaded.loss_sum, len(loaded.history)) == (5, 12.345678901234567, 2)


@pytest.mark.parametrize(
    "change, word",
    [
        (lambda d: d.pop("loss_n"), "missing"),  # an older state without a counter: no silent zero
        (lambda d: d.update(rng="x"), "unknown"),  # a newer state with a field this code cannot honour
    ],
)
def test_a_loop_position_with_other_keys_is_refused(
    change: Callable[[dict[str, Any]], object], word: str
) -> None:
    data = LoopState().to_dict()
    change(data)
    with pytest.raises(CheckpointError, match=f"{word} keys .*start the run anew"):
        LoopState.from_dict(data)


def test_end_epoch_tracks_the_best_metric_and_patience() -> None:
    loop = LoopState()
    # rows: (metric, improved?, best after, best_epoch after, bad_epochs after)
    cases = [
        (math.nan, True, None, 1, 0),  # the first epoch always counts, an undefined metric stays None
        (0.5, True, 0.5, 2, 0),  # nothing defined yet: any real value improves
        (0.5, False, 0.5, 2, 1),  # equal is no improvement
        (math.nan, False, 0.5, 2, 2),  # an undefined metric never improves on a real one
        (0.75, True, 0.75, 5, 0),
    ]
    for epoch, (metric, improved, best, best_epoch, bad) in enumerate(cases, start=1):
        loop.epoch, loop.step, loop.loss_n = epoch, 4, 16
        assert loop.end_epoch({"epoch": epoch}, metric) is improved
        assert (loop.best, loop.best_epoch, loop.bad_epochs) == (best, best_epoch, bad)
        assert loop.complete and loop.epoch == epoch and len(loop.history) == epoch
        loop.reset_epoch()
        assert (loop.step, loop.complete, loop.loss_sum, loop.loss_n, loop.seconds) == (0, False, 0.0, 0, 0.0)
