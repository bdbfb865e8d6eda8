"""The command line of training: train --set/--out/--resume, check, evaluate, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_fixtures import make_geotiff_folder, write_recipe  # noqa: I001


def test_train_command_with_overrides_writes_the_resolved_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from resnet_apps.cli import main
    from resnet_apps.recipe import load_recipe

    torch.set_num_threads(1)
    data = make_geotiff_folder(tmp_path / "data", per_class=4)
    (data / "Forest" / "Forest_broken.tif").write_bytes(b"II*\x00" + b"\x00" * 40)  # a truncated TIFF
    recipe = write_recipe(tmp_path / "r.yaml", data, data={"on_error": "skip"})
    out = tmp_path / "run"
    overrides = ["--set", "train.epochs=1", "--set", "eval.bootstrap=10", "--set", "eval.gradcam=0"]
    assert main(["train", str(recipe), *overrides, "--out", str(out)]) == 0
    saved = load_recipe(out / "recipe.yaml")
    assert saved.train.epochs == 1 and saved.eval.bootstrap == 10
    assert saved.data.root == str(tmp_path / "data")  # resolved, so the run can be re-evaluated from anywhere
    printed = capsys.readouterr().out
    # on_error: skip: the broken file is listed with its reason, and the run went on without it
    doc = json.loads((out / "metrics.json").read_text())
    skipped = doc["skipped"]
    # the run says how it was launched: the --set values and the backbone actually trained
    assert doc["run"]["overrides"] == ["train.epochs=1", "eval.bootstrap=10", "eval.gradcam=0"]
    assert doc["run"]["backbone"] == saved.model.backbone
    assert [row["path"] for row in skipped] == ["Forest/Forest_broken.tif"] and skipped[0]["reason"]
    assert "Forest/Forest_broken.tif" in (out / "skipped.csv").read_text()
    assert "epoch 1/1" in printed and "run directory:" in printed  # plain lines when not a TTY
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[0]["epoch"] == 1 and history[0]["images_per_s"] > 0
    # refused: an existing run directory, an unknown override, resuming a folder that is not a run
    assert main(["train", str(recipe), "--out", str(out)]) == 2
    assert main(["train", str(recipe), "--set", "train.epoch=1", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "data")]) == 2
    # resuming a finished run continues from its last state and changes nothing when no epoch is left
    assert main(["evaluate", str(out), "--split", "val"]) == 0
    evaluated = sorted(out.glob("evaluate-val-*"))
    assert len(evaluated) == 1 and (evaluated[0] / "metrics.json").is_file()


def test_default_run_directories_are_named_by_recipe_and_never_reused(tmp_path: Path) -> None:
    from resnet_apps.train.rundir import new_run_dir

    first = new_run_dir("demo", runs_root=tmp_path)
    second = new_run_dir("demo", runs_root=tmp_path)  # same second: a suffix, not the same folder
    assert first != second and first.name.startswith("demo-") and second.parent == tmp_path
