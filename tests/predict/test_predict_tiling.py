"""Tiling is exact: the block-streamed, blended output equals the input (trivial predictors) and equals
one whole-scene MONAI pass (a real convolutional predictor), for many tile/overlap/block/size cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from resnet_apps.predict.tiling import (
    FileTiles,
    aligned_shift,
    count_tiles,
    file_tiles_read,
    iter_blocks,
    padded_reference_pads,
    plan_grid,
    predict_window,
)


def _stream(
    x: torch.Tensor,
    predictor,
    tile: int,
    overlap: float,
    block: int,
    blend: str,
    file: FileTiles | None = None,
) -> torch.Tensor:
    """Run the streaming loop over an in-memory scene [1, C, H, W] (zero padding outside it)."""
    _, _, height, width = x.shape
    grid = plan_grid(tile, overlap, block)
    out = None
    covered = torch.zeros(height, width, dtype=torch.int64)
    for blk in iter_blocks(height, width, grid, file):
        r0, r1, c0, c1 = blk.read
        window = torch.zeros(1, x.shape[1], r1 - r0, c1 - c0)
        ir0, ir1, ic0, ic1 = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
        window[:, :, ir0 - r0 : ir1 - r0, ic0 - c0 : ic1 - c0] = x[:, :, ir0:ir1, ic0:ic1]
        pred = predict_window(window, predictor, grid, batch_size=3, blend=blend)
        if out is None:
            out = torch.zeros(1, pred.shape[1], height, width)
        rows, cols = blk.core_in_read
        out[:, :, blk.core[0] : blk.core[1], blk.core[2] : blk.core[3]] = pred[:, :, rows, cols]
        covered[blk.core[0] : blk.core[1], blk.core[2] : blk.core[3]] += 1
    assert torch.all(covered == 1), "every pixel is written by exactly one block"
    return out


# (height, width, tile, overlap, block, blend): comment = what the row exercises
CASES = [
    (101, 77, 32, 0.25, 48, "gaussian"),  # nothing a multiple of tile (32), stride (24) or block (48)
    (64, 64, 32, 0.0, 32, "constant"),  # no overlap: halo 0, tiles abut
    (130, 97, 40, 0.5, 60, "gaussian"),  # half-tile overlap: each pixel blended from up to 4 tiles
    (90, 150, 48, 0.75, 40, "constant"),  # heavy overlap, block rounded to the stride (12 -> 36)
    (20, 23, 32, 0.25, 64, "gaussian"),  # scene smaller than one tile
    (200, 50, 64, 0.3, 1000, "gaussian"),  # one block holds the scene
]


@pytest.mark.parametrize(("height", "width", "tile", "overlap", "block", "blend"), CASES)
def test_times_two_is_exact(
    height: int, width: int, tile: int, overlap: float, block: int, blend: str
) -> None:
    """A x2 predictor stitched over blocks and tiles gives exactly 2 * input (blend weights cancel)."""
    x = torch.rand(1, 2, height, width, generator=torch.Generator().manual_seed(height))
    out = _stream(x, lambda t: 2 * t, tile, overlap, block, blend)
    assert torch.allclose(out, 2 * x, atol=1e-5)


def test_identity_keeps_nodata_borders() -> None:
    """A zero (nodata) collar and interior hole come back as zeros, the rest unchanged, across block seams."""
    x = torch.rand(1, 1, 117, 83, generator=torch.Generator().manual_seed(3)) + 1.0
    x[..., :9, :] = 0  # top collar
    x[..., :, 70:] = 0  # right collar
    x[..., 40:60, 30:50] = 0  # hole straddling a block seam (blocks of 36 px)
    out = _stream(x, lambda t: t, 24, 0.25, 36, "gaussian")
    assert torch.allclose(out, x, atol=1e-5)
    assert torch.count_nonzero(out[..., 40:60, 30:50].abs() > 1e-6) == 0


@pytest.mark.parametrize(
    ("tile", "overlap", "block", "blend", "file"),
    [
        (32, 0.25, 48, "gaussian", None),  # stride 24, halos 24 / 8
        (32, 0.5, 40, "constant", None),  # stride 16: block 40 -> 48
        (40, 0.3, 30, "gaussian", None),  # stride 28, halo_before 28 >= tile - stride = 12
        (16, 0.25, 48, "gaussian", FileTiles(16, 16)),  # stride 12: first blocks 12 px longer (aligned reads)
        (16, 0.25, 48, "constant", FileTiles(16, 32, 5, 7)),  # a window of the file: offsets shift the plan
    ],
)
def test_block_seams_equal_one_whole_scene_pass(
    tile: int, overlap: float, block: int, blend: str, file: FileTiles | None
) -> None:
    """A convolutional predictor (context across tile borders) streamed in blocks equals MONAI on the padded scene."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3, padding=1)
    )
    x = torch.randn(1, 2, 97, 130)
    with torch.no_grad():
        out = _stream(x, net, tile, overlap, block, blend, file)
        grid = plan_grid(tile, overlap, block)
        if file is not None:  # the case really moves the blocks
            assert aligned_shift(97, grid, file.rows, file.row_off) > 0
        top, bottom, left, right = padded_reference_pads(97, 130, grid)
        padded = torch.nn.functional.pad(x, (left, right, top, bottom))
        ref = sliding_window_inference(padded, (tile, tile), 3, net, overlap=overlap, mode=blend)
        ref = ref[:, :, top : top + 97, left : left + 130]
    assert (out - ref).abs().max().item() < 1e-5
    # and the blocks really are seams: more than one block in each direction
    assert len(list(iter_blocks(97, 130, grid))) >= 4


