"""The threaded scene pipeline: same maps as the serial path (and as one whole-scene MONAI pass), errors in
its threads surface as typed errors with no map under the final name, and blocks in flight stay bounded."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from monai.inferers import sliding_window_inference
from rasterio.transform import from_origin

from resnet_apps.errors import ScenePredictionError
from resnet_apps.models.meta import CheckpointMeta
from resnet_apps.predict import forward as forward_mod
from resnet_apps.predict import scene as scene_mod
from resnet_apps.predict import scene_run
from resnet_apps.predict.forward import BlockJob
from resnet_apps.predict.pipeline import BLOCKS_IN_FLIGHT, blocks_in_flight, run_pipeline
from resnet_apps.predict.raster import SceneReader
from resnet_apps.predict.scene import predict_scene
from resnet_apps.predict.stages import RowsReady
from resnet_apps.predict.tiling import FileTiles, aligned_shift, iter_blocks, padded_reference_pads, plan_grid


def _meta(task: str, bands: int = 2, classes: int = 3) -> dict:
    return {
        "task": task,
        "model": {"in_chans": bands, "num_classes": classes},
        "classes": [f"c{k}" for k in range(classes)],
        "preprocessing": {"bands": None, "scale": 0.5, "mean": [100.0] * bands, "std": [50.0] * bands},
        "operating_threshold": 0.5,
    }


def _conv_net(classes: int = 3) -> torch.nn.Module:
    """A convolutional stand-in: context across tile borders, so seams and halos matter."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(4, classes, 3, padding=1)
    ).eval()


class _ChipNet(torch.nn.Module):
    """Classification stand-in: per-chip logits from band means and a spatial contrast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(2, 3))
        d = (x[:, :, : x.shape[2] // 2] - x[:, :, x.shape[2] // 2 :]).mean(dim=(1, 2, 3))
        return torch.stack([m[:, 0], m[:, 1], d], dim=1)


def _scene(
    path: Path, height: int = 121, width: int = 98, nodata: bool = True, tiles: int | None = None
) -> np.ndarray:
    rng = np.random.default_rng(1)
    data = rng.integers(1, 400, size=(2, height, width)).astype(np.uint16)
    if nodata:
        data[:, 30:90, 10:80] = 0  # a hole across block seams, larger than a tile
    profile = dict(
        driver="GTiff", height=height, width=width, count=2, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(500000, 4600000, 10, 10), nodata=0 if nodata else None,
    )  # fmt: skip
    if tiles:
        profile.update(tiled=True, blockxsize=tiles, blockysize=tiles)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_pipelined_equals_serial_bit_for_bit(tmp_path: Path, task: str) -> None:
    """Threads change when blocks are read and written, never what is computed (batches span blocks)."""
    path = tmp_path / "s.tif"
    _scene(path)
    model = _conv_net() if task == "segmentation" else _ChipNet()
    kwargs = dict(tile=16 if task == "classification" else 32, overlap=0.25, block=40, batch_size=5)
    results = {}
    for pipeline, readers in ((True, 1), (False, 1), (True, 3)):
        results[pipeline, readers] = predict_scene(
            model, _meta(task), path, tmp_path / f"out_{pipeline}_{readers}", probabilities="float32",
            progress=False, pipeline=pipeline, readers=readers, **kwargs,
        )  # fmt: skip
    on, off, pooled = results[True, 1], results[False, 1], results[True, 3]
    assert on["complete"] and off["complete"] and on["tiles"] == off["tiles"] > 10
    assert on["tiles_forwarded"] < on["tiles"]  # the nodata hole's tiles / chips are skipped
    assert (on["readers"], pooled["readers"], off["readers"]) == (1, 3, 1)
    for other in (off, pooled):
        np.testing.assert_array_equal(_read(on["prob_path"]), _read(other["prob_path"]))
        np.testing.assert_array_equal(_read(on["class_path"]), _read(other["class_path"]))
    assert set(on["split"]) == {"read", "forward", "blend", "write"}
    assert on["redundant_tile_factor"] > 1.0


@pytest.mark.parametrize("tiles", [None, 16])
def test_pipeline_equals_one_whole_scene_monai_pass(tmp_path: Path, tiles: int | None) -> None:
    """Blending on the device with MONAI's weights reproduces sliding_window_inference on the padded scene,
    also when the blocks are moved to start their reads on the file's 16 px tiles (tiling.aligned_shift)."""
    path = tmp_path / "s.tif"
    height, width, block = (121, 98, 40) if tiles is None else (161, 130, 96)
    data = _scene(path, height, width, nodata=False, tiles=tiles)
    net = _conv_net()
    meta = _meta("segmentation")
    grid = plan_grid(32, 0.25, block)
    file = SceneReader(path, CheckpointMeta.coerce(meta).require_preprocessing()).file_tiles
    if tiles is not None:  # the plan really moved: the first block row is one stride longer
        assert (file.rows, file.cols) == (16, 16)
        assert aligned_shift(height, grid, file.rows, file.row_off) == 24
    result = predict_scene(
        net, meta, path, tmp_path / "out", tile=32, overlap=0.25, block=block, batch_size=3,
        probabilities="float32", progress=False,
    )  # fmt: skip
    x = torch.from_numpy(CheckpointMeta.coerce(meta).require_preprocessing().normalise(data))[None]
    top, bottom, left, right = padded_reference_pads(height, width, grid)
    padded = torch.nn.functional.pad(x, (left, right, top, bottom))
    with torch.no_grad():
        ref = sliding_window_inference(
            padded, (32, 32), 3, lambda t: torch.softmax(net(t), dim=1), overlap=0.25, mode="gaussian"
        )
    ref = ref[0, :, top : top + height, left : left + width].numpy()
    assert np.abs(_read(result["prob_path"]) - ref).max() < 1e-5


