"""Whole GeoTIFF scenes to georeferenced class (and probability) maps, block by block in bounded memory.

Segmentation models: each block (see :mod:`resnet_apps.predict.tiling`) is read with its halo, normalised
with the checkpoint's preprocessing, blended by MONAI's ``sliding_window_inference`` and its core written
at once, so peak memory depends on the block size, never on the scene. Classification models: the scene
is cut into chips of the training ``image_size`` centred on cells of ``stride`` pixels, and the class of
each chip is written as one pixel of a map whose transform is the input's scaled by the stride.

Outputs are tiled, DEFLATE-compressed Cloud-Optimised GeoTIFFs (written block-wise to a temporary
GeoTIFF, then copied by GDAL's COG driver, which streams) with the input's CRS, transform and nodata
pixels kept as nodata.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from torch import nn

from resnet_apps.io import GeoTiffWriter, open_geotiff_writer
from resnet_apps.models.decision import Decision
from resnet_apps.models.meta import CheckpointMeta
from resnet_apps.predict.raster import SceneReader, class_dtype
from resnet_apps.predict.tiling import BlendMode, count_tiles, iter_blocks, plan_grid, predict_window

PROBABILITY_FORMATS = (None, "float32", "uint8")
GDAL_CACHE_MB = 128


def probabilities_to_classes(prob: np.ndarray, decision: Decision) -> np.ndarray:
    """[K, ...] probabilities -> class indexes [...] at the checkpoint's operating point.

    One output: class 1 where p >= threshold. Two classes: the positive class where its probability
    reaches the threshold. More: the most probable class.
    """
    if prob.shape[0] == 1:
        return (prob[0] >= decision.threshold).astype(np.int64)
    if decision.binary:
        positive = prob[decision.positive_index] >= decision.threshold
        return np.where(positive, decision.positive_index, 1 - decision.positive_index)
    return prob.argmax(axis=0)


def _chip_side(image_size: int | tuple[int, int] | None) -> int:
    """The training chip side of a classification checkpoint (64 when unrecorded; the longer side of H, W)."""
    if image_size is None:
        return 64
    return image_size if isinstance(image_size, int) else max(image_size)


def _timed_predictor(
    model: nn.Module,
    activation: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    clock: list[float],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tiles [b, C + 1, t, t] (last channel: valid 0/1) -> probabilities [b, K, t, t] on the input's device.

    Tiles without one valid pixel are not run: every pixel they cover is nodata and written as such, so
    their (zero) contribution to the blend is never seen. Forward seconds are added to ``clock[0]``.
    """

    def predict(tiles: torch.Tensor) -> torch.Tensor:
        x, valid = tiles[:, :-1], tiles[:, -1]
        keep = valid.flatten(1).amax(dim=1) > 0
        start = time.perf_counter()
        # no_grad, not inference_mode: MONAI scales the returned tensor in place outside the context
        with torch.no_grad():
            if bool(keep.all()):
                out = activation(model(x.to(device)).float()).to(tiles.device)
            else:
                out = None
                if bool(keep.any()):
                    part = activation(model(x[keep].to(device)).float()).to(tiles.device)
                    out = part.new_zeros((x.shape[0], *part.shape[1:]))
                    out[keep] = part
        clock[0] += time.perf_counter() - start
        if out is None:  # nothing valid in the batch: the output size is the model's, ask it once
            out = _empty_output(model, activation, x, device)
        return out

    return predict


