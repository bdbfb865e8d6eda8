"""Seam error of tiled scene prediction against one whole-image forward pass, per overlap setting.

``python -m resnet_apps.bench.seams SCENE [--overlaps 0 0.25 0.5] [--json FILE]`` predicts ``SCENE`` with a
seeded, randomly initialised FPN resnet18 (the architecture's context across tile borders is what makes
seams; no trained weights are needed to measure it) at each overlap, and compares the probability maps with
one forward pass over the whole zero-padded image:

- ``seam_mad``: mean |p_tiled - p_whole| over pixels within ``--band`` px of the overlap-0 tile borders
  (where a non-overlapping tiling cuts the receptive field), all classes;
- ``all_mad``: the same over every valid pixel;
- ``redundant_tile_factor``: tile pixels forwarded per scene pixel (the cost side of the trade-off).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _seam_mask(height: int, width: int, tile: int, band: int) -> np.ndarray:
    """[H, W] True within ``band`` px of an inner border of the non-overlapping tile grid."""
    mask = np.zeros((height, width), dtype=bool)
    for r in range(tile, height, tile):
        mask[max(r - band, 0) : r + band] = True
    for c in range(tile, width, tile):
        mask[:, max(c - band, 0) : c + band] = True
    return mask


def seam_errors(
    scene: Path, overlaps: list[float], tile: int = 256, band: int = 8, classes: int = 5
) -> dict[str, Any]:
    """Per overlap: seam and overall mean absolute probability difference to the whole-image pass."""
    import rasterio
    import torch

    from resnet_apps.models.heads import build_model
    from resnet_apps.models.meta import CheckpointMeta
    from resnet_apps.predict.raster import SceneReader
    from resnet_apps.predict.scene import predict_scene

    with rasterio.open(scene) as src:
        bands = src.count
    torch.manual_seed(0)
    model = build_model("segmentation", "resnet18", in_chans=bands, num_classes=classes).eval()
    meta = {
        "task": "segmentation",
        "model": {"in_chans": bands, "num_classes": classes},
        "classes": [f"c{k}" for k in range(classes)],
        "preprocessing": {"bands": None, "scale": 1 / 255, "mean": [0.45] * bands, "std": [0.25] * bands},
        "operating_threshold": 0.5,
    }
    reader = SceneReader(scene, CheckpointMeta.coerce(meta).require_preprocessing())
    height, width = reader.height, reader.width
    x, valid = reader.read_normalised((0, height, 0, width))
    ph, pw = math.ceil(height / 32) * 32, math.ceil(width / 32) * 32  # the FPN's stride
    padded = torch.zeros((1, bands, ph, pw))
    padded[0, :, :height, :width] = torch.from_numpy(x)
    with torch.no_grad():
        start = time.perf_counter()
        whole = torch.softmax(model(padded), dim=1)[0, :, :height, :width].numpy()
        whole_s = time.perf_counter() - start
    seams = _seam_mask(height, width, tile, band) & valid
    report: dict[str, Any] = {
        "scene": f"{scene.name} {height}x{width}x{bands}",
        "tile": tile,
        "seam_band_px": band,
        "whole_image_seconds": round(whole_s, 2),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="seams_") as tmp:
        for overlap in overlaps:
            out = predict_scene(
                model,
                meta,
                scene,
                Path(tmp) / f"o{overlap}",
                tile=tile,
                overlap=overlap,
                blend="gaussian",
                probabilities="float32",
                progress=False,
            )
            with rasterio.open(out["prob_path"]) as prob:
                diff = np.abs(prob.read() - whole)
            report["runs"].append(
                {
                    "overlap": overlap,
                    "seam_mad": round(float(diff[:, seams].mean()), 5),
                    "all_mad": round(float(diff[:, valid].mean()), 5),
                    "seam_max": round(float(diff[:, seams].max()), 4),
                    "redundant_tile_factor": round(out["redundant_tile_factor"], 3),
                    "tiles": out["tiles"],
                    "seconds": round(out["seconds"], 1),
                }
            )
            print(json.dumps(report["runs"][-1]), file=sys.stderr, flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path)
    parser.add_argument("--overlaps", type=float, nargs="+", default=[0.0, 0.25])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--band", type=int, default=8, help="seam half-width in px (8)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    report = seam_errors(args.scene, args.overlaps, args.tile, args.band)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
