"""Segmentation (FPN, pairs CSV, index masks) and NIH-style multi-label training, one epoch each."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image


def _run(tmp_path: Path, recipe: dict) -> dict:
    from resnet_apps.train.loop import train

    torch.set_num_threads(1)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = train(path, out=tmp_path / "run")
    return json.loads((run / "metrics.json").read_text())


def test_segmentation_pairs_with_value_map_and_odd_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    (tmp_path / "img").mkdir()
    for i in range(10):
        # 40 x 44 px (not a multiple of 32): a bright square is "cloud" (mask 255), the rest clear (0)
        image = rng.integers(0, 60, size=(40, 44, 3)).astype(np.uint8)
        mask = np.zeros((40, 44), np.uint8)
        top, left = rng.integers(0, 20, size=2)
        image[top : top + 16, left : left + 16] += 150
        mask[top : top + 16, left : left + 16] = 255
        mask[0, 0] = 7  # a value outside mask_values: ignored, never counted
        Image.fromarray(image).save(tmp_path / "img" / f"s{i}.png")
        Image.fromarray(mask).save(tmp_path / "img" / f"s{i}_mask.png")
        rows.append({"image": f"img/s{i}.png", "mask": f"img/s{i}_mask.png", "tile": f"t{i // 2}"})
    with (tmp_path / "pairs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "mask", "tile"])
        writer.writeheader()
        writer.writerows(rows)
    metrics = _run(
        tmp_path,
        {
            "name": "seg",
            "task": "segmentation",
            "data": {
                "root": str(tmp_path),
                "scale": 1 / 255,
                "normalize": "none",
                "image_size": 32,
                "cache": False,
                "augment": "nadir",
                "classes": ["clear", "cloud"],
                "source": {
                    "kind": "pairs",
                    "index": "pairs.csv",
                    "path_column": "image",
                    "mask_column": "mask",
                    "group_column": "tile",
                    "mask_values": {0: 0, 255: 1},
                },
                "split": {"method": "group", "val": 0.2, "test": 0.2, "seed": 0},
            },
            "model": {"backbone": "resnet18", "weights": "none", "fpn_channels": 32},
            "train": {"epochs": 1, "batch_size": 2, "num_workers": 0},
            "eval": {"metric": "miou", "bootstrap": 20},
        },
    )
    ev = metrics["evaluation"]
    assert ev["kind"] == "segmentation" and ev["n_samples"] == 2 and ev["n_groups"] == 1
    # evaluation runs on whole 40 x 44 images, minus the one ignored pixel of each
    assert ev["n_pixels"] == 2 * (40 * 44 - 1)
    assert 0.0 <= metrics["history"][0]["val_metric"] <= 1.0
    # overlays of the 2 test images: reference | prediction side by side, 2 x 44 + 4 px wide
    assert len(metrics["overlays"]) == 2 and "mean IoU of this image" in metrics["overlays"][0]["caption"]
    png = Image.open(tmp_path / "run" / metrics["overlays"][0]["image"])
    assert png.size == (2 * 44 + 4, 40)
    # the checkpoint says whether whole images were resized (predict on DICOM resizes to it, else image_size)
    meta = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert meta["preprocessing"]["resize"] is None and meta["preprocessing"]["image_size"] == 32
    # the floor: per-pixel band values; cloud pixels are 150 brighter, so it finds the squares almost exactly
    base = metrics["baseline"]
    floor = {r["name"]: r["value"] for r in base["evaluation"]["headline"]}
    assert base["evaluation"]["n_pixels"] == ev["n_pixels"] and floor["miou"] > 0.9
    assert base["metric"] == "miou" and [r["metric"] for r in base["difference"]] == [
        "miou",
        "mean_dice",
        "pixel_accuracy",
    ]
    assert base["difference"][0]["a"] == pytest.approx(floor["miou"])


def test_multilabel_nih_layout_with_patient_groups(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    findings = ["Effusion", "Mass", "No Finding", "Effusion|Mass"]
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(16):
        name = f"{i:08d}_000.png"
        Image.fromarray(rng.integers(0, 255, size=(36, 36)).astype(np.uint8)).save(tmp_path / "images" / name)
        rows.append({"Image Index": name, "Finding Labels": findings[i % 4], "Patient ID": str(i // 2)})
    with (tmp_path / "Data_Entry_2017.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["Image Index", "Finding Labels", "Patient ID"])
        writer.writeheader()
        writer.writerows(rows)
    metrics = _run(
        tmp_path,
        {
            "name": "nih",
            "task": "classification",
            "data": {
                "root": str(tmp_path),
                "scale": 1 / 255,
                "normalize": "card",
                "image_size": 32,
                "grayscale": True,
                "cache": False,
                "augment": "chest_xray",
                "classes": ["Effusion", "Mass"],
                "source": {
                    "kind": "multilabel_csv",
                    "index": "Data_Entry_2017.csv",
                    "path_column": "Image Index",
                    "labels_column": "Finding Labels",
                    "group_column": "Patient ID",
                    "image_dir": "images",
                },
                "split": {"method": "group", "val": 0.25, "test": 0.25, "seed": 0},
            },
            "model": {"backbone": "resnet18", "weights": "none", "multilabel": True},
            "train": {"epochs": 1, "batch_size": 4, "num_workers": 0},
            "eval": {"metric": "auroc", "bootstrap": 20, "gradcam": 0},
        },
    )
    ev = metrics["evaluation"]
    assert ev["mode"] == "multilabel" and ev["n_samples"] == 4 and ev["n_groups"] == 2
    assert [row["class"] for row in ev["per_class"]] == ["Effusion", "Mass"]
    # one threshold per label, chosen on validation and applied to test
    assert isinstance(metrics["operating_threshold"], list) and len(metrics["operating_threshold"]) == 2
    counts = metrics["split"]["counts"]
    # 16 films, patterns of 4: each label positive in half of them, spread over the splits
    assert sum(c.get("Effusion", 0) for c in counts.values()) == 8
    assert metrics["normalisation"]["bands"] == ["gray"]
    # the floor on noise images: one model per label, scored on the same 4 films
    base = metrics["baseline"]
    assert base["evaluation"]["mode"] == "multilabel" and base["evaluation"]["n_samples"] == 4
    assert base["metric"] == "macro_auroc" and base["difference"][0]["metric"] == "macro_auroc"


@pytest.mark.parametrize("precision", ["bf16"])
def test_bf16_frozen_warmup_weighted_sampler_binary(tmp_path: Path, precision: str) -> None:
    from train_fixtures import make_geotiff_folder, write_recipe

    root = make_geotiff_folder(tmp_path / "data", per_class=6)
    for extra in (root / "Water").iterdir():  # two classes: binary, one logit, threshold on val
        extra.unlink()
    (root / "Water").rmdir()
    from resnet_apps.train.loop import train

    torch.set_num_threads(1)
    recipe = write_recipe(
        tmp_path / "r.yaml",
        root,
        train={
            "epochs": 2,
            "precision": precision,
            "freeze_backbone_epochs": 1,
            "sampler": "weighted",
            "class_weights": "balanced",
            "label_smoothing": 0.1,
        },
        eval={"metric": "auroc", "operating_point": "sensitivity:0.9", "gradcam": 2},
    )
    run = train(recipe, out=tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["backbone_frozen"] for h in metrics["history"]] == [True, False]
    assert metrics["evaluation"]["mode"] == "binary"
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["model"]["num_classes"] == 1 and best["positive_class"] == "Forest"
    assert best["operating_threshold"] == metrics["operating_threshold"]
    assert len(metrics["gradcam"]) == 2 and (run / metrics["gradcam"][0]["image"]).is_file()


def test_kermany_split_keeps_the_source_test_and_no_child_crosses_splits(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnet_apps.recipe import load_recipe
    from resnet_apps.train.datasets import split_records

    monkeypatch.setenv("RESNET_APPS_DATA", str(shared_data))
    recipe_path = Path(__file__).resolve().parents[2] / "recipes" / "chest_xray_pneumonia_resnet50.yaml"
    split = split_records(load_recipe(recipe_path))
    # the source test split is whole (234 NORMAL + 390 PNEUMONIA); 1000 train images minus the 56 whose child
    # is also in test, then 15 % of the rest (by child) for validation
    assert split.info["counts"]["test"] == {"NORMAL": 234, "PNEUMONIA": 390}
    assert split.info["dropped_for_leakage"]["train_images"] == 56
    assert len(split.train) + len(split.val) == 1000 - 56
    groups = [{r.group for r in getattr(split, name)} for name in ("train", "val", "test")]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    with pytest.raises(Exception, match="appear in more than one split"):
        split_records(load_recipe(recipe_path, ["data.split.on_leak=fail"]))


def test_cached_reads_equal_fresh_reads_and_follow_file_content(tmp_path: Path) -> None:
    from train_fixtures import make_geotiff_folder, write_recipe

    from resnet_apps.data.loading import load_arrays
    from resnet_apps.recipe import load_recipe
    from resnet_apps.train.datasets import recipe_dataset, split_records

    recipe = load_recipe(
        write_recipe(tmp_path / "r.yaml", make_geotiff_folder(tmp_path / "data", per_class=2)),
        ["data.cache=true"],
    )
    split = split_records(recipe)
    record = split.train[0]
    dataset = recipe_dataset([record], recipe, ([0.0] * 4, [1.0] * 4), split.classes, train=False)
    assert dataset.cache is not None
    first = dataset.arrays(0)["image"]  # miss: decoded and stored
    second = dataset.arrays(0)["image"]  # hit: memory-mapped from the cache
    assert (dataset.cache.misses, dataset.cache.hits) == (1, 1)
    np.testing.assert_array_equal(first, second)
    fresh = load_arrays(record, dataset.root, dataset.prep, None)["image"]
    np.testing.assert_array_equal(first, fresh)
    # the scaled values: uint16 DN x 0.0001
    import rasterio

    with rasterio.open(tmp_path / "data" / record.path) as src:
        np.testing.assert_allclose(first, src.read().astype(np.float32) * np.float32(1e-4), rtol=1e-6)
