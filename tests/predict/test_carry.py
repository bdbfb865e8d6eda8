"""Carried block reads (predict.carry): the same pixels as whole-window reads, each file tile decoded once
per stripe, the held tiles bounded and released, safe across threads, and errors that reach every reader."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from scene_fixtures import make_vrt

from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.errors import GeoTiffError
from resnet_apps.predict import scene_run
from resnet_apps.predict.carry import CarriedReads, ReadInto, TileLayout, carry_for, plan_carry
from resnet_apps.predict.raster import SceneReader
from resnet_apps.predict.scene import predict_scene
from resnet_apps.predict.tiling import FileTiles, file_tiles_read, iter_blocks, plan_grid

META = {  # a 2-band, 3-class segmentation checkpoint's meta, with PRE's preprocessing
    "task": "segmentation",
    "model": {"in_chans": 2, "num_classes": 3},
    "classes": ["a", "b", "c"],
    "preprocessing": {"bands": None, "scale": 0.5, "mean": [100.0] * 2, "std": [50.0] * 2},
    "operating_threshold": 0.5,
}
PRE = Preprocessing(scale=0.5, mean=(100.0, 100.0), std=(50.0, 50.0))


def _scene(path: Path, height: int, width: int, tiles: int | None = 16) -> np.ndarray:
    """A 2-band uint16 scene with a nodata hole across block seams and a pixel of nodata in one band only."""
    rng = np.random.default_rng(3)
    data = rng.integers(1, 400, size=(2, height, width)).astype(np.uint16)
    data[:, 40:75, 20:90] = 0
    data[1, 5, 7] = 0  # nodata in one band: the pixel stays valid (io's rule), in both read paths
    profile = dict(
        driver="GTiff", height=height, width=width, count=2, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(500000, 4600000, 10, 10), nodata=0,
    )  # fmt: skip
    if tiles:
        profile.update(tiled=True, blockxsize=tiles, blockysize=tiles)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


def from_read_raw(read_raw: Callable[[tuple[int, int, int, int]], tuple[np.ndarray, np.ndarray]]) -> ReadInto:
    """A carry's read_into from a function that returns its arrays (a fake around ``SceneReader.read_raw``)."""

    def read_into(window: tuple[int, int, int, int], raw: np.ndarray, valid: np.ndarray) -> None:
        raw[...], valid[...] = read_raw(window)

    return read_into


class _Counting:
    """``SceneReader.read_into`` (what scene prediction carries) that counts the windows it decodes."""

    def __init__(self, reader: SceneReader) -> None:
        self.reader = reader
        self.windows: Counter[tuple[int, int, int, int]] = Counter()
        self.contiguous: list[bool] = []  # whether each decode went into a whole array or a block's view
        self.lock = threading.Lock()

    def __call__(self, window: tuple[int, int, int, int], raw: np.ndarray, valid: np.ndarray) -> None:
        with self.lock:
            self.windows[window] += 1
            self.contiguous.append(raw.flags.c_contiguous)
        self.reader.read_into(window, raw, valid)


