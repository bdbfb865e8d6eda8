"""One scene's run through the pipeline: block reads (the first one handed over early), writes, counters.

:class:`SceneRun` is what the reader, forward and writer stages of :func:`resnet_apps.predict.scene.predict_scene`
share: the scene's reader, the model, the stage clock and the blocks-in-flight count. Its :meth:`SceneRun.read_early`
reads the first block strip by strip so that the forward can start on its top tiles
(:class:`~resnet_apps.predict.stages.RowsReady`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from resnet_apps.models.decision import Decision
from resnet_apps.predict.carry import STRIPE_BLOCKS, CarriedReads, TileLayout, carry_for
from resnet_apps.predict.forward import BlockJob, DeviceNormaliser, Task, forward_stage
from resnet_apps.predict.pipeline import run_pipeline
from resnet_apps.predict.raster import SceneReader
from resnet_apps.predict.remote import FetchCounter, gdal_env
from resnet_apps.predict.scene_maps import BlockMaps, decide, decide_block
from resnet_apps.predict.stages import InFlight, RowsReady, StageClock
from resnet_apps.predict.tiling import Block

_T = TypeVar("_T")
# least strip height of the first block's early reads (SceneRun.read_early): the file's tile rows where
# they are taller; 256 rows of a 2 000 px wide 13-band block decode in about 0.05 s on one core
EARLY_STRIP_ROWS = 256


@dataclass
class SceneRun:
    """What the stages of one scene share: the reader, the model, counters and the stage clock."""

    reader: SceneReader
    decision: Decision
    forward: Callable[[torch.Tensor], torch.Tensor]
    normalise: DeviceNormaliser
    batch_size: int
    clock: StageClock
    in_flight: InFlight
    deadline: float | None
    threads: bool
    fetched: FetchCounter
    decode_threads: bool  # GDAL_NUM_THREADS in every stage's GDAL environment
    class_dtype: str  # the class map's dtype (raster.class_dtype)
    prob_format: str | None  # the stored probabilities' dtype; None: no probability map
    device_decision: bool  # classes (and stored probabilities) made in the forward's thread, not the writer's
    readers: int = 1  # blocks read at once (pipeline.run_pipeline)
    carry: CarriedReads | None = None  # block reads from carried file tiles (ordered_blocks)
    reads: int = 0  # blocks read
    tiles: int = 0  # tiles (chips) of the blocks written
    forwarded: int = 0  # tiles that went through the model (nodata tiles do not)
    _count: threading.Lock = field(default_factory=threading.Lock, repr=False)  # reads by several threads

    def before_deadline(self, items: Iterable[_T]) -> Iterator[_T]:
        for item in items:
            if self.deadline is not None and time.perf_counter() > self.deadline:
                return
            yield item

    def ordered_blocks(self, blocks_in: Callable[[int], list[Block]]) -> list[Block]:
        """The blocks in the order to read them (``blocks_in(stripe)``: ``tiling.iter_blocks``'s blocks).

        A local GeoTIFF read by one thread is read in stripes whose shared file tiles are carried from
        block to block (:mod:`resnet_apps.predict.carry`), where the file is tiled and the held tiles fit
        ``carry.CARRY_BUDGET_BYTES``; otherwise (a remote scene, whose reads are HTTP ranges that GDAL
        merges per window; a VRT, whose blocks are windows of its sources; or several reading threads,
        which would wait on each other's tiles) row by row, each block read whole.
        """
        if not self.reader.geotiff or self.readers > 1:
            return blocks_in(0)
        blocks = blocks_in(STRIPE_BLOCKS)
        layout = TileLayout(self.reader.file_tiles, self.reader.height, self.reader.width)
        reads = [(b.stripe, b.read) for b in blocks]
        self.carry = carry_for(
            self.reader.read_into, layout, reads, len(self.reader.indexes), self.reader.meta.dtype
        )
        return blocks if self.carry is not None else blocks_in(0)

    def _read_window(
        self,
        window: tuple[int, int, int, int],
        stripe: int,
        out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``window``'s raw bands and validity, into ``out``'s arrays where given."""
        if self.carry is not None:
            return self.carry.read(window, stripe, out)
        return self.reader.read_window(window, out)

    def read(self, window: tuple[int, int, int, int], stripe: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Raw window and validity, timed, counted as a block in flight (until :meth:`written`)."""
        self.in_flight.enter()
        with self.clock.timed("read"):
            if self.reads == 0 and not self.decode_threads and not self.reader.remote:
                # the forward waits for this first block: GDAL may decode it on every core (a remote scene
                # stays on one thread, see predict.remote)
                with gdal_env(decode_threads=True):
                    raw, valid = self._read_window(window, stripe)
            else:
                raw, valid = self._read_window(window, stripe)
        with self._count:
            self.reads += 1
        return raw, valid

    def read_early(
        self,
        window: tuple[int, int, int, int],
        settle: Callable[[np.ndarray, int, int], None],
        stripe: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, RowsReady, Callable[[], None]]:
        """The first block, readable after its first strip of file tiles (the forward waits for it).

        Reads the first strip (on every core, for a local scene) and returns the block's arrays, its
        :class:`RowsReady` and the rest of the read, which reads strip after strip and calls
        ``settle(valid, row0, row1)`` for the rows of each strip (in the read window) before they count
        as ready. Counted as one block in flight, and as one read, like :meth:`read`.
        """
        self.in_flight.enter()
        r0, r1, c0, c1 = window
        raw = np.empty((len(self.reader.indexes), r1 - r0, c1 - c0), dtype=self.reader.meta.dtype)
        valid = np.empty((r1 - r0, c1 - c0), dtype=bool)
        ready = RowsReady()
        cuts = self.reader.strip_cuts(window, EARLY_STRIP_ROWS)

        def strip(a: int, b: int) -> None:
            with self.clock.timed("read"):
                # strips end on the file's tile rows: each tile is in one strip, one use of the carry
                self._read_window((a, b, c0, c1), stripe, (raw[:, a - r0 : b - r0], valid[a - r0 : b - r0]))
            settle(valid, a - r0, b - r0)
            ready.advance(b - r0)

        if self.decode_threads or self.reader.remote:
            strip(cuts[0], cuts[1])
        else:
            with gdal_env(decode_threads=True):
                strip(cuts[0], cuts[1])
        self.reads += 1

        def rest() -> None:
            for a, b in zip(cuts[1:-1], cuts[2:], strict=True):
                strip(a, b)

        return raw, valid, ready, rest

    def finished(self, prob: torch.Tensor) -> BlockMaps | np.ndarray:
        """A finished block's probabilities [K, h, w] (on the model's device) as the writer receives them:
        decided here, in the forward's thread (:func:`~resnet_apps.predict.scene_maps.decide_block`: on the
        model's device), or as host probabilities that the writer decides (:meth:`stored`)."""
        if self.device_decision:
            return decide_block(prob, self.decision, self.class_dtype, self.prob_format)
        return prob.cpu().numpy()

    def stored(self, result: BlockMaps | np.ndarray) -> BlockMaps:
        """What :meth:`finished` gave -> the block's maps as stored (decided here, in the writer, if not yet)."""
        if isinstance(result, BlockMaps):
            return result
        return decide(result, self.decision, self.class_dtype, self.prob_format)

    def written(self, job: BlockJob, bar: Any) -> None:
        self.tiles += job.tiles
        self.forwarded += int(job.keep.sum())
        self.in_flight.leave()
        fetched = self.fetched.update()
        if fetched is not None:
            bar.set_postfix_str(f"{fetched / 2**20:.1f} MiB fetched", refresh=False)
        bar.update(job.tiles)

    def run(self, items: Iterable[_T], read: Callable, task: Task, write: Callable) -> None:
        def process(jobs: Iterator[BlockJob]) -> Iterator[tuple[BlockJob, Any]]:
            return forward_stage(jobs, task, self.forward, self.normalise, self.batch_size, self.clock)

        def timed_write(job: BlockJob, result: Any) -> None:
            with self.clock.timed("write"):
                write(job, result)

        run_pipeline(
            self.before_deadline(items),
            read,
            process,
            timed_write,
            threads=self.threads,
            source=str(self.reader.path),
            env=functools.partial(gdal_env, self.decode_threads),
            readers=self.readers,
        )