@pytest.mark.parametrize(("stage", "readers"), [("reader", 1), ("reader", 3), ("writer", 1)])
def test_thread_error_is_typed_and_leaves_no_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str, readers: int
) -> None:
    path = tmp_path / "s.tif"
    _scene(path)
    calls = [0]
    if stage == "reader":
        original = SceneReader.read_into  # every block read decodes through it

        def failing_read(self: SceneReader, window: tuple[int, int, int, int], *out: np.ndarray) -> None:
            calls[0] += 1
            if calls[0] == 3:
                raise OSError("disk went away")
            original(self, window, *out)

        monkeypatch.setattr(SceneReader, "read_into", failing_read)
    else:
        original_write = scene_mod.write_block

        def failing_write(*args: object) -> None:
            calls[0] += 1
            if calls[0] == 2:
                raise OSError("no space left on device")
            original_write(*args)

        monkeypatch.setattr(scene_mod, "write_block", failing_write)  # as scene.py looks it up
    out = tmp_path / "out"
    with pytest.raises(ScenePredictionError, match=f"{stage} thread") as info:
        predict_scene(
            _conv_net(), _meta("segmentation"), path, out, tile=32, block=40, probabilities="uint8",
            progress=False, readers=readers,
        )  # fmt: skip
    assert isinstance(info.value.__cause__, OSError)
    assert sorted(p.name for p in out.iterdir()) == []  # no final map, no temporary left behind


