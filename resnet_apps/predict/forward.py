"""The forward stage of scene prediction: blocks in flight, tiles batched across them, outputs accumulated.

:class:`BlockJob` is one block between its read and its write; :class:`DeviceNormaliser` sends a batch of
tiles to the model's device in the file's dtype and normalises it there; :func:`forward_stage` takes tiles
from consecutive blocks (at most :data:`MAX_OPEN` at once) so that every forward pass gets a full batch, and
hands each block's outputs to its :class:`Task` (accumulate, finish). The threads around it, and the memory
bound, are :mod:`resnet_apps.predict.pipeline`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.predict.stages import DeviceClock, RowsReady, StageClock

MAX_OPEN = 2  # blocks with tiles in the forward stage at once (a batch may span a block boundary)
T = TypeVar("T")


@dataclass
class BlockJob(Generic[T]):
    """One block in flight.

    Attributes:
        span: what the writer writes, ``(row0, row1, col0, col1)`` in output pixels.
        raw: read window [C, h, w] in the file's dtype (dropped once all its tiles are batched).
        valid: read window validity [h, w] bool.
        origins: tile top-left corners in the read window [n, 2].
        keep: [n] bool, False for tiles that are not forwarded (no valid pixel / nodata cell).
        info: what the task needs to place the block (e.g. its :class:`tiling.Block`).
        state: the task's accumulator (created by the task's ``start``, dropped once finished).
        accepted: tiles whose outputs have been accumulated.
        ready: for a block handed over while it is still read, how many of its rows are final.
        rest: the rest of that read (run by the reader once the job is handed over; fills ``raw``,
            ``valid`` and ``keep`` and advances ``ready``).
    """

    span: tuple[int, int, int, int]
    raw: np.ndarray | None
    valid: np.ndarray
    origins: np.ndarray
    keep: np.ndarray
    info: Any = None
    state: T | None = None
    accepted: int = 0
    ready: RowsReady | None = None
    rest: Callable[[], None] | None = None

    @property
    def tiles(self) -> int:
        return len(self.origins)


class DeviceNormaliser:
    """Tiles in the file's dtype -> normalised float32 on the model's device (the checkpoint's preprocessing).

    The same float32 operations, in the same order, as :meth:`Preprocessing.normalise` on the host, so a
    tile normalised here equals one normalised there; only uint8/uint16 (or the file's dtype) cross the bus.
    """

    def __init__(self, pre: Preprocessing, device: torch.device) -> None:
        self.device = device
        self.scale = pre.scale
        # float32 like the host's np.asarray(mean, float32): the same rounding, so both paths agree bit for bit
        self.mean = None if pre.mean is None else self._per_band(pre.mean, device)
        self.std = None if pre.std is None else self._per_band(pre.std, device)

    @staticmethod
    def _per_band(values: Sequence[float], device: torch.device) -> torch.Tensor:
        return torch.tensor(np.asarray(values, dtype=np.float32), device=device).view(1, -1, 1, 1)

    def __call__(self, raw: np.ndarray, valid: np.ndarray) -> torch.Tensor:
        """raw [b, C, t, t] (file dtype), valid [b, t, t] bool -> [b, C, t, t] float32 on the device."""
        x = self._to_device(raw)
        # on the CPU a float32 tile would still share ``raw``'s memory: copy, never normalise the caller's array
        x = x.to(torch.float32, copy=self.device.type == "cpu")
        v = self._to_device(valid)
        if self.scale != 1.0:
            x *= torch.tensor(self.scale, dtype=torch.float32, device=self.device)
        if self.mean is not None:
            x -= self.mean
        if self.std is not None:
            x /= self.std
        if raw.dtype.kind == "f":  # integer tiles cannot hold NaN or infinity: a pass saved
            torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
        if valid.all():  # nothing to zero (the usual tile inside a scene): a pass saved
            return x
        return x.masked_fill_(~v[:, None], 0.0)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """An array on the device; to CUDA through pinned memory, so that the copy does not wait for the
        stream's earlier work (a copy from pageable memory may: CUDA's API synchronization behaviour).
        PyTorch's pinned-memory cache reuses a block only after its copy has completed."""
        tensor = torch.from_numpy(array)
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)


