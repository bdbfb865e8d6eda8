"""Small generated GeoTIFF scenes and a tiny segmentation run for the scene-manifest tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("Crop", "Forest", "Water")


def make_scene(path: Path, seed: int, height: int = 80, width: int = 520, bands: int = 3) -> Path:
    """A uint8 UTM scene with a nodata (0) strip on its left; wider than one 256-px COG block, so its
    class map needs overviews."""
    import rasterio
    from rasterio.transform import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).integers(1, 255, size=(bands, height, width)).astype(np.uint8)
    data[:, :, :8] = 0
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=bands, dtype="uint8", nodata=0,
        crs="EPSG:32631", transform=Affine(10, 0, 500000 + 10_000 * seed, 0, -10, 5_000_000),
    ) as dst:  # fmt: skip
        dst.write(data)
    return path


def make_vrt(tif: Path, height: int, width: int, bands: int = 2) -> Path:
    """A VRT beside ``tif`` (uint16, nodata 0, EPSG:32633 at 500000, 4600000, 10 m) whose bands are its bands."""
    body = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><NoDataValue>0</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{tif.name}</SourceFilename><SourceBand>{b}</SourceBand>'
        "</SimpleSource></VRTRasterBand>"
        for b in range(1, bands + 1)
    )
    vrt = tif.with_suffix(".vrt")
    vrt.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>500000, 10, 0, 4600000, 0, -10</GeoTransform>{body}</VRTDataset>"
    )
    return vrt


def make_segmentation_run(run_dir: Path, bands: int = 3) -> Path:
    """run_dir/checkpoints/best.{safetensors,json}: a random FPN resnet18 (16 channels), 3 classes."""
    import torch

    from resnet_apps.models.checkpoint import save_checkpoint
    from resnet_apps.models.heads import build_model

    torch.manual_seed(0)
    model = build_model("segmentation", "resnet18", in_chans=bands, num_classes=3, fpn_channels=16)
    save_checkpoint(
        run_dir / "checkpoints" / "best",
        model,
        {
            "task": "segmentation",
            "classes": list(CLASSES),
            "model": {"backbone": "resnet18", "in_chans": bands, "num_classes": 3, "fpn_channels": 16},
            "preprocessing": {"bands": None, "scale": 1 / 255, "mean": [0.5] * bands, "std": [0.25] * bands,
                              "image_size": 64},
            "operating_threshold": None,
        },
    )  # fmt: skip
    return run_dir
