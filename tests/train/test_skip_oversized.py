"""A forged 20000 x 20000 PNG header in the data with ``data.on_error: skip``: listed, and the run finishes."""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image


def _forged_png(path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # RGB: 1.2e9 values claimed
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b""))


def test_training_skips_and_lists_a_decompression_bomb(tmp_path: Path) -> None:
    from resnet_apps.train.loop import train

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for k, name in enumerate(("a", "b")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(6):
            image = rng.integers(0, 60, size=(32, 32, 3)).astype(np.uint8) + 120 * k
            Image.fromarray(image.astype(np.uint8)).save(tmp_path / "data" / name / f"{name}{i}.png")
    _forged_png(tmp_path / "data" / "a" / "bomb.png")
    recipe = {
        "name": "bomb",
        "task": "classification",
        "data": {
            "root": str(tmp_path / "data"),
            "source": "folder",
            "scale": 1 / 255,
            "normalize": "none",
            "image_size": 32,
            "cache": False,
            "on_error": "skip",
            "split": {"method": "stratified", "val": 0.25, "test": 0.25, "seed": 0},
        },
        "model": {"backbone": "resnet18", "weights": "none"},
        "train": {"epochs": 1, "batch_size": 4, "num_workers": 0},
        "eval": {"metric": "accuracy", "bootstrap": 0, "gradcam": 0, "report": False},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = train(path, out=tmp_path / "run", log=lambda *a, **k: None)
    with (run / "skipped.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == ["a/bomb.png"]
    assert rows[0]["reason"].startswith("PixelBudgetError: ") and "20000 x 20000" in rows[0]["reason"]
    assert (run / "metrics.json").is_file()