def _empty_output(
    model: nn.Module, activation: Callable, x: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Zeros shaped like the model's output for ``x`` (the shape of one tile's output is cached)."""
    shape = getattr(model, "_predict_output_shape", None)
    if shape is None or shape[1:] != tuple(x.shape[1:]):
        with torch.no_grad():
            probe = activation(model(x[:1].to(device)).float())
        shape = (tuple(probe.shape[1:]), tuple(x.shape[1:]))
        model._predict_output_shape = shape  # type: ignore[assignment]
    return x.new_zeros((x.shape[0], *shape[0]))


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
) -> dict[str, Any]:
    """Predict one GeoTIFF scene and write ``<stem>_class.tif`` (+ ``<stem>_prob.tif``) into ``out_dir``.

    Args:
        model: a model from ``load_run`` (segmentation: [B, C, H, W] -> [B, K, H, W] logits;
            classification: [B, C, h, w] -> [B, K] logits).
        meta: the checkpoint metadata (task, model, classes, preprocessing, operating_threshold); a plain
            dict is checked by :class:`CheckpointMeta`.
        src: the scene.
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

    Returns:
        ``{"class_path", "prob_path", "tiles", "tiles_total", "complete", "seconds", "tiles_per_s",
        "forward_seconds", "shape"}`` (classification: tiles are chips).
    """
    if probabilities not in PROBABILITY_FORMATS:
        raise ValueError(f"probabilities must be one of {PROBABILITY_FORMATS}, got {probabilities!r}")
    src, out_dir = Path(src), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checked = CheckpointMeta.coerce(meta)
    pre = checked.require_preprocessing()
    task = checked.task
    device = torch.device(device)
    model = model.to(device).eval()
    clock = [0.0]
    decision = Decision.from_meta(checked)
    predictor = _timed_predictor(model, decision.probabilities, device, clock)
    start = time.perf_counter()
    deadline = None if max_seconds is None else start + max_seconds
    # GDAL's block cache defaults to 5 % of RAM and fills as more of the scene is read and written:
    # capping it keeps peak memory independent of the scene size
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), SceneReader(src, pre) as reader:
        if task == "segmentation":
            tiles, total = _segment(
                reader,
                predictor,
                out_dir,
                tile or 256,
                overlap,
                block,
                batch_size,
                blend,
                probabilities,
                decision,
                progress,
                deadline,
            )
        elif task == "classification":
            tiles, total = _classify(
                reader,
                predictor,
                out_dir,
                tile or _chip_side(pre.image_size),
                overlap,
                block,
                batch_size,
                probabilities,
                decision,
                progress,
                deadline,
            )
        else:
            raise ValueError(f"{src}: meta['task'] is {task!r}; expected 'segmentation' or 'classification'")
        shape = (reader.height, reader.width)
    seconds = time.perf_counter() - start
    stem = scene_stem(src)
    return {
        "class_path": out_dir / f"{stem}_class.tif",
        "prob_path": out_dir / f"{stem}_prob.tif" if probabilities else None,
        "tiles": tiles,
        "tiles_total": total,
        "complete": tiles == total,
        "seconds": seconds,
        "tiles_per_s": tiles / seconds if seconds else 0.0,
        "forward_seconds": clock[0],
        "shape": shape,
    }


def _open_writers(
    reader: SceneReader, out_dir: Path, scale: int, probabilities: str | None, decision: Decision
) -> tuple[GeoTiffWriter, GeoTiffWriter | None]:
    """Class (and probability) COG writers on the scene's grid, or one ``scale`` times coarser."""
    stem = scene_stem(reader.path)
    like = reader.output_like(scale)
    dtype, nodata = class_dtype(len(decision.classes))
    cls = open_geotiff_writer(
        out_dir / f"{stem}_class.tif",
        like=like,
        count=1,
        dtype=dtype,
        nodata=nodata,
        band_names=["class"],
        legend=list(decision.classes),
    )
    prob = None
    if probabilities:
        names = decision.columns()
        prob = open_geotiff_writer(
            out_dir / f"{stem}_prob.tif",
            like=like,
            count=len(names),
            dtype=probabilities,
            nodata=float("nan") if probabilities == "float32" else 255,
            band_names=names,
        )
    return cls, prob


def scene_stem(path: str | Path) -> str:
    """Output name stem of a scene: its name without the last suffix (``scene.v1.tif`` -> ``scene.v1``).

    The whole stem, so that ``scene.v1.tif`` and ``scene.v2.tif`` never write the same ``_class.tif``.
    """
    return Path(path).stem


def _encode_probabilities(prob: np.ndarray, fmt: str, valid: np.ndarray) -> np.ndarray:
    """[K, h, w] float -> the stored probability array with nodata where not valid."""
    if fmt == "uint8":
        out = np.rint(prob * 254.0).astype(np.uint8)
        out[:, ~valid] = 255
        return out
    out = prob.astype(np.float32, copy=True)
    out[:, ~valid] = np.nan
    return out


