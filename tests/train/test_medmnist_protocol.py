"""The shipped MedMNIST-protocol recipe end to end on a generated archive and test folder (1 short run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "pneumonia_medmnist_resnet18_28.yaml"


def _data(root: Path) -> None:
    """A 28-px archive (train 32, val 16) and a 56-px test folder (6 + 6); pneumonia films are brighter."""
    rng = np.random.default_rng(0)

    def films(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 2
        images = rng.integers(40, 120, size=(n, size, size)) + 100 * labels[:, None, None]
        return images.astype(np.uint8), labels[:, None].astype(np.uint8)

    (root / "mnist").mkdir(parents=True)
    train, val = films(32, 28), films(16, 28)
    np.savez(root / "mnist" / "p.npz", train_images=train[0], train_labels=train[1], val_images=val[0],
             val_labels=val[1], test_images=val[0], test_labels=val[1])  # fmt: skip
    images, labels = films(12, 56)
    for i, (image, label) in enumerate(zip(images, labels[:, 0], strict=True)):
        folder = root / "kermany_test" / ("PNEUMONIA" if label else "NORMAL")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")


@pytest.mark.slow
def test_medmnist_recipe_trains_on_the_archive_and_tests_on_the_folder(tmp_path: Path) -> None:
    from resnet_apps.train.loop import train

    torch.set_num_threads(1)
    _data(tmp_path)
    run = train(
        RECIPE,
        overrides=[
            f"data.root={tmp_path}",
            "data.source.index=mnist/p.npz",
            "data.source.test_dir=kermany_test",
            "data.cache=false",
            "train.epochs=2",
            "train.batch_size=16",
            "eval.bootstrap=20",
            "eval.gradcam=0",
        ],
        out=tmp_path / "run",
    )
    metrics = json.loads((run / "metrics.json").read_text())
    # train / val from the archive, test = the folder's 12 films (the archive's own test split is dropped)
    assert metrics["split"]["sizes"] == {"train": 32, "val": 16, "test": 12}
    assert metrics["operating_threshold"] == 0.5  # eval.operating_point fixed:0.5
    meta = json.loads((run / "checkpoints" / "best.json").read_text())
    assert meta["model"]["stem"] == "cifar" and meta["model"]["backbone"] == "resnet18"
    # multistep at 0.5 / 0.75 of 2 epochs: epoch 1 at lr 1e-3, epoch 2 (after milestone 1) at 1e-4
    assert [h["lr"] for h in metrics["history"]] == pytest.approx([1e-3, 1e-4])
    floor = {r["name"]: r["value"] for r in metrics["baseline"]["evaluation"]["headline"]}
    assert floor["auroc"] == pytest.approx(1.0)  # brightness alone separates these films
    assert metrics["convergence"]["epochs_run"] == 2
