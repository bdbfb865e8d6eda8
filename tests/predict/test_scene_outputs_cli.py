"""Scene outputs: unique names per input and a legend QGIS can show (issue 12 item 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from resnet_apps.cli import main
from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.heads import build_model


def _run(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    run = tmp_path / "run"
    save_checkpoint(
        run / "checkpoints" / "best",
        build_model("classification", "resnet18", in_chans=3, num_classes=3),
        {
            "classes": ["Crop", "Forest", "Water"],
            "operating_threshold": None,
            "preprocessing": {"bands": None, "scale": 1 / 255, "mean": [0.5] * 3, "std": [0.25] * 3,
                              "image_size": 16, "dicom_window": None, "grayscale": False},
        },
    )  # fmt: skip
    return run


def _scene(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=48, count=3, dtype="uint8", nodata=0,
        crs="EPSG:32631", transform=from_origin(0, 0, 10, 10),
    ) as dst:  # fmt: skip
        data = np.random.default_rng(value).integers(1, 255, size=(3, 48, 64)).astype(np.uint8)
        dst.write(data)
    return path


def test_versioned_scenes_get_their_own_class_maps_with_a_legend(tmp_path: Path) -> None:
    run = _run(tmp_path)
    v1, v2 = _scene(tmp_path / "scene.v1.tif", 1), _scene(tmp_path / "scene.v2.tif", 2)
    out = tmp_path / "out"
    assert main(["predict", str(run), str(v1), str(v2), "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.glob("*_class.tif")) == ["scene.v1_class.tif", "scene.v2_class.tif"]
    with rasterio.open(out / "scene.v1_class.tif") as cls:
        table = cls.colormap(1)
        assert len({table[k] for k in range(3)}) == 3 and all(table[k][3] == 255 for k in range(3))
        assert table[255] == (0, 0, 0, 0)  # nodata: transparent
        tags = cls.tags(1)
        assert [tags[f"CLASS_{k}"] for k in range(3)] == ["Crop", "Forest", "Water"]
    sidecar = (out / "scene.v1_class.tif.aux.xml").read_text()
    assert sidecar.index("<Category>Crop</Category>") < sidecar.index("<Category>Water</Category>")


def test_two_scenes_with_one_name_are_refused_before_any_work(tmp_path: Path) -> None:
    run = _run(tmp_path)
    a, b = _scene(tmp_path / "a" / "scene.tif", 1), _scene(tmp_path / "b" / "scene.tif", 2)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"would both write .*scene_class\.tif.*separate calls"):
        main(["predict", str(run), str(a), str(b), "--out", str(out), "--no-progress"])
    assert not out.exists() or not list(out.glob("*.tif"))