@pytest.mark.parametrize("window", [None, (5, 11, 150, 170)])
def test_carried_reads_equal_whole_window_reads(
    tmp_path: Path, window: tuple[int, int, int, int] | None
) -> None:
    """Every block of a striped pass, padding and nodata included, equals ``read_raw`` of its window, on a
    whole scene and on a sub-scene that starts inside the file's tiles; each tile of a stripe is decoded
    once, fewer than plain reads decode, and nothing stays held at the end."""
    path = tmp_path / "s.tif"
    _scene(path, 190, 230)
    reader = SceneReader(path, PRE, window=window)
    grid = plan_grid(32, 0.25, 48)
    blocks = list(iter_blocks(reader.height, reader.width, grid, reader.file_tiles, stripe=2))
    assert len({b.stripe for b in blocks}) >= 2 and len(blocks) >= 12
    layout = TileLayout(reader.file_tiles, reader.height, reader.width)
    counting = _Counting(reader)
    carry = carry_for(counting, layout, [(b.stripe, b.read) for b in blocks], 2, "uint16")
    assert carry is not None
    for k, blk in enumerate(blocks):
        if k % 2:  # into given arrays (the first block's strips are read so), views of a larger one
            r0, r1, c0, c1 = blk.read
            big = np.full((2, r1 - r0 + 3, c1 - c0), 9, np.uint16), np.ones((r1 - r0 + 3, c1 - c0), bool)
            out = (big[0][:, 3:], big[1][3:])
            raw, valid = carry.read(blk.read, blk.stripe, out)
            assert raw is out[0] and valid is out[1] and (big[0][:, :3] == 9).all()
        else:
            raw, valid = carry.read(blk.read, blk.stripe)
        # against read_raw: io.read_geotiff of the whole window, the reference path
        want_raw, want_valid = reader.read_raw(blk.read)
        np.testing.assert_array_equal(raw, want_raw)
        np.testing.assert_array_equal(valid, want_valid)
    # tiles wholly inside their first window went straight into it: no tile-sized array, no copy
    assert 0 < carry.direct < carry.decoded and counting.contiguous.count(False) == carry.direct
    assert max(counting.windows.values()) <= 2  # a tile is decoded again only in the next stripe
    distinct = {(b.stripe, tile) for b in blocks for tile in layout.touching(b.read)}
    assert carry.decoded == carry.planned == len(distinct) == sum(counting.windows.values())
    assert carry.decoded < file_tiles_read(reader.height, reader.width, grid, reader.file_tiles)
    assert carry.held_bytes == 0 and not carry._held  # every tile released after its last use
    assert (
        0
        < carry.peak_held_bytes
        <= plan_carry(layout, [(b.stripe, b.read) for b in blocks]).peak_tiles * (16 * 16 * 5)
    )


def test_stripes_cover_the_scene_once_in_stripe_order() -> None:
    """Stripes of 2 block columns: the same blocks as row-major order, stripe by stripe, row by row."""
    grid = plan_grid(32, 0.25, 48)
    plain = list(iter_blocks(300, 250, grid, FileTiles(16, 16)))
    striped = list(iter_blocks(300, 250, grid, FileTiles(16, 16), stripe=2))
    assert sorted(b.core for b in striped) == sorted(b.core for b in plain)
    cols = sorted({b.core[2] for b in plain})
    for blk in striped:
        assert blk.stripe == cols.index(blk.core[2]) // 2
    assert [b.stripe for b in striped] == sorted(b.stripe for b in striped)
    first = [b.core[:2] for b in striped if b.stripe == 0]
    assert first == sorted(first)  # row by row within a stripe


def test_no_carry_where_tiles_do_not_fit(tmp_path: Path) -> None:
    """A file of strips, or held tiles over the budget, reads blocks whole (None)."""
    grid = plan_grid(32, 0.25, 48)
    for tiles, budget, expect in ((None, 2**30, False), (16, 100, False), (16, 2**30, True)):
        path = tmp_path / f"s{tiles}_{budget}.tif"
        _scene(path, 120, 140, tiles=tiles)
        reader = SceneReader(path, PRE)
        blocks = list(iter_blocks(reader.height, reader.width, grid, reader.file_tiles, stripe=2))
        layout = TileLayout(reader.file_tiles, reader.height, reader.width)
        carry = carry_for(reader.read_into, layout, [(b.stripe, b.read) for b in blocks], 2, "uint16", budget)
        assert (carry is not None) == expect