@dataclass
class Task(Generic[T]):
    """What the forward stage does with one task's blocks.

    Attributes:
        tile: tile side in pixels.
        start: job -> its accumulator (allocated on the device).
        accept: (job, tile indexes [m], outputs [m, K, ...] or None for skipped tiles) -> None.
        finish: job -> what the writer receives.
    """

    tile: int
    start: Callable[[BlockJob[T]], T]
    accept: Callable[[BlockJob[T], list[int], torch.Tensor | None], None]
    finish: Callable[[BlockJob[T]], Any]


def forward_stage(
    jobs: Iterator[BlockJob[T]],
    task: Task[T],
    model: Callable[[torch.Tensor], torch.Tensor],
    normalise: DeviceNormaliser,
    batch_size: int,
    clock: StageClock,
    on_done: Callable[[BlockJob[T]], None] | None = None,
) -> Iterator[tuple[BlockJob[T], Any]]:
    """Forward the kept tiles of consecutive blocks in full batches; yield (job, finished output) in order.

    A batch takes tiles from up to ``MAX_OPEN`` blocks (the end of one, the start of the next); a block is
    finished, and yielded, as soon as its last tile's output is accumulated. On CUDA nothing waits for the
    device per batch (the forward is timed with events, :class:`~resnet_apps.predict.stages.DeviceClock`), so
    the host stacks and sends the next batch while the device runs this one.
    """
    t = task.tile
    # on CUDA the forward is timed with events, without a synchronize per batch (stages.DeviceClock)
    device = normalise.device
    on_device = None
    if device.type == "cuda":
        on_device = DeviceClock(
            functools.partial(torch.cuda.Event, enable_timing=True),
            functools.partial(torch.cuda.synchronize, device),
            torch.cuda.current_stream(device),
        )
    open_jobs: list[BlockJob[T]] = []
    cursor: BlockJob[T] | None = None
    k = 0
    exhausted = False
    while True:
        batch: list[tuple[BlockJob[T], int, np.ndarray, np.ndarray]] = []
        while len(batch) < batch_size:
            if cursor is None or k == cursor.tiles:
                if cursor is not None:
                    cursor.raw = None  # all its tiles are batched or skipped: the read window can go
                if exhausted or len(open_jobs) >= MAX_OPEN:
                    break
                nxt = next(jobs, None)
                if nxt is None:
                    exhausted = True
                    break
                with clock.timed("blend"):
                    nxt.state = task.start(nxt)
                cursor, k = nxt, 0
                open_jobs.append(nxt)
            skipped = []
            while k < cursor.tiles and len(batch) < batch_size:
                if cursor.ready is not None:  # a block still being read: wait for this tile's rows
                    cursor.ready.wait(int(cursor.origins[k][0]) + t)
                if cursor.keep[k]:  # views: they keep the read window alive until the batch is stacked
                    origin = cursor.origins[k]
                    batch.append((cursor, k, _cut(cursor.raw, origin, t), _cut(cursor.valid, origin, t)))
                else:
                    skipped.append(k)
                k += 1
            if skipped:
                with clock.timed("blend"):
                    task.accept(cursor, skipped, None)
        if batch:
            raw = np.stack([b[2] for b in batch])
            valid = np.stack([b[3] for b in batch])
            with (
                clock.timed("forward") if on_device is None else on_device.timed(),
                torch.no_grad(),
            ):
                out = model(normalise(raw, valid))
            with clock.timed("blend"):
                at = 0
                while at < len(batch):  # consecutive runs of one block
                    job = batch[at][0]
                    end = at
                    while end < len(batch) and batch[end][0] is job:
                        end += 1
                    task.accept(job, [b[1] for b in batch[at:end]], out[at:end])
                    at = end
        finished = 0
        while open_jobs and open_jobs[0].accepted == open_jobs[0].tiles:
            job = open_jobs.pop(0)
            finished += 1
            with clock.timed("blend"):
                result = task.finish(job)
            job.state = None
            if on_done is not None:
                on_done(job)
            yield job, result
        if not batch and not finished:
            if exhausted and not open_jobs:
                if on_device is not None:
                    on_device.settle(clock)
                return
            raise RuntimeError("forward stage stalled: an open block has tiles that were never accepted")


def _cut(array: np.ndarray | None, origin: np.ndarray, tile: int) -> np.ndarray:
    assert array is not None, "a block's read window was dropped before all its tiles were batched"
    r, c = int(origin[0]), int(origin[1])
    return array[..., r : r + tile, c : c + tile]
