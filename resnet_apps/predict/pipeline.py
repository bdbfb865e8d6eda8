"""Three-stage scene pipeline: reader thread(s), the forward pass in the caller's thread, a writer thread.

The reader thread reads block windows (rasterio windowed reads: GDAL releases the GIL while it decodes)
while the current blocks are predicted; the writer thread turns finished blocks into class/probability
windows and writes them; the caller's thread batches tiles *across* block boundaries so that every
forward pass gets ``batch_size`` tiles, and blends their outputs into the block's accumulator
(:func:`resnet_apps.predict.forward.forward_stage`).

Memory is bounded by a fixed number of blocks in flight (a block counts from the start of its read to the
end of its write; :class:`~resnet_apps.predict.stages.InFlight` counts them, tests read its peak):

    reader: ``QUEUE_BLOCKS`` being read or queued         = 1
    forward: at most ``MAX_OPEN`` blocks with tiles out   = 2
    writer: ``QUEUE_BLOCKS`` queued + 1 being written     = 2
    -> BLOCKS_IN_FLIGHT = 5

(the reader starts a read only once the forward has taken the block before: reading a block takes well
under a second, its forward many, so one block ahead keeps the forward fed). With ``readers`` = n > 1 (an
accelerator, whose forward is faster than one thread's decoding) n blocks are read at once by a pool of
threads and handed over in order, while one more read block waits for the forward: n + 1 blocks in the read
stage, so ``blocks_in_flight(n)`` = n + 5 (with one permit per read, the queued block held one of them and
two readers read one block at a time: 20.3 s against 21.5 s for one reader, measured).
The first block alone is handed
over after its first strip of file tiles (:class:`RowsReady`; ``scene_run.SceneRun.read_early``): the forward
starts on its top tiles while the reader decodes the rest, instead of waiting for the whole block (at
2 500 px the first forward began after 0.30 s instead of 1.0 s). It is still one block in flight.

In bytes, for a read window of ``R`` px, a core (block) of ``B`` px, ``C`` bands of ``i`` bytes and ``K``
classes: a read-stage block holds ``C*R*R*i + R*R`` (raw bands, valid mask), a forward-stage block that
plus ``(K + 1)*B*B*4`` (float32 accumulator and blend-weight sum over the core only: halo outputs are never
accumulated), a write-stage block ``R*R + B*B`` (valid mask, uint8 classes: the forward's thread decides
each block as it finishes, ``scene_maps.decide_block``) plus its stored probabilities if asked
(``K*B*B*4`` as float32, ``K*B*B`` as uint8). At the defaults (tile 256, overlap 0.25, block 1536 ->
R = 1792; C = 13 uint16; K = 10): 83.5 + 3.2 MB read, +103.8 MB accumulator, 5.6 MB written, so at most
86.7 + 2 x 190.5 + 2 x 5.6 = 479 MB of blocks (668 MB with float32 probabilities, or where the writer
decides: ``predict_scene(device_decision=False)`` hands it 94.4 MB of probabilities a block), against about
330 MB for the serial path (which holds one block as float32 plus MONAI's full-window buffers). The first
block row and column are up to a quarter longer on that side, so that the other reads start on the file's
tiles (``tiling.aligned_shift``: 1 728 x 1 536 px at the defaults over 512 px tiles, read as 1 984 x
1 792): while the first row is in flight the bound is 96.0 + 2 x 212.8 + 2 x 6.2 = 534 MB. ``--block 1024`` roughly
halves it. n > 1 readers add n read-stage blocks (86.7 MB each). One reader of a local tiled scene also
holds the file tiles that the next blocks of its stripe share (:mod:`resnet_apps.predict.carry`): at most
10 tiles of 512 x 512 x 13 uint16 plus validity (71 MB) at the defaults, never more than
``carry.CARRY_BUDGET_BYTES`` (128 MiB; a plan that would hold more reads blocks whole). The bound does not
depend on the scene size. A finished block's probabilities are its accumulator divided in place, so no
second [K, B, B] array is made.

The reader and writer threads run at a lower priority than the forward (:data:`BACKGROUND_NICE`): on a CPU
device the forward's threads hold every core, and work beside them at equal priority stalls the forward
beyond its own CPU time; below it, reading fills the forward's gaps, or runs while the forward waits.

Errors in either thread end the run: the caller's thread raises (a :class:`ResnetAppsError` from the
thread as it is, anything else as :class:`ScenePredictionError` chained to the cause), the threads are
stopped and joined (no hang), and the output writers, closed with the exception, never rename their
temporary files to the final names.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from resnet_apps.errors import ResnetAppsError, ScenePredictionError
from resnet_apps.predict.forward import MAX_OPEN, BlockJob

QUEUE_BLOCKS = 1  # blocks waiting between reader and forward, and between forward and writer
BLOCKS_IN_FLIGHT = QUEUE_BLOCKS + MAX_OPEN + (QUEUE_BLOCKS + 1)


def read_permits(readers: int = 1) -> int:
    """Blocks read, being read or queued and not yet taken by the forward: one reader reads the next block
    once the forward has taken the last; n > 1 read n blocks while one more waits in the queue."""
    return QUEUE_BLOCKS if readers <= 1 else readers + QUEUE_BLOCKS


def blocks_in_flight(readers: int = 1) -> int:
    """The bound on blocks alive at once with ``readers`` reading threads (:data:`BLOCKS_IN_FLIGHT` for one)."""
    return BLOCKS_IN_FLIGHT - QUEUE_BLOCKS + read_permits(readers)


# How far below the forward the reader and writer threads run (Linux nice, per thread). On a CPU device the
# forward's intra-op threads hold every core, and a thread working beside them at equal priority stalls the
# whole forward, not just one core of it (its threads meet at barriers). Measured on 2 cores with a reader
# decoding DEFLATE blocks without pause beside a resnet18-FPN forward (2 threads, batch 8 of 256 px; the
# forward alone: 5.70 tiles/s): nice 0 -> forward 2.85 tiles/s, reader 124 MB/s; nice 10 -> 5.65 and
# 18.7 MB/s; nice 19 -> 6.05 and 3.8 MB/s. A 10 000 px 13-band pass needs about 9 MB/s of decoding, so nice
# 10 keeps the reader ahead of the forward at about 1 % of its speed, where 19 starves it (the forward
# then waits for blocks) and where another job's threads would starve it too.
BACKGROUND_NICE = 10

T = TypeVar("T")
J = TypeVar("J")


@dataclass
class _Failed:
    stage: str
    error: BaseException


_DONE = object()


def background_priority(nice: int = BACKGROUND_NICE) -> bool:
    """Lower the calling thread's scheduling priority to ``nice`` (never raise it); True when lowered.

    Linux keeps a nice value per thread (``setpriority`` on the thread id); elsewhere, or where the call
    is refused, nothing changes and the pipeline runs as before.
    """
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) >= nice:
            return False
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return False
    return True


def _acquire(semaphore: threading.Semaphore, stop: threading.Event) -> bool:
    """Acquire unless ``stop`` is set first; True when acquired."""
    while not stop.is_set():
        if semaphore.acquire(timeout=0.05):
            return True
    return False


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set first (a full queue never blocks a stopped thread); True when put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def run_pipeline(
    items: Iterable[J],
    read: Callable[[J], BlockJob[T]],
    process: Callable[[Iterator[BlockJob[T]]], Iterator[tuple[BlockJob[T], Any]]],
    write: Callable[[BlockJob[T], Any], None],
    *,
    threads: bool,
    source: str,
    env: Callable[[], Any],
    readers: int = 1,
) -> None:
    """Read ``items`` into jobs, process them, write the results; threaded or in series (same results).

    Args:
        items: block descriptions, read in order.
        read: description -> job (runs in the reader thread).
        process: jobs -> (job, result) pairs (runs in the caller's thread).
        write: writes one result (runs in the writer thread).
        threads: False runs the three stages in series in the caller's thread.
        source: the scene, named in errors.
        env: a fresh context manager per thread (rasterio's GDAL environment is per thread).
        readers: blocks read at once (threads; handed over in ``items``' order). The first block is read
            alone, before the others start (its read may hand it over early: ``BlockJob.rest``).

    Raises:
        ResnetAppsError: from a thread, as it was raised there.
        ScenePredictionError: any other error in the reader or writer thread, chained to it.
    """
    if not threads:

        def read_whole(item: J) -> BlockJob[T]:
            job = read(item)
            if job.rest is not None:
                job.rest()
                job.rest = None
            return job

        with env():
            for job, result in process(read_whole(item) for item in items):
                write(job, result)
        return
    stop = threading.Event()
    read_q: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
    ahead = threading.Semaphore(read_permits(readers))  # blocks read or being read, not yet taken
    write_q: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
    writer_error: list[BaseException] = []

    def hand_over(job: BlockJob[T]) -> bool:
        """Queue a read job for the forward (then finish its read if it was handed over early)."""
        if not _put(read_q, job, stop):
            return False
        if job.rest is not None:
            try:
                job.rest()
            except BaseException as exc:  # noqa: BLE001 - the forward may wait on its rows
                assert job.ready is not None
                job.ready.fail(_raise_from("reader", exc, source))
                raise
            # the read's closure holds the block's arrays: dropped, so that they go with ``job.raw`` once
            # its tiles are batched, not when the block is written
            job.rest = None
        return True

    def read_in_env(item: J) -> BlockJob[T]:
        with env():  # a pool thread's own GDAL environment
            return read(item)

    def read_in_pool(rest: Iterator[J], pool: ThreadPoolExecutor) -> bool:
        """Up to ``readers`` reads at once, handed over in order; False when stopped."""
        pending: deque[Future[BlockJob[T]]] = deque()
        exhausted = False
        while not stop.is_set():
            # a permit per block read or queued and not yet taken by the forward
            if not exhausted and len(pending) < readers and ahead.acquire(timeout=0.0 if pending else 0.05):
                item = next(rest, _DONE)
                if item is _DONE:
                    ahead.release()
                    exhausted = True
                else:
                    pending.append(pool.submit(read_in_env, item))  # type: ignore[arg-type]
                continue
            if pending:  # every reader busy, or no permit: wait for the oldest read and hand it over
                if not hand_over(pending.popleft().result()):
                    return False
            elif exhausted:
                return True
        return False

    def reader() -> None:
        background_priority()
        try:
            with env():
                rest = iter(items)
                for item in rest:
                    # one block ahead: the next read starts once the forward has taken the last one
                    if not _acquire(ahead, stop):
                        return
                    if not hand_over(read(item)):
                        return
                    if readers > 1:  # the first block alone (handed over early), then the pool
                        with ThreadPoolExecutor(
                            readers, thread_name_prefix="scene-reader", initializer=background_priority
                        ) as pool:
                            try:
                                if not read_in_pool(rest, pool):
                                    return
                            finally:  # reads not yet started are cancelled; running ones finish
                                pool.shutdown(wait=True, cancel_futures=True)
                        break
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            _put(read_q, _Failed("reader", exc), stop)
            return
        _put(read_q, _DONE, stop)

    def writer() -> None:
        background_priority()
        failed = False
        with env():
            while True:
                item = write_q.get()
                if item is _DONE:
                    return
                if failed:
                    continue  # keep draining so that the caller never blocks on a full queue
                try:
                    write(*item)
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    writer_error.append(exc)
                    failed = True

    def jobs() -> Iterator[BlockJob[T]]:
        while True:
            item = read_q.get()
            ahead.release()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise _raise_from(item.stage, item.error, source)
            yield item

    reader_thread = threading.Thread(target=reader, name="scene-reader", daemon=True)
    writer_thread = threading.Thread(target=writer, name="scene-writer", daemon=True)
    reader_thread.start()
    writer_thread.start()
    try:
        for pair in process(jobs()):
            if writer_error:
                break
            write_q.put(pair)  # the writer drains even after a failure, so this never blocks for ever
    finally:
        stop.set()
        while reader_thread.is_alive():  # let a reader blocked on a full queue see the stop
            try:
                read_q.get_nowait()
            except queue.Empty:
                reader_thread.join(timeout=0.05)
        write_q.put(_DONE)
        writer_thread.join()
    if writer_error:
        raise _raise_from("writer", writer_error[0], source)


def _raise_from(stage: str, error: BaseException, source: str) -> BaseException:
    """The exception the caller's thread raises for a failure in ``stage``."""
    if isinstance(error, ResnetAppsError):
        return error
    wrapped = ScenePredictionError(
        f"{source}: the {stage} thread of scene prediction failed ({type(error).__name__}: {error}); "
        "no map was written under its final name; fix the cause above (disk space, a readable scene) "
        "and rerun"
    )
    wrapped.__cause__ = error
    return wrapped
