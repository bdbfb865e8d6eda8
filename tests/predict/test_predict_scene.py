"""Scene prediction end to end: files in, georeferenced COG maps out, values checked pixel by pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from resnet_apps.predict.scene import predict_scene


class SignModel(torch.nn.Module):
    """Segmentation stand-in: logits [x_0, 0] so that softmax gives p(class 0) = sigmoid(x_0) per pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], torch.zeros_like(x[:, :1])], dim=1)


class MeanModel(torch.nn.Module):
    """Classification stand-in: logits [mean(x_0), 0] over the chip -> p(class 0) = sigmoid(chip mean)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0].mean(dim=(1, 2))[:, None]
        return torch.cat([m, torch.zeros_like(m)], dim=1)


def _meta(task: str, mean: float, std: float, bands: int = 2) -> dict:
    return {
        "task": task,
        "model": {"in_chans": bands, "num_classes": 2},
        "classes": ["up", "down"],
        "positive_class": "down",
        "preprocessing": {
            "bands": None,
            "scale": 0.5,
            "mean": [mean] * bands,
            "std": [std] * bands,
            "image_size": 8,
        },
        "operating_threshold": 0.5,
    }


def _write_scene(path: Path, data: np.ndarray, nodata: float | None) -> None:
    profile = dict(
        driver="GTiff",
        height=data.shape[1],
        width=data.shape[2],
        count=data.shape[0],
        dtype=str(data.dtype),
        crs="EPSG:32633",
        transform=from_origin(500000, 4600000, 10, 10),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 2-band uint16 scene 150 x 133 (no multiple of tile or block) with a nodata collar and hole."""
    rng = np.random.default_rng(0)
    data = rng.integers(1, 400, size=(2, 150, 133)).astype(np.uint16)
    nodata = np.zeros((150, 133), dtype=bool)
    nodata[:, :11] = True  # left collar
    nodata[70:90, 60:100] = True  # a hole across block seams
    data[:, nodata] = 0
    path = tmp_path / "scene.tif"
    _write_scene(path, data, nodata=0)
    return path, data, ~nodata


@pytest.mark.parametrize(
    ("overlap", "block", "blend"),
    [
        (0.25, 40, "gaussian"),  # stride 24 -> blocks of 48, many seams
        (0.0, 64, "constant"),  # abutting tiles
        (0.5, 1000, "gaussian"),  # one block
    ],
)
def test_segmentation_probabilities_are_exact(
    scene, tmp_path: Path, overlap: float, block: int, blend: str
) -> None:
    """p(class 0) = sigmoid((raw * 0.5 - 100) / 50) everywhere valid; nodata stays nodata in both maps."""
    path, data, valid = scene
    meta = _meta("segmentation", mean=100.0, std=50.0)
    result = predict_scene(
        SignModel(),
        meta,
        path,
        tmp_path / "out",
        tile=32,
        overlap=overlap,
        block=block,
        blend=blend,
        probabilities="float32",
        progress=False,
    )
    expected = 1 / (1 + np.exp(-((data[0].astype(np.float64) * 0.5 - 100) / 50)))
    with (
        rasterio.open(path) as src,
        rasterio.open(result["prob_path"]) as prob,
        rasterio.open(result["class_path"]) as cls,
    ):
        assert (prob.crs, prob.transform) == (src.crs, src.transform)
        assert (cls.crs, cls.transform, cls.nodata, cls.dtypes[0]) == (src.crs, src.transform, 255, "uint8")
        assert cls.profile["tiled"] and cls.profile["compress"] == "deflate"
        p = prob.read(1)
        c = cls.read(1)
    np.testing.assert_allclose(p[valid], expected[valid], atol=1e-5)
    assert np.isnan(p[~valid]).all()
    # binary at the operating point: "down" (1) where p(down) = 1 - p(up) >= 0.5 (ties, x = 0, go to "down")
    np.testing.assert_array_equal(c[valid], np.where(1 - expected[valid] >= 0.5, 1, 0))
    assert (c[~valid] == 255).all()


