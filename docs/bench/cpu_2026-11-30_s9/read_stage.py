"""The scene pipeline's plain block reads alone (no model), as beside a GPU (n readers, GDAL decoding on all
cores; carried reads are for one reader): through ``SceneReader.read_raw`` (io.read_geotiff per block, the
path before the ninth session) and ``read_window`` (one dataset per thread, decoded into the block).
Prints one JSON line per setting. A copy of ``cpu_2026-11-30_s5/read_stage.py`` with the path as a setting.

    python docs/bench/cpu_2026-11-30_s9/read_stage.py /tmp/bp/scene_10000.tif

What it answers on any machine: how many tiles per second the read stage can hand to an accelerator, and
whether reading several blocks at once (``predict --readers``) beats one reader whose GDAL decodes each
block on every core. Each setting runs twice, in alternation; the faster run of each is reported.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator

import numpy as np
import rasterio

from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.predict.forward import BlockJob
from resnet_apps.predict.pipeline import run_pipeline
from resnet_apps.predict.raster import SceneReader
from resnet_apps.predict.remote import gdal_env
from resnet_apps.predict.tiling import iter_blocks, plan_grid, tile_origins


def read_stage(path: str, readers: int, decode_threads: bool, how: str) -> dict:
    with rasterio.open(path) as src:
        bands = src.count
    pre = Preprocessing.from_dict({"bands": None, "scale": 1.0, "mean": None, "std": None}, bands)
    reader = SceneReader(path, pre)
    grid = plan_grid(256, 0.25, 1536)
    tiles = 0

    def read(blk) -> BlockJob:  # noqa: ANN001 - tiling.Block
        r0, r1, c0, c1 = blk.read
        raw, valid = reader.read_raw(blk.read) if how == "read_raw" else reader.read_window(blk.read)
        origins = np.asarray(tile_origins(r1 - r0, c1 - c0, grid), dtype=np.int64).reshape(-1, 2)
        return BlockJob(blk.core, raw, valid, origins, np.ones(len(origins), bool))

    def process(jobs: Iterator[BlockJob]) -> Iterator[tuple[BlockJob, None]]:
        nonlocal tiles
        for job in jobs:
            tiles += job.tiles
            job.raw = None
            yield job, None

    start = time.perf_counter()
    run_pipeline(
        iter_blocks(reader.height, reader.width, grid, reader.file_tiles), read, process, lambda *_: None,
        threads=True, source=path, env=lambda: gdal_env(decode_threads), readers=readers,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    reader.close()
    return {
        "path": how,
        "readers": readers,
        "gdal_threads": decode_threads,
        "seconds": round(seconds, 2),
        "tiles": tiles,
        "tiles_per_s": round(tiles / seconds, 1),
    }


if __name__ == "__main__":
    scene = sys.argv[1]
    settings = [(r, True, how) for r in (1, 2) for how in ("read_raw", "read_window")]
    best: dict[tuple[int, bool, str], dict] = {}
    for _ in range(2):
        for readers, threads, how in settings:
            figures = read_stage(scene, readers, threads, how)
            key = (readers, threads, how)
            if key not in best or figures["seconds"] < best[key]["seconds"]:
                best[key] = figures
    for key in settings:
        print(json.dumps(best[key]))
