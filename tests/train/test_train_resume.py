"""--resume after a real SIGKILL mid-epoch ends with the same metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_fixtures import make_geotiff_folder, write_recipe  # noqa: I001

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "resnet_apps", "train", *args]


def _loop_position(state: Path) -> dict | None:
    """(epoch, step, complete) of the resume state, read from its safetensors header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(state), framework="pt") as handle:
            return json.loads(handle.metadata()["resnet_apps_state"])["loop"]
    except Exception:  # not written yet, or being replaced right now
        return None


@pytest.mark.subprocess
@pytest.mark.parametrize("cache", [False, True], ids=["per-sample", "array-cache"])
def test_resume_after_sigkill_mid_epoch_matches_an_uninterrupted_run(tmp_path: Path, cache: bool) -> None:
    # 48 images: 24 train, batch 4 -> 6 steps per epoch; a resume state after every step, so the
    # mid-epoch window the poller below must hit spans several steps even on a fast, idle machine.
    # cache: False reads per sample (albumentations per sample); True gathers batches from the array
    # cache and augments them per batch (train.batches), seeded from (seed, epoch, step)
    env = {**ENV, "RESNET_APPS_CACHE_DIR": str(tmp_path / "cache")}
    recipe = write_recipe(
        tmp_path / "r.yaml",
        make_geotiff_folder(tmp_path / "data", per_class=16),
        data={"cache": cache},
        train={"epochs": 3, "deterministic": True, "checkpoint_every_steps": 1},
        eval={"bootstrap": 20, "gradcam": 0, "report": False},
    )
    whole = subprocess.run(
        _train(str(recipe), "--out", str(tmp_path / "whole")),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train(str(recipe), "--out", str(killed)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = killed / "checkpoints" / "last.state.safetensors"
    position = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        position = _loop_position(state)
        if position and position["epoch"] == 2 and not position["complete"] and position["step"] >= 1:
            os.kill(proc.pid, signal.SIGKILL)  # mid-epoch 2, after at least one step of it
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-epoch (last position {position})"
    assert not (killed / "metrics.json").exists()
    # where the kill really landed (the run may have taken another step between poll and kill)
    landed = _loop_position(state)
    assert landed is not None and not landed["complete"], f"the kill landed on an epoch boundary: {landed}"

    resumed = subprocess.run(
        _train("--resume", str(killed)), env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming at epoch {landed['epoch']}, step {landed['step']}" in resumed.stdout

    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert [h["train_loss"] for h in b["history"]] == pytest.approx(
        [h["train_loss"] for h in a["history"]], rel=1e-6
    )
    assert [h["val_metric"] for h in b["history"]] == [h["val_metric"] for h in a["history"]]
    assert b["evaluation"]["samples"]["y_prob"] == a["evaluation"]["samples"]["y_prob"]
    assert b["evaluation"]["headline"] == a["evaluation"]["headline"]