def test_classification_map_at_chip_stride(scene, tmp_path: Path) -> None:
    """Chips of 8 px, no overlap: one output pixel per chip, transform scaled by 8, half-nodata cells are nodata."""
    path, data, valid = scene
    meta = _meta("classification", mean=100.0, std=50.0)
    result = predict_scene(
        MeanModel(),
        meta,
        path,
        tmp_path / "out",
        overlap=0.0,
        block=40,
        probabilities="uint8",
        progress=False,
    )
    with (
        rasterio.open(path) as src,
        rasterio.open(result["class_path"]) as cls,
        rasterio.open(result["prob_path"]) as prob,
    ):
        assert cls.shape == (19, 17)  # ceil(150 / 8), ceil(133 / 8)
        assert cls.transform == src.transform * rasterio.Affine.scale(8)
        assert cls.crs == src.crs
        c, p = cls.read(1), prob.read(1)
    x = (data[0].astype(np.float64) * 0.5 - 100) / 50
    x[~valid] = 0.0  # nodata pixels enter the model as 0 (the band mean)
    # cell (2, 3): rows 16..23, cols 24..31, fully valid
    expected = 1 / (1 + np.exp(-x[16:24, 24:32].mean()))
    assert abs(p[2, 3] / 254 - expected) <= 0.5 / 254 + 1e-6
    assert c[2, 3] == (1 if 1 - expected >= 0.5 else 0)
    # cell (0, 0) lies in the 11-px collar (cols 0..7): nodata; cell (0, 1) has cols 8..15, 3 of 8 nodata: valid
    assert c[0, 0] == 255 and p[0, 0] == 255
    assert c[0, 1] != 255
    # last row of cells: rows 144..149 (6 in-scene rows), still predicted from a zero-padded chip
    assert c[18, 5] != 255


@pytest.mark.parametrize(
    ("name", "bands"),
    [
        ("landsat7_RGB.byte.tif", 3),  # strips, nodata 0 in a rotated collar (33 %)
        ("srtm_shade.tif", 1),  # 256-px tiles, nodata 255 (88 %): most tiles are skipped
        # naip_m_4709963_se_14_1_20200831.tif (RGBN) has no nodata pixel: left out to keep the suite fast
    ],
)
def test_real_scenes_keep_crs_transform_and_nodata(
    shared_data: Path, tmp_path: Path, name: str, bands: int
) -> None:
    """A tiny random FPN resnet18 checkpoint over the real scenes: same CRS/transform, nodata stays nodata."""
    from resnet_apps.models import heads

    scene = shared_data / "geotiff_scenes" / name
    torch.manual_seed(0)
    model = heads.build_model("segmentation", "resnet18", in_chans=bands, num_classes=3, fpn_channels=16)
    meta = {
        "task": "segmentation",
        "classes": ["a", "b", "c"],
        "model": {"backbone": "resnet18", "in_chans": bands, "num_classes": 3, "fpn_channels": 16},
        "preprocessing": {
            "bands": None,
            "scale": 1 / 255,
            "mean": [0.4] * bands,
            "std": [0.2] * bands,
            "image_size": 64,
        },
        "operating_threshold": 0.5,
    }
    model, meta = _through_checkpoint(model, meta, tmp_path / "run")
    result = predict_scene(
        model, meta, scene, tmp_path / "out", tile=256, overlap=0.0, block=512, progress=False
    )
    with rasterio.open(scene) as src, rasterio.open(result["class_path"]) as out:
        assert out.crs == src.crs and out.transform == src.transform and out.shape == src.shape
        raw = src.read()
        nodata = np.all(raw == src.nodata, axis=0) if src.nodata is not None else np.zeros(src.shape, bool)
        classes = out.read(1)
    assert nodata.any(), f"{name}: expected a nodata region (SOURCES.md)"
    assert (classes[nodata] == 255).all()
    assert set(np.unique(classes[~nodata]).tolist()) <= {0, 1, 2}


def _through_checkpoint(model: torch.nn.Module, meta: dict, run_dir: Path) -> tuple[torch.nn.Module, dict]:
    """Save and reload with checkpoint.py: the path `resnet-apps predict RUN_DIR` takes."""
    from resnet_apps.models.checkpoint import load_run, save_checkpoint

    save_checkpoint(run_dir / "checkpoints" / "best", model, meta)
    return load_run(run_dir)


def test_class_dtype_and_operating_point() -> None:
    """uint8 (nodata 255) holds 255 classes 0..254; one more needs uint16 (nodata 65535)."""
    from resnet_apps.models.decision import Decision
    from resnet_apps.predict.raster import class_dtype
    from resnet_apps.predict.scene_maps import probabilities_to_classes

    assert class_dtype(255) == ("uint8", 255) and class_dtype(256) == ("uint16", 65535)
    prob = np.array([[0.7, 0.35], [0.3, 0.65]])  # [K=2, 2 pixels]
    at_06 = Decision.build(["bg", "roof"], 0.6)
    np.testing.assert_array_equal(probabilities_to_classes(prob, at_06), [0, 1])  # 0.65 >= 0.6 -> roof
    at_07 = Decision.build(["bg", "roof"], 0.7)
    np.testing.assert_array_equal(probabilities_to_classes(prob, at_07), [0, 0])
    three = Decision.from_meta(
        {"task": "segmentation", "classes": ["a", "b", "c"], "model": {"num_classes": 3}}
    )
    np.testing.assert_array_equal(probabilities_to_classes(np.array([[0.2], [0.3], [0.5]]), three), [2])
