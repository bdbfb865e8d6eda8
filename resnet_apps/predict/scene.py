"""Whole GeoTIFF scenes to georeferenced class (and probability) maps, block by block in bounded memory.

Segmentation models: each block (see :mod:`resnet_apps.predict.tiling`) is read with its halo; its tiles
(MONAI's grid) go through the model in batches that may span two blocks, normalised with the checkpoint's
preprocessing on the model's device, and are blended over the block's core with MONAI's importance map
(the same result as ``sliding_window_inference`` on the zero-padded scene), so peak memory depends on the
block size, never on the scene. Classification models: the scene is cut into chips of the training
``image_size`` centred on cells of ``stride`` pixels, and the class of each chip is written as one pixel of
a map whose transform is the input's scaled by the stride. Reading and writing run in threads beside the
forward pass (:mod:`resnet_apps.predict.pipeline`, which states the memory bound); ``pipeline=False`` runs
the same stages in series.

Outputs are tiled, DEFLATE-compressed Cloud-Optimised GeoTIFFs (written block-wise to a temporary
GeoTIFF, then copied by GDAL's COG driver, which streams) with the input's CRS, transform and nodata
pixels kept as nodata; class maps carry a colour table, class names and MODE overviews, probability maps
AVERAGE overviews (``io.cog_check.check_map`` verifies all of it).

The scene may be a URL (an HTTP(S) COG, ``s3://``): it is read block by block through range requests
(:mod:`resnet_apps.predict.remote` sets GDAL's network options), the result's ``bytes_read`` and the
progress bar give the bytes fetched, and the maps are still written locally. ``window`` predicts only
part of a scene (only the blocks it covers are fetched).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_apps.allocator import release_freed_memory
from resnet_apps.io.geotiff import is_remote
from resnet_apps.models.decision import Decision
from resnet_apps.models.meta import CheckpointMeta
from resnet_apps.predict.forward import BlockJob, DeviceNormaliser, Task
from resnet_apps.predict.pipeline import blocks_in_flight
from resnet_apps.predict.raster import SceneReader, class_dtype
from resnet_apps.predict.remote import FetchCounter, gdal_env, scene_label
from resnet_apps.predict.scene_maps import (
    PROBABILITY_FORMATS,
    BlockMaps,
    MapWriters,
    open_maps,
    scene_stem,
    write_block,
)
from resnet_apps.predict.scene_run import SceneRun
from resnet_apps.predict.stages import InFlight, StageClock
from resnet_apps.predict.tiling import (
    BlendMode,
    Block,
    TileGrid,
    blend_weights,
    cell_validity,
    chip_blocks,
    count_tiles,
    iter_blocks,
    plan_grid,
    redundant_tile_factor,
    tile_origins,
)

# blocks read at once beside an accelerator (default_readers); GDAL decodes each block on all cores as
# well (predict.remote), so the readers overlap the serial parts of a read: opening, validity, padding
ACCELERATOR_READERS = 4


def _chip_side(image_size: int | tuple[int, int] | None) -> int:
    """The training chip side of a classification checkpoint (64 when unrecorded; the longer side of H, W)."""
    if image_size is None:
        return 64
    return image_size if isinstance(image_size, int) else max(image_size)


def predict_scene(
    model: nn.Module,
    meta: CheckpointMeta | Mapping[str, Any],
    src: str | Path,
    out_dir: str | Path,
    *,
    tile: int | None = None,
    overlap: float = 0.25,
    block: int = 1536,
    batch_size: int = 8,
    blend: BlendMode = "gaussian",
    probabilities: str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    max_seconds: float | None = None,
    pipeline: bool = True,
    window: tuple[int, int, int, int] | None = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    remote: bool | None = None,
    timeline: bool = False,
    device_decision: bool = True,
    readers: int | None = None,
) -> dict[str, Any]:
    """Predict one GeoTIFF scene and write ``<stem>_class.tif`` (+ ``<stem>_prob.tif``) into ``out_dir``.

    Args:
        model: a model from ``load_run`` (segmentation: [B, C, H, W] -> [B, K, H, W] logits;
            classification: [B, C, h, w] -> [B, K] logits).
        meta: the checkpoint metadata (task, model, classes, preprocessing, operating_threshold).
        src: the scene: a file or a URL (``https://``, ``s3://``; read through range requests).
        out_dir: folder for the outputs (created).
        tile: tile side; default 256 for segmentation, the training ``image_size`` for classification.
        overlap: fraction of a tile shared with its neighbour (classification: chips overlap likewise and
            the map's pixel is the stride ``int(tile * (1 - overlap))``).
        block: block side in pixels (rounded to a whole number of strides); bounds memory.
        batch_size: tiles per forward pass.
        blend: ``gaussian`` or ``constant`` (segmentation only).
        probabilities: also write per-class probabilities as ``float32`` or ``uint8`` (0..254 = 0..1,
            255 = nodata); None to skip.
        device: where the model runs.
        progress: show a tqdm bar (tiles/s, ETA).
        max_seconds: stop after the block that passes this many seconds (benchmarks on slow machines);
            the maps are then complete only for the blocks done and ``complete`` is False.
        pipeline: read and write in threads beside the forward pass (:mod:`resnet_apps.predict.pipeline`);
            False runs the same stages in series (same outputs, bit for bit).
        window: ``(row_off, col_off, height, width)``: predict only this part of the scene (the maps cover
            it; pixels outside count as outside the scene); None for all of it.
        name: output stem (default: the scene's file name less its suffix, see :func:`scene_stem`).
        tags: GeoTIFF metadata written into every map (where the input came from: URL, STAC item, assets).
        remote: count bytes fetched and retry failed reads (a local VRT of remote assets); None: whether
            ``src`` is a URL.
        timeline: record every stage interval (read, forward, blend, write, and the maps' closing
            ``close``) as ``(stage, thread, start, end)`` seconds from the start, under ``"timeline"``.
        device_decision: make each block's classes (and stored probabilities) in the forward's thread, as
            soon as the block is finished (on the model's device; on a CPU, on the accumulator's memory),
            so that blocks wait for the writer as classes, not float32 probabilities (2.4 MB against 94 MB
            for a 10-class 1 536 px block); False: the writer decides. The maps are the same either way.
        readers: blocks read at once, each in its own thread (the maps are the same); None:
            :func:`default_readers`.

    Returns:
        ``{"class_path", "prob_path", "tiles", "tiles_total", "tiles_forwarded", "complete", "seconds",
        "tiles_per_s", "forward_seconds", "split" (read/forward/blend/write seconds), "background_cpu"
        (CPU seconds of the reading and writing threads), "fill_seconds" and "drain_seconds" (start to
        the first forward; last forward to the maps closed), "timeline" (None unless asked),
        "redundant_tile_factor" (tile pixels per scene pixel; None when incomplete),
        "max_blocks_in_flight", "blocks_in_flight_bound", "shape", "crs", "transform", "class_nodata",
        "classes", "source", "bytes_read", "tiles_decoded", "tiles_decoded_plan",
        "tiles_decoded_direct", "carried_peak_mb"}`` (classification: tiles are chips; crs, transform,
        class_nodata and classes (the legend) are the maps', which ``io.cog_check.check_map`` checks the
        written files against; ``bytes_read``: bytes GDAL downloaded for a remote scene, None for a local
        file or where GDAL's count cannot be read; ``tiles_decoded``, ``tiles_decoded_plan``,
        ``tiles_decoded_direct`` and ``carried_peak_mb``: the file tiles decoded, those a complete pass
        decodes, those decoded straight into their block, and the most bytes held at once, where block
        reads carry tiles (``predict.carry``), else None).
    """
    if probabilities not in PROBABILITY_FORMATS:
        raise ValueError(f"probabilities must be one of {PROBABILITY_FORMATS}, got {probabilities!r}")
    if readers is not None and readers < 1:
        raise ValueError(f"{src}: readers={readers}; give at least 1 (or None for the default)")
    out_dir = Path(out_dir)
    stem = name or scene_stem(src)
    out_dir.mkdir(parents=True, exist_ok=True)
    checked = CheckpointMeta.coerce(meta)
    pre = checked.require_preprocessing()
    task = checked.task
    if task not in ("segmentation", "classification"):
        raise ValueError(f"{src}: meta['task'] is {task!r}; expected 'segmentation' or 'classification'")
    device = torch.device(device)
    model = model.to(device).eval()
    decision = Decision.from_meta(checked)
    start = time.perf_counter()
    deadline = None if max_seconds is None else start + max_seconds
    # GDAL's block cache defaults to 5 % of RAM and fills as more of the scene is read and written:
    # capping it keeps peak memory independent of the scene size (one Env per thread: it is thread-local);
    # the same Env carries the network options of remote scenes (predict.remote)
    remote = is_remote(src) if remote is None else remote
    # GDAL's decode threads only where the cores are free: beside a GPU, on a local file (on a CPU device
    # the forward has every core, and remote reads must stay in the download cache: predict.remote)
    decode_threads = not remote and device.type != "cpu"
    readers = default_readers(device, remote) if readers is None else readers
    with (
        gdal_env(decode_threads),
        FetchCounter(remote) as fetched,
        SceneReader(src, pre, window, remote) as reader,
    ):
        size = tile or (256 if task == "segmentation" else _chip_side(pre.image_size))
        run = SceneRun(
            reader=reader,
            decision=decision,
            forward=lambda x: decision.probabilities(model(x).float()),
            normalise=DeviceNormaliser(pre, device),
            batch_size=batch_size,
            clock=StageClock(events=[] if timeline else None),
            in_flight=InFlight(),
            deadline=deadline,
            threads=pipeline,
            fetched=fetched,
            decode_threads=decode_threads,
            class_dtype=class_dtype(len(decision.classes))[0],
            prob_format=probabilities,
            device_decision=device_decision,
            readers=readers if pipeline else 1,
        )
        scale = 1 if task == "segmentation" else max(int(size * (1 - overlap)), 1)
        writers = open_maps(reader, out_dir / stem, scale, probabilities, decision, tags)
        with ExitStack() as stack:
            for writer in writers:
                if writer is not None:
                    stack.enter_context(writer)
            if task == "segmentation":
                grid = plan_grid(size, overlap, block)
                total = count_tiles(reader.height, reader.width, grid, reader.file_tiles)
                bar = stack.enter_context(_progress(total, progress, scene_label(reader.path)))
                _segment(run, writers, bar, grid, blend)
            else:
                cells = chip_blocks(reader.height, reader.width, size, overlap, block)
                total = sum((i1 - i0) * (j1 - j0) for (i0, i1, j0, j1), _ in cells)
                bar = stack.enter_context(_progress(total, progress, scene_label(reader.path)))
                _classify(run, writers, bar, size, scale, cells)
            closing = time.perf_counter()  # the maps' COG copies run as the stack closes
        run.clock.mark("close", closing, time.perf_counter())
        shape = (reader.height, reader.width)
        grid_out = reader.output_like(scale)
        bytes_read = fetched.update()
    # the scene's freed arrays back to the kernel: a process predicting scene after scene would otherwise
    # keep them (resnet_apps.allocator keeps freed memory for reuse, up to 1 GiB)
    release_freed_memory()
    ended = time.perf_counter()
    seconds = ended - start
    clock = run.clock
    return {
        "class_path": out_dir / f"{stem}_class.tif",
        "prob_path": out_dir / f"{stem}_prob.tif" if probabilities else None,
        "tiles": run.tiles,
        "tiles_total": total,
        "tiles_forwarded": run.forwarded,
        "complete": run.tiles == total,
        "seconds": seconds,
        "tiles_per_s": run.tiles / seconds if seconds else 0.0,
        "forward_seconds": clock.forward,
        "split": clock.as_dict(),
        "background_cpu": clock.cpu_dict(),
        # the pipeline's fill (start to the first forward) and drain (last forward to the maps closed)
        "fill_seconds": None if clock.first_forward is None else clock.first_forward - start,
        "drain_seconds": None if clock.last_forward is None else ended - clock.last_forward,
        "timeline": None
        if clock.events is None
        else [(stage, thread, t0 - start, t1 - start) for stage, thread, t0, t1 in clock.events],
        "redundant_tile_factor": redundant_tile_factor(run.tiles, size, *shape)
        if run.tiles == total
        else None,
        "max_blocks_in_flight": run.in_flight.peak,
        "blocks_in_flight_bound": blocks_in_flight(run.readers) if pipeline else 1,
        "readers": run.readers,
        "shape": shape,
        "crs": grid_out.crs,
        "transform": list(grid_out.transform),
        "class_nodata": class_dtype(len(decision.classes))[1],
        "classes": list(decision.classes),
        "source": str(src),
        "bytes_read": bytes_read,
        "tiles_decoded": None if run.carry is None else run.carry.decoded,
        "tiles_decoded_plan": None if run.carry is None else run.carry.planned,
        "tiles_decoded_direct": None if run.carry is None else run.carry.direct,
        "carried_peak_mb": None if run.carry is None else round(run.carry.peak_held_bytes / 2**20, 1),
    }


def default_readers(device: torch.device, remote: bool) -> int:
    """Blocks read at once by default: one on a CPU device (the forward holds every core, and one reader
    below its priority keeps ahead of it) and for a remote scene (neighbouring blocks read at once would
    both fetch the tiles of their shared halo, past the download cache); beside an accelerator, whose
    forward outruns one thread's decoding (10 000 px on an H200: 6.9 s reading, 3.2 s forward, measured),
    :data:`ACCELERATOR_READERS`, at most one per two cores."""
    if device.type == "cpu" or remote:
        return 1
    return max(1, min(ACCELERATOR_READERS, (os.cpu_count() or 2) // 2))


def _progress(total: int, enabled: bool, name: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tile", desc=name, disable=not enabled, dynamic_ncols=True)


def _segment(run: SceneRun, writers: MapWriters, bar: Any, grid: TileGrid, blend: BlendMode) -> None:
    """Blocks with halos -> tiles batched across blocks -> MONAI-weighted blend over each core -> COG."""
    device = run.normalise.device
    weights = blend_weights(grid, blend, device)  # once per scene, on the model's device
    classes = run.decision.num_outputs
    t = grid.tile

    def read(blk: Block) -> BlockJob:
        r0, r1, c0, c1 = blk.read
        origins = np.asarray(tile_origins(r1 - r0, c1 - c0, grid), dtype=np.int64).reshape(-1, 2)
        keep = np.zeros(len(origins), dtype=bool)
        ends = origins[:, 0] + t  # the read-window row below each tile

        def settle(valid: np.ndarray, a: int, b: int) -> None:  # tiles that end in rows [a, b)
            for k in np.flatnonzero((ends > a) & (ends <= b)):
                r, c = origins[k]
                keep[k] = valid[r : r + t, c : c + t].any()

        if run.reads == 0 and run.threads:  # the forward waits for the first block: hand it over early
            raw, valid, ready, rest = run.read_early(blk.read, settle, blk.stripe)
            return BlockJob(blk.core, raw, valid, origins, keep, info=blk, ready=ready, rest=rest)
        raw, valid = run.read(blk.read, blk.stripe)
        settle(valid, 0, r1 - r0)
        return BlockJob(span=blk.core, raw=raw, valid=valid, origins=origins, keep=keep, info=blk)

    def start(job: BlockJob) -> tuple[torch.Tensor, torch.Tensor]:
        # accumulators over the core only: outputs in the halo are never written, so never summed
        rows, cols = job.info.core_in_read
        h, w = rows.stop - rows.start, cols.stop - cols.start
        acc = torch.zeros((classes, h, w), dtype=torch.float32, device=device)
        return acc, torch.zeros((h, w), dtype=torch.float32, device=device)

    def accept(job: BlockJob, indexes: list[int], out: torch.Tensor | None) -> None:
        assert job.state is not None
        acc, wsum = job.state
        rows, cols = job.info.core_in_read
        for n, k in enumerate(indexes):
            r, c = (int(v) for v in job.origins[k])
            r0, r1 = max(r, rows.start), min(r + t, rows.stop)  # the tile's part inside the core
            c0, c1 = max(c, cols.start), min(c + t, cols.stop)
            if r0 < r1 and c0 < c1:
                tw = weights[r0 - r : r1 - r, c0 - c : c1 - c]
                core = (slice(r0 - rows.start, r1 - rows.start), slice(c0 - cols.start, c1 - cols.start))
                if out is not None:  # a skipped tile adds weight only, as MONAI's zero output would
                    acc[:, core[0], core[1]] += out[n][:, r0 - r : r1 - r, c0 - c : c1 - c] * tw
                wsum[core] += tw
        job.accepted += len(indexes)

    def finish(job: BlockJob) -> BlockMaps | np.ndarray:
        assert job.state is not None
        acc, wsum = job.state
        # in place: a second [K, B, B] float32 array per block (94 MB at the defaults) would raise the peak
        return run.finished(acc.div_(wsum))

    def write(job: BlockJob, result: BlockMaps | np.ndarray) -> None:
        rows, cols = job.info.core_in_read
        write_block(writers, run.stored(result), job.valid[rows, cols], job.span)
        run.written(job, bar)

    reader = run.reader
    blocks = run.ordered_blocks(
        lambda stripe: list(iter_blocks(reader.height, reader.width, grid, reader.file_tiles, stripe))
    )
    run.run(blocks, read, Task(t, start, accept, finish), write)


def _classify(
    run: SceneRun,
    writers: MapWriters,
    bar: Any,
    tile: int,
    stride: int,
    blocks: list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]],
) -> None:
    """Chips centred on map cells, batched across blocks; one class (probabilities) per cell."""
    device = run.normalise.device
    classes = run.decision.num_outputs

    def read(item: tuple[tuple[int, int, int, int], tuple[int, int, int, int]]) -> BlockJob:
        cells, window = item
        i0, i1, j0, j1 = cells
        ni, nj = i1 - i0, j1 - j0
        raw, valid = run.read(window)
        origins = np.array([(a * stride, b * stride) for a in range(ni) for b in range(nj)], dtype=np.int64)
        offset = window[0] - i0 * stride
        cell_valid = cell_validity(valid, run.reader.height, run.reader.width, cells, stride, offset)
        return BlockJob(
            span=cells, raw=raw, valid=valid, origins=origins.reshape(-1, 2), keep=cell_valid.reshape(-1)
        )

    def start(job: BlockJob) -> torch.Tensor:
        return torch.zeros((classes, job.tiles), dtype=torch.float32, device=device)

    def accept(job: BlockJob, indexes: list[int], out: torch.Tensor | None) -> None:
        assert job.state is not None
        if out is not None:  # skipped chips are nodata cells: their zeros are never shown
            job.state[:, indexes] = out.T
        job.accepted += len(indexes)

    def finish(job: BlockJob) -> BlockMaps | np.ndarray:
        i0, i1, j0, j1 = job.span
        assert job.state is not None
        return run.finished(job.state.reshape(classes, i1 - i0, j1 - j0))

    def write(job: BlockJob, result: BlockMaps | np.ndarray) -> None:
        i0, i1, j0, j1 = job.span
        write_block(writers, run.stored(result), job.keep.reshape(i1 - i0, j1 - j0), job.span)
        run.written(job, bar)

    run.run(blocks, read, Task(tile, start, accept, finish), write)