def test_blocks_in_flight_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow writer lets the reader run ahead, but never more than BLOCKS_IN_FLIGHT blocks are alive."""
    path = tmp_path / "s.tif"
    _scene(path, height=200, width=200)
    original_write = scene_mod.write_block
    gate = __import__("threading").Event()

    def slow_write(*args: object) -> None:
        gate.wait(0.05)  # never set: each write waits, so reads pile up behind it
        original_write(*args)

    monkeypatch.setattr(scene_mod, "write_block", slow_write)
    result = predict_scene(
        _conv_net(), _meta("segmentation"), path, tmp_path / "out", tile=32, block=24, batch_size=4,
        progress=False,
    )  # fmt: skip
    assert result["complete"]
    assert result["blocks_in_flight_bound"] == BLOCKS_IN_FLIGHT == 5  # 1 read ahead, 2 open, 2 to write
    assert 2 <= result["max_blocks_in_flight"] <= BLOCKS_IN_FLIGHT
    serial = predict_scene(
        _conv_net(), _meta("segmentation"), path, tmp_path / "serial", tile=32, block=24, progress=False,
        pipeline=False,
    )  # fmt: skip
    assert serial["max_blocks_in_flight"] <= 2  # read, forwarded, written one after the other (MAX_OPEN)
    pooled = predict_scene(
        _conv_net(), _meta("segmentation"), path, tmp_path / "pooled", tile=32, block=24, batch_size=4,
        progress=False, readers=3,
    )  # fmt: skip
    assert pooled["blocks_in_flight_bound"] == blocks_in_flight(3) == 8  # 3 being read, 1 queued
    assert BLOCKS_IN_FLIGHT < pooled["max_blocks_in_flight"] <= blocks_in_flight(3)  # the readers ran ahead


def test_readers_read_blocks_at_once_and_hand_them_over_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two readers two block reads run at once (one reader never overlaps them), and the blocks still
    reach the forward in the plan's order although every other read is slow, so later ones finish first."""
    path = tmp_path / "s.tif"
    _scene(path, height=200, width=200)
    lock = threading.Lock()
    running, most, calls = [0], [0], [0]
    original = SceneReader.read_into

    def slow_read(self: SceneReader, window: tuple[int, int, int, int], *out: np.ndarray) -> None:
        with lock:
            calls[0] += 1
            running[0] += 1
            most[0] = max(most[0], running[0])
            slow = calls[0] % 2 == 0
        time.sleep(0.06 if slow else 0.01)
        try:
            original(self, window, *out)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(SceneReader, "read_into", slow_read)
    forwarded: list[tuple[int, int, int, int]] = []
    original_forward = forward_mod.forward_stage

    def recording_forward(jobs: Iterator[BlockJob], *args: object, **kwargs: object) -> Iterator:
        def seen() -> Iterator[BlockJob]:
            for job in jobs:
                forwarded.append(job.span)
                yield job

        return original_forward(seen(), *args, **kwargs)

    monkeypatch.setattr(scene_run, "forward_stage", recording_forward)
    pooled = predict_scene(
        _conv_net(), _meta("segmentation"), path, tmp_path / "pooled", tile=32, block=40, progress=False,
        readers=2,
    )  # fmt: skip
    assert most[0] == 2
    order, forwarded[:] = list(forwarded), []
    most[0] = 0
    one = predict_scene(
        _conv_net(), _meta("segmentation"), path, tmp_path / "one", tile=32, block=40, progress=False,
    )  # fmt: skip
    assert most[0] == 1
    assert order == forwarded
    pre = CheckpointMeta.coerce(_meta("segmentation")).require_preprocessing()
    file = SceneReader(path, pre).file_tiles
    blocks = [b.core for b in iter_blocks(200, 200, plan_grid(32, 0.25, 40), file)]
    assert order == blocks and len(blocks) > 4
    np.testing.assert_array_equal(_read(pooled["class_path"]), _read(one["class_path"]))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_device_normalisation_equals_host_normalisation(dtype: str) -> None:
    """Tiles cross to the device in the file's dtype; normalising there gives the host's float32 values."""
    from resnet_apps.predict.forward import DeviceNormaliser

    rng = np.random.default_rng(2)
    raw = (rng.random((3, 2, 16, 16)) * 250).astype(dtype)
    if dtype == "float32":
        raw[0, 1, 3, 4] = np.nan  # float nodata must become 0, as on the host
    valid = rng.random((3, 16, 16)) > 0.2
    pre = CheckpointMeta.coerce(_meta("segmentation")).require_preprocessing()
    on_device = DeviceNormaliser(pre, torch.device("cpu"))(raw, valid).numpy()
    on_host = np.stack([pre.normalise(raw[k], valid[k]) for k in range(3)])
    assert on_device.dtype == np.float32
    np.testing.assert_array_equal(on_device, on_host)


