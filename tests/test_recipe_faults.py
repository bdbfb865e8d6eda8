"""Recipes that train would die on are refused by the loader and by ``check`` (no torch), with the field."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from resnet_apps.errors import RecipeError
from resnet_apps.recipe import load_recipe

BASE = {
    "name": "t",
    "task": "classification",
    "data": {"root": ".", "source": "folder"},
    "model": {"backbone": "resnet18", "weights": "none"},
}

CHECK = (
    "import sys; from resnet_apps.cli import main; rc = main(['check', sys.argv[1]]); "
    "assert 'torch' not in sys.modules, 'check imported torch'; sys.exit(rc)"
)


def _write(tmp_path: Path, recipe: dict, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHECK, str(path)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.lr=-0.001", "train.lr"),  # negative
        ("train.lr=0", "train.lr"),  # zero: nothing would ever change
        ("train.lr=.nan", "train.lr"),  # NaN passes a type check
        ("train.num_workers=-1", "train.num_workers"),  # DataLoader raises deep inside train
        ("model.dropout=1.0", "model.dropout"),  # drops everything
        ("model.dropout=-0.1", "model.dropout"),
        ("data.image_size=0", "data.image_size"),  # blamed a good data file before
        ("data.image_size=-32", "data.image_size"),
        ("data.scale=-0.0001", "data.scale"),
        ("eval.bootstrap=-5", "eval.bootstrap"),
        ("train.warmup_epochs=-1", "train.warmup_epochs"),
        ("train.weight_decay=-0.05", "train.weight_decay"),
        ("eval.gradcam=100000", "eval.gradcam"),  # an absurd gallery
        ("eval.gradcam=-1", "eval.gradcam"),
        ("data.max_pixels=0", "data.max_pixels"),
        ("data.dicom_frame=centre", "data.dicom_frame"),
        ("data.dicom_frame=-1", "data.dicom_frame"),
    ],
)
def test_impossible_values_name_the_field(tmp_path: Path, override: str, field: str) -> None:
    path = _write(tmp_path, BASE)
    with pytest.raises(RecipeError, match=rf"r.yaml: {field} = .*fix: ") as caught:
        load_recipe(path, [override])
    assert "\n" not in str(caught.value)


def test_good_edge_values_pass(tmp_path: Path) -> None:
    recipe = load_recipe(
        _write(tmp_path, BASE),
        [
            "model.dropout=0.0",
            "train.weight_decay=0",
            "train.warmup_epochs=0",
            "eval.bootstrap=0",
            "eval.gradcam=0",
            "train.num_workers=0",
            "data.dicom_frame=middle",
            "data.max_pixels=1000",
        ],
    )
    assert recipe.data.dicom_frame == "middle" and recipe.data.max_pixels == 1000
    assert load_recipe(_write(tmp_path, BASE), ["data.dicom_frame=2"]).data.dicom_frame == 2


def test_yaml_alias_bomb_is_refused_with_the_file_named(tmp_path: Path) -> None:
    # "billion laughs": 9 levels of 9 aliases, under 1 KB, would expand to 9^9 (387 million) strings
    lines = ['a0: &a0 ["x"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nname: t\ntask: classification\n")
    assert path.stat().st_size < 1024
    with pytest.raises(RecipeError, match=r"bomb.yaml: not valid YAML: .*anchors and aliases .*not allowed"):
        load_recipe(path)
    # an override is parsed without aliases too: the text stays a plain (wrongly typed) string
    with pytest.raises(RecipeError, match=r"data.bands = '&b \[B01\]' has the wrong type"):
        load_recipe(_write(tmp_path, BASE), ["data.bands=&b [B01]"])


def test_check_finds_an_unknown_backbone_without_torch(tmp_path: Path) -> None:
    recipe = {**BASE, "model": {"backbone": "resnet19", "weights": "none"}}
    done = _check(_write(tmp_path, recipe))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "problem: model.backbone = 'resnet19' is not a ResNet-family model of timm" in done.stdout
    assert "did you mean resnet18" in done.stdout
    ok = _check(_write(tmp_path, {**BASE, "model": {"backbone": "resnet50.a1_in1k", "weights": "none"}}))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def _segmentation_data(root: Path, codes: list[int]) -> None:
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(6):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(root / "img" / f"s{i}.png")
        mask = np.array(codes, np.uint8)[np.arange(32 * 32).reshape(32, 32) % len(codes)]
        Image.fromarray(mask).save(root / "img" / f"s{i}_mask.png")
        rows.append({"image": f"img/s{i}.png", "mask": f"img/s{i}_mask.png"})
    with (root / "pairs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "mask"])
        writer.writeheader()
        writer.writerows(rows)


def _segmentation_recipe(root: Path) -> dict:
    return {
        "name": "seg",
        "task": "segmentation",
        "data": {
            "root": str(root),
            "scale": 1 / 255,
            "normalize": "none",
            "image_size": 32,
            "cache": False,
            "classes": ["a", "b", "c", "d", "e"],
            "source": {"kind": "pairs", "index": "pairs.csv", "path_column": "image", "mask_column": "mask"},
            "split": {"method": "random", "val": 0.2, "test": 0.2, "seed": 0},
        },
        "model": {"backbone": "resnet18", "weights": "none", "fpn_channels": 16},
        "train": {"epochs": 1, "batch_size": 2, "num_workers": 0},
        "eval": {"metric": "miou", "bootstrap": 0, "gradcam": 0},
    }


def test_check_samples_masks_with_unmapped_codes(tmp_path: Path) -> None:
    _segmentation_data(tmp_path / "data", [10, 30, 50, 70, 100])  # codes, but classes are 0..4
    done = _check(_write(tmp_path, _segmentation_recipe(tmp_path / "data")))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "mask values {10, 30, 50, 70, 100} are not among data.classes (0..4)" in done.stdout
    assert "no pixel of it is labelled" in done.stdout and "data.source.mask_values" in done.stdout
    # mapped, the same data passes
    fixed = _segmentation_recipe(tmp_path / "data")
    fixed["data"]["source"]["mask_values"] = {10: 0, 30: 1, 50: 2, 70: 3, 100: 4}
    ok = _check(_write(tmp_path, fixed, "fixed.yaml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "masks: 6 sampled, 0 without a labelled pixel" in ok.stdout


def test_training_on_unmapped_masks_says_no_labelled_pixel(tmp_path: Path) -> None:
    import torch

    from resnet_apps.errors import DatasetError
    from resnet_apps.train.loop import train

    torch.set_num_threads(1)
    _segmentation_data(tmp_path / "data", [10, 30, 50, 70, 100])
    path = _write(tmp_path, _segmentation_recipe(tmp_path / "data"))
    with pytest.raises(DatasetError) as caught:
        train(path, out=tmp_path / "run", log=lambda *a, **k: None)
    text = str(caught.value)
    assert text.startswith("no labelled pixel in this batch")
    assert "mask values {10, 30, 50, 70, 100} are not among data.classes / data.source.mask_values" in text
    assert "checkpoint" not in text and "lower train.lr" not in text.lower()


def test_saved_recipe_never_holds_anchors(tmp_path: Path) -> None:
    # the same list object twice would be written as &id001 / *id001 by yaml.safe_dump
    recipe = load_recipe(_write(tmp_path, BASE), ["data.bands=[B02, B03, B04]"])
    shared = ["B04", "B03", "B02"]
    import dataclasses

    recipe = dataclasses.replace(
        recipe, data=dataclasses.replace(recipe.data, bands=shared, rgb_bands=shared)
    )
    text = recipe.to_yaml()
    assert "&" not in text and "*" not in text
    again = tmp_path / "again.yaml"
    again.write_text(text)
    assert load_recipe(again).data.rgb_bands == shared