def test_plan_grid_arithmetic() -> None:
    """The documented example: tile 256, overlap 0.25 -> stride 192, halos 192/64, block 2048 -> 2112."""
    grid = plan_grid(256, 0.25, 2048)
    assert (grid.stride, grid.halo_before, grid.halo_after, grid.block) == (192, 192, 64, 2112)
    # 2112 core + 192 + 64 halo = 2368 read -> (2368 - 256) / 192 + 1 = 12 tiles per side
    assert count_tiles(2112, 2112, grid) == 12 * 12
    with pytest.raises(ValueError, match="overlap"):
        plan_grid(64, 1.0)


def test_aligned_reads_start_on_file_tiles() -> None:
    """At the defaults over 512 px file tiles, every read after the first starts on a tile boundary, the
    first block is one stride longer, and the pass decodes 676 file tiles at 10 000 px instead of 1 024."""
    grid = plan_grid(256, 0.25, 1536)
    tiles = FileTiles(512, 512)
    assert aligned_shift(10_000, grid, 512) == 192
    blocks = list(iter_blocks(10_000, 10_000, grid, tiles))
    assert blocks[0].core == (0, 1728, 0, 1728)
    later = [b for b in blocks if b.core[0] > 0 and b.core[2] > 0]
    assert later and all(b.read[0] % 512 == 0 and b.read[2] % 512 == 0 for b in later)
    assert all((b.core[0] % grid.stride, b.core[2] % grid.stride) == (0, 0) for b in blocks)
    assert file_tiles_read(10_000, 10_000, grid, tiles) == 26 * 26
    # a window of the file that starts one halo into it is aligned by the plain plan already
    assert aligned_shift(10_000, grid, 512, offset=192) == 0
    # the plain plan (no file tiling known) is unchanged, and reads 32 file tiles per axis
    assert aligned_shift(10_000, grid, 0) == 0
    plain = list(iter_blocks(10_000, 10_000, grid))
    assert plain[1].core == (0, 1536, 1536, 3072)
    # the same forward work (tiles) either way, here
    assert count_tiles(10_000, 10_000, grid, tiles) == count_tiles(10_000, 10_000, grid) == 3600
    # strips (a whole row per block) give no column alignment; a scene no longer than a block none at all
    assert aligned_shift(10_000, grid, 10_000) == 0
    assert aligned_shift(1_500, grid, 512) == 0


def test_tile_count_matches_monai_calls() -> None:
    """count_tiles (progress bar total) equals the number of tiles MONAI actually predicts."""
    seen = [0]

    def predictor(t: torch.Tensor) -> torch.Tensor:
        seen[0] += t.shape[0]
        return t

    _stream(torch.rand(1, 1, 70, 45), predictor, 16, 0.25, 30, "constant")
    assert seen[0] == count_tiles(70, 45, plan_grid(16, 0.25, 30))
    assert np.isfinite(seen[0]) and seen[0] > 0