def test_model_error_stops_the_threads_and_leaves_no_map(tmp_path: Path) -> None:
    """An error in the caller's thread (the forward) is raised as it is; reader and writer stop, no map."""
    path = tmp_path / "s.tif"
    _scene(path, height=200, width=200)
    calls = [0]

    class Failing(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _conv_net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            if calls[0] == 4:
                raise RuntimeError("CUDA out of memory (simulated)")
            return self.net(x)

    model = Failing()
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated"):
        predict_scene(
            model, _meta("segmentation"), path, out, tile=32, block=24, batch_size=2, progress=False
        )
    assert calls[0] == 4 and sorted(p.name for p in out.iterdir()) == []
    import threading

    assert not [t.name for t in threading.enumerate() if t.name.startswith("scene-")]


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is a Linux/POSIX facility")
def test_reader_and_writer_threads_run_below_the_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader and writer threads lower their own priority (nice 10); the caller's thread keeps its own."""
    from resnet_apps.predict import pipeline

    seen: dict[str, int] = {}
    lower = pipeline.background_priority

    def spy(nice: int = pipeline.BACKGROUND_NICE) -> bool:
        changed = lower(nice)
        seen[threading.current_thread().name] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return changed

    monkeypatch.setattr(pipeline, "background_priority", spy)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    path = tmp_path / "s.tif"
    _scene(path)
    predict_scene(
        _conv_net(), _meta("segmentation"), path, tmp_path / "out", tile=32, overlap=0.25, block=40,
        batch_size=5, progress=False,
    )  # fmt: skip
    assert (
        seen
        == {"scene-reader": pipeline.BACKGROUND_NICE, "scene-writer": pipeline.BACKGROUND_NICE}
        == {
            "scene-reader": 10,
            "scene-writer": 10,
        }
    )
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    # never raised: a thread already at 19 is left as it is
    results: list[object] = []

    def probe() -> None:
        lower(19)
        results.extend([lower(5), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())])

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    assert results == [False, 19]