def _progress(total: int, enabled: bool, name: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tile", desc=name, disable=not enabled, dynamic_ncols=True)


def _window(span: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` -> the io writer's ``(row_off, col_off, height, width)``."""
    r0, r1, c0, c1 = span
    return r0, c0, r1 - r0, c1 - c0


def _write(
    writers: tuple[GeoTiffWriter, GeoTiffWriter | None],
    prob: np.ndarray,
    valid: np.ndarray,
    span: tuple[int, int, int, int],
    decision: Decision,
) -> None:
    """Write classes (nodata where not valid) and, if asked, probabilities [K, h, w] at ``span``."""
    cls_writer, prob_writer = writers
    classes = probabilities_to_classes(prob, decision).astype(cls_writer.dtype)
    classes[~valid] = cls_writer.nodata
    cls_writer.write(classes[None], _window(span))
    if prob_writer is not None:
        prob_writer.write(_encode_probabilities(prob, prob_writer.dtype.name, valid), _window(span))


def _segment(
    reader: SceneReader,
    predictor: Callable,
    out_dir: Path,
    tile: int,
    overlap: float,
    block: int,
    batch_size: int,
    blend: BlendMode,
    probabilities: str | None,
    decision: Decision,
    progress: bool,
    deadline: float | None,
) -> tuple[int, int]:
    grid = plan_grid(tile, overlap, block)
    total = count_tiles(reader.height, reader.width, grid)
    writers = _open_writers(reader, out_dir, 1, probabilities, decision)
    with ExitStack() as stack, _progress(total, progress, reader.path.name) as bar:
        for writer in writers:
            if writer is not None:
                stack.enter_context(writer)
        done = 0
        for blk in iter_blocks(reader.height, reader.width, grid):
            if deadline is not None and time.perf_counter() > deadline:
                break
            x, valid = reader.read_normalised(blk.read, with_valid_channel=True)
            out = predict_window(torch.from_numpy(x)[None], predictor, grid, batch_size, blend)[0]
            del x  # free the block input before the core is cut and written
            rows, cols = blk.core_in_read
            _write(writers, out[:, rows, cols].numpy(), valid[rows, cols], blk.core, decision)
            del out
            block_tiles = grid.tiles_along(blk.read[1] - blk.read[0]) * grid.tiles_along(
                blk.read[3] - blk.read[2]
            )
            done += block_tiles
            bar.update(block_tiles)
    return done, total


def _classify(
    reader: SceneReader,
    predictor: Callable,
    out_dir: Path,
    tile: int,
    overlap: float,
    block: int,
    batch_size: int,
    probabilities: str | None,
    decision: Decision,
    progress: bool,
    deadline: float | None,
) -> tuple[int, int]:
    stride = max(int(tile * (1 - overlap)), 1)
    offset = (stride - tile) // 2  # chips are centred on their cell (offset <= 0 when chips overlap)
    out_h, out_w = math.ceil(reader.height / stride), math.ceil(reader.width / stride)
    cells = max(block // stride, 1)  # cells per block side
    writers = _open_writers(reader, out_dir, stride, probabilities, decision)
    with ExitStack() as stack, _progress(out_h * out_w, progress, reader.path.name) as bar:
        for writer in writers:
            if writer is not None:
                stack.enter_context(writer)
        done = 0
        for i0 in range(0, out_h, cells):
            for j0 in range(0, out_w, cells):
                if deadline is not None and time.perf_counter() > deadline:
                    break
                i1, j1 = min(i0 + cells, out_h), min(j0 + cells, out_w)
                ni, nj = i1 - i0, j1 - j0
                read = (
                    i0 * stride + offset,
                    (i1 - 1) * stride + offset + tile,
                    j0 * stride + offset,
                    (j1 - 1) * stride + offset + tile,
                )
                x, valid = reader.read_normalised(read, with_valid_channel=True)
                chips = (
                    torch.from_numpy(x).unfold(1, tile, stride).unfold(2, tile, stride)
                )  # [C, ni, nj, t, t]
                chips = chips.permute(1, 2, 0, 3, 4).reshape(ni * nj, x.shape[0], tile, tile)
                cell_valid = _cell_validity(valid, reader, (i0, i1, j0, j1), stride, offset)
                chips[~torch.from_numpy(cell_valid.reshape(-1)), -1] = 0  # nodata cells: skip their chips
                prob = torch.cat(
                    [predictor(chips[k : k + batch_size]) for k in range(0, ni * nj, batch_size)]
                )
                prob_map = prob.reshape(ni, nj, -1).permute(2, 0, 1).numpy()  # [K, ni, nj]
                _write(writers, prob_map, cell_valid, (i0, i1, j0, j1), decision)
                done += ni * nj
                bar.update(ni * nj)
    return done, out_h * out_w


def _cell_validity(
    valid: np.ndarray, reader: SceneReader, cells: tuple[int, int, int, int], stride: int, offset: int
) -> np.ndarray:
    """A cell is valid when at least half of its in-scene pixels are valid input pixels: [ni, nj] bool."""
    i0, i1, j0, j1 = cells
    ni, nj = i1 - i0, j1 - j0
    # the read window starts at cell origin + offset, so the cells start at -offset inside it
    area = np.zeros((ni * stride, nj * stride), dtype=bool)
    inside = np.zeros_like(area)
    src = valid[-offset:, -offset:][: ni * stride, : nj * stride]
    area[: src.shape[0], : src.shape[1]] = src
    rows = min(reader.height - i0 * stride, ni * stride)
    cols = min(reader.width - j0 * stride, nj * stride)
    inside[:rows, :cols] = True
    valid_count = area.reshape(ni, stride, nj, stride).sum(axis=(1, 3))
    inside_count = inside.reshape(ni, stride, nj, stride).sum(axis=(1, 3))
    return valid_count * 2 >= np.maximum(inside_count, 1)
