"""bench train times the loop's own train_step, for the pipeline and for the bare timm reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import timm
from train_fixtures import make_geotiff_folder, write_recipe

from resnet_apps.cli import main
from resnet_apps.models.heads import ClassificationModel
from resnet_apps.train import step as step_module


def test_bench_train_times_the_loops_train_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = write_recipe(
        tmp_path / "r.yaml",
        make_geotiff_folder(tmp_path / "data", per_class=4),
        train={"channels_last": True, "grad_clip": 0.5},
    )
    real = step_module.train_step
    calls: list[tuple[str, Any]] = []

    def counting(net: Any, *args: Any) -> float:
        calls.append((type(net).__name__, args[-2]))  # the model class and the recipe's train settings
        return real(net, *args)

    monkeypatch.setattr(step_module, "train_step", counting)
    argv = ["bench", "train", str(recipe), "--steps", "2", "--warmup", "1", "--rounds", "1", "--threads", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # per round: warmup + steps calls for the pipeline (our model), then as many for bare timm
    names = [name for name, _ in calls]
    assert names == [ClassificationModel.__name__] * 3 + [timm.models.ResNet.__name__] * 3
    assert all(s.channels_last and s.grad_clip == 0.5 for _, s in calls)  # the recipe's step settings
    assert "ratio pipeline / bare timm" in out and "pipeline (read + augment + step)" in out


def test_bench_train_json_has_the_ratio_and_the_settings(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", make_geotiff_folder(tmp_path / "data", per_class=4))
    out = tmp_path / "bench.json"
    argv = ["bench", "train", str(recipe), "--steps", "2", "--warmup", "1", "--rounds", "1", "--threads", "1"]
    assert main([*argv, "--json", str(out), "--set", "train.precision=bf16"]) == 0
    import json

    figures = json.loads(out.read_text())
    assert figures["precision"] == "bf16" and figures["device"] == "cpu" and figures["compile"] is False
    assert figures["images_per_s"] > 0 and figures["bare_images_per_s"] > 0
    assert figures["ratio"] == pytest.approx(figures["images_per_s"] / figures["bare_images_per_s"], rel=0.01)
    assert figures["gpu_busy_percent"] is None  # NVML is only read on CUDA