def test_threads_share_tiles_and_errors(tmp_path: Path) -> None:
    """Two threads reading neighbouring blocks decode their shared tiles once; a failed decode reaches the
    thread that waited for it as the same error, and a later read decodes the tile afresh."""
    path = tmp_path / "s.tif"
    _scene(path, 96, 96)
    reader = SceneReader(path, PRE)
    layout = TileLayout(reader.file_tiles, reader.height, reader.width)
    left, right = (0, 48, 0, 48), (0, 48, 32, 80)  # share the tile column 32..48
    gate = threading.Event()
    counting = _Counting(reader)

    def slow(window: tuple[int, int, int, int], raw: np.ndarray, valid: np.ndarray) -> None:
        gate.wait(5)  # both threads ask before any decode ends
        counting(window, raw, valid)

    carry = CarriedReads(slow, layout, plan_carry(layout, [(0, left), (0, right)]), 2, "uint16")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    threads = [threading.Thread(target=lambda w=w, k=k: out.__setitem__(k, carry.read(w, 0))) for k, w in
               (("left", left), ("right", right))]  # fmt: skip
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    for key, w in (("left", left), ("right", right)):
        np.testing.assert_array_equal(out[key][0], reader.read_raw(w)[0])
    assert set(counting.windows.values()) == {1} and len(counting.windows) == 3 * 3 + 3 * 2
    assert carry.held_bytes == 0

    calls = Counter[str]()
    started = threading.Event()
    release = threading.Event()

    def failing(window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 1:
            started.set()
            release.wait(5)
            raise GeoTiffError("s.tif: tile cannot be read; the file may be truncated")
        return reader.read_raw(window)

    carry = CarriedReads(
        from_read_raw(failing), layout, plan_carry(layout, [(0, (0, 16, 0, 16))] * 2), 2, "uint16"
    )
    errors: list[BaseException] = []

    def first() -> None:
        try:
            carry.read((0, 16, 0, 16), 0)
        except GeoTiffError as exc:
            errors.append(exc)

    t = threading.Thread(target=first)
    t.start()
    assert started.wait(5)
    waiter = threading.Thread(target=first)  # asks for the tile being decoded, then gets its error
    waiter.start()
    release.set()
    t.join(10)
    waiter.join(10)
    assert len(errors) == 2 and errors[0] is errors[1] and "truncated" in str(errors[0])
    raw, _ = carry.read((0, 16, 0, 16), 0)  # decoded afresh
    np.testing.assert_array_equal(raw, reader.read_raw((0, 16, 0, 16))[0])


@pytest.mark.parametrize("pipeline", [True, False])
def test_scene_maps_are_the_same_with_carried_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline: bool
) -> None:
    """A tiled scene predicted with carried reads (stripes) writes the same maps as with plain block reads
    (row-major), threaded or serial, and decodes fewer file tiles."""
    path = tmp_path / "s.tif"
    _scene(path, 170, 210)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3, padding=1)
    )
    kwargs = dict(tile=32, overlap=0.25, block=48, batch_size=4, probabilities="float32", progress=False,
                  pipeline=pipeline)  # fmt: skip
    carried = predict_scene(net.eval(), META, path, tmp_path / "carried", **kwargs)
    monkeypatch.setattr(scene_run, "carry_for", lambda *args, **kwargs: None)
    plain = predict_scene(net.eval(), META, path, tmp_path / "plain", **kwargs)
    assert carried["tiles_decoded"] == carried["tiles_decoded_plan"] and plain["tiles_decoded"] is None
    assert (
        0 < carried["tiles_decoded_direct"] < carried["tiles_decoded"]
        and plain["tiles_decoded_direct"] is None
    )
    reader = SceneReader(path, PRE)
    assert carried["tiles_decoded"] < file_tiles_read(170, 210, plan_grid(32, 0.25, 48), reader.file_tiles)
    for key in ("class_path", "prob_path"):
        with rasterio.open(carried[key]) as a, rasterio.open(plain[key]) as b:
            np.testing.assert_array_equal(a.read(), b.read())


def test_a_vrt_is_read_whole_blocks(tmp_path: Path) -> None:
    """A local VRT's blocks are windows of its sources (each decoding its own tiles): no carry, the blocks in
    row-major order, and the same maps as the GeoTIFF it points to (which is carried)."""
    tif = tmp_path / "s.tif"
    _scene(tif, 120, 150)
    vrt = make_vrt(tif, 120, 150)
    assert SceneReader(tif, PRE).geotiff and not SceneReader(vrt, PRE).geotiff
    torch.manual_seed(0)
    net = torch.nn.Conv2d(2, 3, 3, padding=1).eval()
    kwargs = dict(tile=32, overlap=0.25, block=48, batch_size=4, probabilities="float32", progress=False)
    from_vrt = predict_scene(net, META, vrt, tmp_path / "vrt", **kwargs)
    from_tif = predict_scene(net, META, tif, tmp_path / "tif", **kwargs)
    assert from_vrt["tiles_decoded"] is None and from_tif["tiles_decoded"] is not None
    with rasterio.open(from_vrt["prob_path"]) as a, rasterio.open(from_tif["prob_path"]) as b:
        np.testing.assert_array_equal(a.read(), b.read())
