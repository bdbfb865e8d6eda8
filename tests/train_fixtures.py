"""Tiny generated datasets and recipes for the training tests (GeoTIFFs written with rasterio)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

CLASSES = ("Crop", "Forest", "Water")


def make_geotiff_folder(
    root: Path, per_class: int = 8, size: int = 32, bands: int = 4, seed: int = 0
) -> Path:
    """root/<Class>/<Class>_<n>.tif, uint16; class k is bright in band k, so the task is learnable."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            arr = rng.normal(1000, 150, size=(bands, size, size))
            arr[k % bands] += 2500
            with rasterio.open(
                root / name / f"{name}_{n}.tif",
                "w",
                driver="GTiff",
                width=size,
                height=size,
                count=bands,
                dtype="uint16",
                crs="EPSG:32632",
                transform=from_origin(500000, 5000000, 10, 10),
            ) as dst:
                dst.write(np.clip(arr, 0, 65535).astype(np.uint16))
    return root


def write_recipe(path: Path, root: Path, **sections: dict[str, Any]) -> Path:
    """A small classification recipe on ``root``; ``sections`` update data/model/train/eval."""
    recipe: dict[str, Any] = {
        "name": "tiny",
        "task": "classification",
        "data": {
            "root": str(root),
            "source": "folder",
            "scale": 0.0001,
            "normalize": "card",
            "image_size": 32,
            "augment": "nadir",
            "cache": False,
            "split": {"method": "stratified", "val": 0.25, "test": 0.25, "seed": 0},
        },
        "model": {"backbone": "resnet18", "weights": "none"},
        "train": {
            "epochs": 2,
            "batch_size": 4,
            "lr": 0.001,
            "warmup_epochs": 0.5,
            "num_workers": 0,
            "seed": 0,
            "grad_clip": 1.0,
        },
        "eval": {"metric": "accuracy", "bootstrap": 50, "gradcam": 0},
    }
    for key, value in sections.items():
        recipe[key].update(value)
    path.write_text(yaml.safe_dump(recipe))
    return path
