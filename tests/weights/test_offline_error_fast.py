"""Offline, `train` with ImageNet weights fails before torch, timm or the data load, and says the CLI fix (item 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_fixtures import make_geotiff_folder, write_recipe

REPO = Path(__file__).resolve().parents[2]

CODE = """
import sys, time
from resnet_apps.cli import main
start = time.perf_counter()
code = main(["train", sys.argv[1], "--set", "model.weights=imagenet", "--out", sys.argv[2]])
heavy = sorted(m for m in ("torch", "timm") if m in sys.modules)
print(f"code={code} heavy={heavy} seconds={time.perf_counter() - start:.2f}")
"""


@pytest.mark.subprocess  # a fresh interpreter: torch and timm must not be imported yet
def test_offline_imagenet_request_fails_before_heavy_imports(tmp_path: Path) -> None:
    data = make_geotiff_folder(tmp_path / "data", per_class=2, size=8)
    recipe = write_recipe(tmp_path / "r.yaml", data)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",  # the probe answers at once; an unreachable host is bounded to ~2.5 s
        "HF_HOME": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "RESNET_APPS_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("RESNET_APPS_WEIGHTS_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", CODE, str(recipe), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert "code=2 heavy=[]" in done.stdout, done.stdout + done.stderr
    assert "--set model.weights=none" in done.stderr and "resnet-apps weights fetch" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing was started