@pytest.mark.parametrize("carried", [False, True])
def test_first_block_is_forwarded_while_it_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, carried: bool
) -> None:
    """The reader hands the first block over after its first strip of file tiles: the forward starts while
    the rest is read (a later read waits for the first forward here, so a forward that waited for the
    whole block would never come), and the maps equal the serial path's and one whole-scene MONAI pass.
    Plain block reads read the strips as windows; carried reads (predict.carry) read the strip's tiles."""
    path = tmp_path / "s.tif"
    height, width, block = 161, 130, 96
    data = _scene(path, height, width, nodata=False, tiles=16)
    monkeypatch.setattr(scene_run, "EARLY_STRIP_ROWS", 32)  # strips of 2 file tile rows
    if not carried:
        monkeypatch.setattr(scene_run, "carry_for", lambda *args, **kwargs: None)
    grid = plan_grid(32, 0.25, block)
    r0, r1, c0, c1 = next(iter_blocks(height, width, grid, FileTiles(16, 16))).read
    cuts = [r0, *range(32, r1, 32), r1]  # the first block's read window on the file's rows, 2 tiles a strip
    assert len(cuts) >= 5
    # reads of the first strip: one window, or its file tiles (2 rows of 16 px tiles across the block)
    first_strip = 1 if not carried else 2 * len(range(max(c0, 0) // 16, (min(c1, width) - 1) // 16 + 1))
    first_forward = threading.Event()
    reads: list[tuple[int, int, bool]] = []
    original = SceneReader.read_into

    def gated_read(self: SceneReader, window: tuple[int, int, int, int], *out: np.ndarray) -> None:
        if len(reads) == first_strip:  # the first read after the first strip: once the forward has begun
            assert first_forward.wait(20), "the forward waited for the whole first block"
        reads.append((window[0], window[1], first_forward.is_set()))
        original(self, window, *out)

    net = _conv_net()

    class Signalling(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            first_forward.set()
            return self.net(x)

    model = Signalling()

    monkeypatch.setattr(SceneReader, "read_into", gated_read)
    kwargs = dict(tile=32, overlap=0.25, block=block, batch_size=3, probabilities="float32", progress=False)
    result = predict_scene(model, _meta("segmentation"), path, tmp_path / "out", **kwargs)
    assert (result["tiles_decoded"] is not None) == carried
    if carried:  # the first strip's tiles before any forward, within its rows; every later read after
        assert all(max(a, 0) >= cuts[0] and b <= cuts[1] and not seen for a, b, seen in reads[:first_strip])
        assert all(seen for *_, seen in reads[first_strip:])
    else:  # its first strip was read before any forward, every later read after the first forward
        # (the part of each strip inside the scene: padding rows are not read)
        inside = [max(cut, 0) for cut in cuts]
        assert [(a, b) for a, b, _ in reads[: len(cuts) - 1]] == list(
            zip(inside[:-1], inside[1:], strict=True)
        )
        assert reads[0][2] is False and all(seen for *_, seen in reads[1:])
    serial = predict_scene(
        _conv_net(), _meta("segmentation"), path, tmp_path / "serial", pipeline=False, **kwargs
    )
    np.testing.assert_array_equal(_read(result["prob_path"]), _read(serial["prob_path"]))
    x = torch.from_numpy(CheckpointMeta.coerce(_meta("segmentation")).require_preprocessing().normalise(data))
    top, bottom, left, right = padded_reference_pads(height, width, grid)
    with torch.no_grad():
        ref = sliding_window_inference(
            torch.nn.functional.pad(x[None], (left, right, top, bottom)), (32, 32), 3,
            lambda t: torch.softmax(net(t), dim=1), overlap=0.25, mode="gaussian",
        )  # fmt: skip
    assert (
        np.abs(_read(result["prob_path"]) - ref[0, :, top : top + height, left : left + width].numpy()).max()
        < 1e-5
    )


def test_failure_in_the_rest_of_the_first_block_is_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that fails after the first block was handed over reaches the forward, which may be waiting
    on its rows: a typed error, no hang, no map."""
    path = tmp_path / "s.tif"
    _scene(path, 161, 130, nodata=False, tiles=16)
    monkeypatch.setattr(scene_run, "EARLY_STRIP_ROWS", 32)
    calls = [0]
    original = SceneReader.read_into

    def failing_read(self: SceneReader, window: tuple[int, int, int, int], *out: np.ndarray) -> None:
        calls[0] += 1
        if calls[0] == 3:  # the first block's third strip
            raise OSError("disk went away")
        original(self, window, *out)

    monkeypatch.setattr(SceneReader, "read_into", failing_read)
    out = tmp_path / "out"
    with pytest.raises(ScenePredictionError, match="reader thread") as info:
        predict_scene(_conv_net(), _meta("segmentation"), path, out, tile=32, block=96, progress=False)
    assert isinstance(info.value.__cause__, OSError)
    assert sorted(p.name for p in out.iterdir()) == []


@pytest.mark.parametrize(
    ("tiles", "row_off", "window", "least", "cuts"),
    [
        (512, 0, (-192, 1792), 256, [-192, 512, 1024, 1536, 1792]),  # padding rows join the first strip
        (512, 100, (0, 1200), 256, [0, 412, 924, 1200]),  # a file window: the file's rows, not the scene's
        (16, 0, (0, 100), 32, [0, 32, 64, 96, 100]),  # thin tiles grouped to at least 32 rows
        (1, 0, (10, 40), 16, [10, 16, 32, 40]),  # a plain GeoTIFF's 1-row strips
        (512, 0, (0, 300), 256, [0, 300]),  # one strip
    ],
)
def test_strip_cuts_follow_the_file_tiles(
    tiles: int, row_off: int, window: tuple[int, int], least: int, cuts: list[int]
) -> None:
    reader = SceneReader.__new__(SceneReader)  # the arithmetic only: no file
    reader.file_tiles = FileTiles(tiles, tiles, row_off, 0)
    reader.row_off = row_off
    assert reader.strip_cuts((*window, 0, 10), least) == cuts


@pytest.mark.parametrize("threads", [True, False])
def test_an_early_read_lets_go_of_its_arrays_once_done(threads: bool) -> None:
    """The rest of an early read holds the block's arrays in its closure: the pipeline drops it once it has
    run, so the arrays go with ``job.raw`` when the tiles are batched, not when the block is written (that
    held 100 MB more at the peak of a 2 500 px pass)."""

    class Arrays:  # stands for the block's raw window, which only the closure holds
        pass

    held: list[weakref.ref] = []
    jobs: list[BlockJob] = []

    def read(i: int) -> BlockJob:
        arrays = Arrays()
        held.append(weakref.ref(arrays))
        ready = RowsReady()

        def rest() -> None:
            assert arrays is not None
            ready.advance(1)

        empty = np.zeros((0, 2), dtype=np.int64)
        job: BlockJob = BlockJob((i, i + 1, 0, 1), None, np.ones((1, 1), bool), empty, np.zeros(0, bool))
        job.ready, job.rest = ready, rest
        return job

    def process(stream: Iterator[BlockJob]) -> Iterator[tuple[BlockJob, None]]:
        for job in stream:
            assert job.ready is not None
            job.ready.wait(1)  # its rows are read
            jobs.append(job)
            yield job, None

    written: list[tuple[int, int, int, int]] = []
    run_pipeline(
        range(4), read, process, lambda job, _: written.append(job.span), threads=threads, source="s",
        env=contextlib.nullcontext,
    )  # fmt: skip
    assert written == [(i, i + 1, 0, 1) for i in range(4)]
    assert len(jobs) == 4 and all(job.rest is None for job in jobs)
    assert all(ref() is None for ref in held)  # the jobs live on in ``jobs``; their arrays do not


@pytest.mark.parametrize("pipeline", [True, False])
def test_timeline_records_every_stage_in_its_thread(tmp_path: Path, pipeline: bool) -> None:
    """``timeline=True`` lists each stage interval with its thread; in series no two intervals overlap, and
    fill/drain are the time before the first forward and after the last one."""
    path = tmp_path / "s.tif"
    _scene(path, 161, 130, nodata=False, tiles=16)
    result = predict_scene(
        _conv_net(), _meta("segmentation"), path, tmp_path / "out", tile=32, block=48, batch_size=4,
        progress=False, pipeline=pipeline, timeline=True,
    )  # fmt: skip
    events = result["timeline"]
    threads = {stage: {thread for s, thread, _, _ in events if s == stage} for stage, *_ in events}
    assert set(threads) == {"read", "forward", "blend", "write", "close"}
    assert threads["forward"] == threads["blend"] == threads["close"] == {"MainThread"}
    if pipeline:
        assert threads["read"] == {"scene-reader"} and threads["write"] == {"scene-writer"}
    else:
        assert threads["read"] == threads["write"] == {"MainThread"}
        spans = sorted((t0, t1) for _, _, t0, t1 in events)
        assert all(b0 >= a1 - 1e-9 for (_, a1), (b0, _) in zip(spans, spans[1:], strict=False))
    forwards = [(t0, t1) for s, _, t0, t1 in events if s == "forward"]
    assert len(forwards) == -(-result["tiles_forwarded"] // 4)  # one per batch of 4
    assert result["fill_seconds"] == pytest.approx(forwards[0][0], abs=1e-6)
    assert result["drain_seconds"] == pytest.approx(result["seconds"] - forwards[-1][1], abs=1e-3)
    assert all(0 <= t0 <= t1 <= result["seconds"] for *_, t0, t1 in events)
    close = [(t0, t1) for s, _, t0, t1 in events if s == "close"]
    assert len(close) == 1 and close[0][0] >= forwards[-1][1]  # the COG copies come after the last forward


def test_default_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    """One reader on a CPU device or for a URL; beside an accelerator up to four, one per two cores."""
    from resnet_apps.predict.scene import ACCELERATOR_READERS, default_readers

    cuda = torch.device("cuda")  # a device name only: nothing runs on it
    assert default_readers(torch.device("cpu"), remote=False) == 1
    assert default_readers(cuda, remote=True) == 1  # neighbouring halos would be fetched twice
    for cores, expected in ((16, ACCELERATOR_READERS), (6, 3), (2, 1), (1, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert default_readers(cuda, remote=False) == expected
    assert ACCELERATOR_READERS == 4


def test_readers_below_one_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.tif"
    _scene(path)
    with pytest.raises(ValueError, match="readers=0"):
        predict_scene(_conv_net(), _meta("segmentation"), path, tmp_path / "out", progress=False, readers=0)
    assert not (tmp_path / "out").exists()  # refused before anything is made
