"""Window grid for streaming sliding-window prediction: blocks with a halo, each run through MONAI.

A scene is cut into square *blocks* (what is written at once). Each block is read with a *halo* so that
MONAI's ``sliding_window_inference`` over the read window lays its tiles on the same global grid
(multiples of the stride ``s``) that one whole-scene pass would use, and every tile that covers a core
pixel in the whole-scene pass also lies inside that block's read window. Hence the streamed result equals
one whole-scene MONAI pass over the zero-padded scene up to float rounding, block seams included
(``tests/predict/test_predict_tiling.py`` checks this with a non-pointwise predictor).

The arithmetic, per axis, for tile ``r`` and stride ``s = int(r * (1 - overlap))`` (MONAI's own rule):

- a core pixel ``p`` is covered by the grid tiles starting in ``(p - r, p]``; the earliest one starts
  ``ceil((r - s) / s) * s`` before a block start that is a multiple of ``s``: that is ``halo_before``;
- the last tile covering the last core pixel starts at ``b1 - s`` and ends at ``b1 - s + r``:
  ``halo_after = r - s``;
- the read length is then ``n * s + r`` for an integer ``n``, so MONAI's ``dense_patch_slices`` places
  ``n + 1`` tiles at multiples of ``s`` and never shifts (clamps) the last one.

Example: r = 256, overlap 0.25 -> s = 192, halo_before = 192, halo_after = 64; the default 1536-px block
(8 strides) is read as 1792 px and holds 9 x 9 tiles where the whole-scene pass spends 8 x 8 on it (1.27x
tiles); a 2112-px block would cost 1.19x tiles but ~250 MB more memory (13 bands, 10 classes: the block
input plus MONAI's output and count buffers take about 100 bytes per read pixel), which puts peak RSS over
2 GB once torch (~0.7 GB) and MONAI (~0.35 GB) are imported (``resnet-apps bench predict``).

Work done twice, and the overlap/blend trade-off. :func:`redundant_tile_factor` = tiles forwarded x tile
area / scene area counts every tile pixel the model computes per output pixel. Two things raise it above 1:
overlap, about ``(tile / stride)**2`` (1.78 at 0.25, 4 at 0.5), and the halo (tiles / whole-scene tiles,
1.27 per block side at the defaults; ``halo_before`` is a whole stride even for a small overlap, so 0.125
costs nearly as many tiles as 0.25). For the 2 500 px scene of ``resnet-apps bench predict`` (defaults):
2.68 at overlap 0.25 (halo factor 1.52, measured), 2.06 at 0.125, 1.05 at 0 (halo 0: tiles abut; these two
from :func:`count_tiles`). Overlap 0 thus runs 2.6x fewer tiles, at the price of seams: on the real
NAIP scene in ``shared/data/geotiff_scenes`` (723 x 934 x 4,
seeded random FPN resnet18, tile 256; ``python -m resnet_apps.bench.seams``) the mean absolute probability
difference to one whole-image forward, within 8 px of the overlap-0 tile borders, is 0.070 at overlap 0,
0.035 at 0.125, 0.030 at 0.25 and 0.028 at 0.5 (gaussian blending), against 0.033-0.037 over all pixels in
every setting: overlap 0 doubles the error at the seams and leaves it unchanged elsewhere, 0.25 removes the
seam excess. Use overlap 0 (``constant`` blend, which it makes irrelevant) where a visible seam is
acceptable, e.g. a quick look or a model with a small receptive field; keep 0.25 + gaussian for maps.

Reads on the file's tiles. GDAL decodes every internal tile a window touches, whole, so what a block read
costs is the file tiles it touches, not its pixels. The plain plan's 1 792 px reads start 192 px before a
512 px tile boundary and touch 5 tiles per side where 4 would hold them: 2.56 file tiles decoded per file
tile of the scene. :func:`aligned_shift` lengthens the first block of each axis by a stride or more, so
that every later read starts on a tile boundary: 1.69 (676 instead of 1 024 tile decodes at 10 000 px,
1.44 instead of 1.96 at 2 500 px). Decoding the block windows of a 5 000 px 13-band DEFLATE scene on one
thread took 3.8 s instead of 6.6 s. Block starts stay multiples of the stride, so the tiles forwarded and
the maps are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

# how overlapping tiles are weighted: MONAI sliding_window_inference's ``mode`` (BlendMode values)
BlendMode = Literal["gaussian", "constant"]
BLEND_MODES: tuple[BlendMode, ...] = get_args(BlendMode)
MAX_SHIFT = 0.25  # the first block of an axis is at most this fraction of a block longer (aligned_shift)


@dataclass(frozen=True)
class TileGrid:
    """Tile, stride, halo and block sizes (pixels) of one streaming pass."""

    tile: int
    stride: int
    halo_before: int
    halo_after: int
    block: int
    overlap: float

    def tiles_along(self, read_length: int) -> int:
        """Number of MONAI tiles along one axis of a read window of ``read_length`` pixels."""
        if read_length <= self.tile:
            return 1
        return math.ceil((read_length - self.tile) / self.stride) + 1


@dataclass(frozen=True)
class Block:
    """One block: ``core`` is written, ``read`` (may reach outside the scene) is read, zero-padded.

    Both are ``(row0, row1, col0, col1)`` half-open pixel ranges in scene coordinates.
    """

    core: tuple[int, int, int, int]
    read: tuple[int, int, int, int]
    stripe: int = 0  # the stripe of block columns it is read in (iter_blocks); 0 in row-major order

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        """Slices that cut the core out of an array shaped like the read window."""
        r0, r1, c0, c1 = self.core
        rr0, _, rc0, _ = self.read
        return slice(r0 - rr0, r1 - rr0), slice(c0 - rc0, c1 - rc0)


def plan_grid(tile: int, overlap: float, block: int = 1536) -> TileGrid:
    """Derive the stride, halos and a block size that is a whole number of strides.

    Args:
        tile: tile (MONAI ``roi_size``) side in pixels.
        overlap: fraction of a tile shared with its neighbour, in [0, 1).
        block: wanted block side in pixels; rounded to the nearest multiple of the stride (at least one).

    Returns:
        The grid.
    """
    if tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    stride = max(int(tile * (1 - overlap)), 1)  # MONAI's _get_scan_interval
    halo_before = math.ceil((tile - stride) / stride) * stride
    halo_after = tile - stride
    block = max(round(block / stride), 1) * stride
    return TileGrid(tile, stride, halo_before, halo_after, block, overlap)


def _file_tiles(read0: int, read1: int, length: int, internal: int, offset: int) -> int:
    """Internal (file) tiles of ``internal`` px that a read ``[read0, read1)`` touches, clamped to the scene.

    ``offset`` is where the scene (the reader's window) starts in the file; 0 for an empty read.
    """
    lo, hi = max(read0, 0) + offset, min(read1, length) + offset
    if hi <= lo:
        return 0
    return (hi - 1) // internal - lo // internal + 1


def aligned_shift(length: int, grid: TileGrid, internal: int = 0, offset: int = 0) -> int:
    """How much longer the first block is, so that the others' reads start on the file's internal tiles.

    A reader decodes every internal tile a read window touches, whole. At the defaults (1 536 px blocks,
    a 192 px halo before, 512 px file tiles) a read of 1 792 px starting 192 px before a tile boundary
    touches 5 tiles per axis where 4 hold it: 25 tiles decoded per block instead of 16 (1.56x). Lengthening
    the first block by a multiple of the stride moves every later read's start onto a tile boundary (the
    first read is clamped at the scene's edge). Block starts stay multiples of the stride, so the tiles,
    and the blended result, are those of the plain plan.

    Args:
        length: scene length along the axis (pixels).
        grid: from :func:`plan_grid`.
        internal: the file's internal tile (or strip) length along the axis; 0 or less: no alignment.
        offset: where the scene starts in the file along the axis (a ``window`` read).

    Returns:
        The extra length of the first block: the multiple of the stride, at most a quarter of a block
        (:data:`MAX_SHIFT`: it bounds the first row's and column's blocks at 1.25x a block's side), that
        forwards the fewest model tiles and, among those, touches the fewest internal tiles over the whole
        axis (0 when none does better).
    """
    if internal <= 0 or length <= grid.block:
        return 0
    best, best_cost = 0, (0, 0)
    for shift in range(0, int(grid.block * MAX_SHIFT) + 1, grid.stride):
        spans = _axis_blocks(length, grid, shift)
        # the model's tiles first (the forward is the costly part), then the file tiles decoded
        cost = (
            sum(grid.tiles_along(b - a) for _, _, a, b in spans),
            sum(_file_tiles(a, b, length, internal, offset) for _, _, a, b in spans),
        )
        if shift == 0 or cost < best_cost:
            best, best_cost = shift, cost
    return best


def _axis_blocks(length: int, grid: TileGrid, shift: int = 0) -> list[tuple[int, int, int, int]]:
    """Core and read ranges ``(core0, core1, read0, read1)`` along one axis of ``length`` pixels.

    The first core is ``grid.block + shift`` long (see :func:`aligned_shift`), the others ``grid.block``.
    """
    spans = []
    starts = [0, *range(grid.block + shift, length, grid.block)]
    for start, nxt in zip(starts, [*starts[1:], length], strict=True):
        end = min(nxt, length)
        # round the core end up to the grid so that MONAI never clamps the last tile (see module doc)
        grid_end = math.ceil(end / grid.stride) * grid.stride
        spans.append((start, end, start - grid.halo_before, grid_end + grid.halo_after))
    return spans


@dataclass(frozen=True)
class FileTiles:
    """The file's internal tile shape and where the scene starts in the file, for :func:`aligned_shift`.

    ``(0, 0)`` tiles: no alignment (the plain plan).
    """

    rows: int = 0
    cols: int = 0
    row_off: int = 0
    col_off: int = 0


def block_spans(
    height: int, width: int, grid: TileGrid, file: FileTiles | None = None
) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
    """Row and column spans ``(core0, core1, read0, read1)`` of the blocks, aligned to ``file``'s tiles."""
    file = file or FileTiles()
    row_shift = aligned_shift(height, grid, file.rows, file.row_off)
    col_shift = aligned_shift(width, grid, file.cols, file.col_off)
    return _axis_blocks(height, grid, row_shift), _axis_blocks(width, grid, col_shift)


def iter_blocks(
    height: int, width: int, grid: TileGrid, file: FileTiles | None = None, stripe: int = 0
) -> Iterator[Block]:
    """Blocks that cover a ``height`` x ``width`` scene exactly once, in row-major order or in stripes.

    With ``file`` (the scene's internal tiling), reads are aligned to its tiles (:func:`aligned_shift`).
    With ``stripe`` = n > 0 the blocks come in vertical stripes of n block columns, left to right, each
    stripe row by row (``Block.stripe`` numbers them): neighbours above and beside a block are then read
    shortly before it, so the file tiles they share can be kept in between (:mod:`resnet_apps.predict.carry`).
    The set of blocks, and so the written maps, do not depend on the order.
    """
    rows, cols = block_spans(height, width, grid, file)
    width_blocks = stripe if stripe > 0 else len(cols)
    for s, first in enumerate(range(0, len(cols), width_blocks)):
        for r0, r1, rr0, rr1 in rows:
            for c0, c1, rc0, rc1 in cols[first : first + width_blocks]:
                yield Block(core=(r0, r1, c0, c1), read=(rr0, rr1, rc0, rc1), stripe=s)


def count_tiles(height: int, width: int, grid: TileGrid, file: FileTiles | None = None) -> int:
    """Number of tiles the streaming pass will predict (for progress bars and benchmarks)."""
    row_spans, col_spans = block_spans(height, width, grid, file)
    rows = sum(grid.tiles_along(b[3] - b[2]) for b in row_spans)
    cols = sum(grid.tiles_along(b[3] - b[2]) for b in col_spans)
    return rows * cols


def file_tiles_read(height: int, width: int, grid: TileGrid, file: FileTiles) -> int:
    """Internal file tiles decoded over the whole pass (each read decodes every tile it touches)."""
    row_spans, col_spans = block_spans(height, width, grid, file)
    rows = sum(_file_tiles(a, b, height, file.rows, file.row_off) for _, _, a, b in row_spans)
    cols = sum(_file_tiles(a, b, width, file.cols, file.col_off) for _, _, a, b in col_spans)
    return rows * cols


def padded_reference_pads(height: int, width: int, grid: TileGrid) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` zero padding under which one whole-scene MONAI pass equals the stream.

    Used by tests and by anyone who wants to reproduce a streamed map with a single call.
    """
    bottom = math.ceil(height / grid.stride) * grid.stride + grid.halo_after - height
    right = math.ceil(width / grid.stride) * grid.stride + grid.halo_after - width
    return grid.halo_before, bottom, grid.halo_before, right


def predict_window(
    x: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    grid: TileGrid,
    batch_size: int = 8,
    blend: BlendMode = "gaussian",
) -> torch.Tensor:
    """Blend tile predictions over one read window with MONAI's ``sliding_window_inference``.

    Args:
        x: read window [1, C, h, w], already normalised; h, w >= ``grid.tile``.
        predictor: tiles [b, C, tile, tile] -> per-pixel outputs [b, K, tile, tile].
        grid: from :func:`plan_grid`.
        batch_size: tiles per predictor call.
        blend: ``gaussian`` (MONAI default sigma 0.125 of the tile) or ``constant`` (plain average).

    Returns:
        Blended outputs [1, K, h, w] (float32).
    """
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    from monai.inferers import sliding_window_inference  # heavy import, only when predicting

    out = sliding_window_inference(
        x,
        roi_size=(grid.tile, grid.tile),
        sw_batch_size=batch_size,
        predictor=predictor,
        overlap=grid.overlap,
        mode=blend,
        padding_mode="constant",
        cval=0.0,
    )
    assert isinstance(out, torch.Tensor)
    return out.as_tensor() if hasattr(out, "as_tensor") else out


def tile_origins(height: int, width: int, grid: TileGrid) -> list[tuple[int, int]]:
    """Top-left corners of MONAI's tiles over a read window, row-major (``dense_patch_slices``' order).

    Positions are multiples of the stride, the last one clamped to ``length - tile`` as MONAI does (read
    windows from :func:`iter_blocks` are ``n * stride + tile`` long, so nothing is clamped there).
    """

    def along(length: int) -> list[int]:
        return [min(i * grid.stride, max(length - grid.tile, 0)) for i in range(grid.tiles_along(length))]

    return [(r, c) for r in along(height) for c in along(width)]


def blend_weights(grid: TileGrid, blend: BlendMode, device: torch.device) -> torch.Tensor:
    """MONAI's importance map for one tile [tile, tile] float32 on ``device`` (allocated once per scene).

    The same map ``sliding_window_inference`` uses (gaussian sigma 0.125 of the tile, zeros raised to the
    smallest non-zero weight), so blending tile outputs with it reproduces MONAI's result.
    """
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    from monai.data.utils import compute_importance_map

    weights = compute_importance_map(
        (grid.tile, grid.tile), mode=blend, sigma_scale=0.125, device=device, dtype=torch.float32
    )
    return torch.as_tensor(weights, dtype=torch.float32, device=device)


def redundant_tile_factor(tiles: int, tile: int, height: int, width: int) -> float:
    """Tile pixels forwarded per scene pixel: ``tiles * tile**2 / (height * width)``.

    1.0 means every pixel went through the model once; overlap and block halos raise it (see module doc).
    """
    return tiles * tile * tile / max(height * width, 1)


def chip_blocks(
    height: int, width: int, tile: int, overlap: float, block: int
) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Classification blocks: (cells ``(i0, i1, j0, j1)`` of the map, read window in scene pixels).

    Chips of ``tile`` px are centred on map cells of ``stride = int(tile * (1 - overlap))`` px.
    """
    stride = max(int(tile * (1 - overlap)), 1)
    offset = (stride - tile) // 2  # chips are centred on their cell (offset <= 0 when chips overlap)
    out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)
    cells = max(block // stride, 1)  # cells per block side
    blocks = []
    for i0 in range(0, out_h, cells):
        for j0 in range(0, out_w, cells):
            i1, j1 = min(i0 + cells, out_h), min(j0 + cells, out_w)
            read = (
                i0 * stride + offset,
                (i1 - 1) * stride + offset + tile,
                j0 * stride + offset,
                (j1 - 1) * stride + offset + tile,
            )
            blocks.append(((i0, i1, j0, j1), read))
    return blocks


def cell_validity(
    valid: np.ndarray,
    height: int,
    width: int,
    cells: tuple[int, int, int, int],
    stride: int,
    offset: int,
) -> np.ndarray:
    """A cell is valid when at least half of its in-scene pixels are valid input pixels: [ni, nj] bool."""
    i0, i1, j0, j1 = cells
    ni, nj = i1 - i0, j1 - j0
    # the read window starts at cell origin + offset, so the cells start at -offset inside it
    area = np.zeros((ni * stride, nj * stride), dtype=bool)
    inside = np.zeros_like(area)
    src = valid[-offset:, -offset:][: ni * stride, : nj * stride]
    area[: src.shape[0], : src.shape[1]] = src
    rows = min(height - i0 * stride, ni * stride)
    cols = min(width - j0 * stride, nj * stride)
    inside[:rows, :cols] = True
    valid_count = area.reshape(ni, stride, nj, stride).sum(axis=(1, 3))
    inside_count = inside.reshape(ni, stride, nj, stride).sum(axis=(1, 3))
    return valid_count * 2 >= np.maximum(inside_count, 1)
