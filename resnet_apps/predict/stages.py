"""What the scene pipeline's stages share: their clock, the count of blocks in flight, and a block's ready rows.

:class:`StageClock` sums each stage's seconds (and the reader's and writer's CPU seconds) and can record a
timeline; :class:`InFlight` counts blocks between read and write (the memory bound of
:mod:`resnet_apps.predict.pipeline`); :class:`RowsReady` lets the forward start on a block that is still
being read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

Stage = Literal["read", "forward", "blend", "write"]


@dataclass
class StageClock:
    """Seconds spent per stage (summed over blocks; with threads, read and write overlap the forward).

    With several reading threads ``read`` sums their wall seconds (it may exceed the pass).
    ``read_cpu`` and ``write_cpu`` are the CPU seconds of the reading and writing threads themselves
    (``time.thread_time``; GDAL's own decode threads, where enabled, are not counted): on a CPU device
    that is the time they take from the forward's cores, where ``read`` and ``write`` are wall seconds
    that also count waiting for a core. ``first_forward`` and ``last_forward`` give the pipeline's fill
    and drain; with ``events`` a list, every stage interval is recorded there (a timeline, to see which
    stages overlap: ``bench predict --timeline``).
    """

    read: float = 0.0
    forward: float = 0.0
    blend: float = 0.0
    write: float = 0.0
    read_cpu: float = 0.0
    write_cpu: float = 0.0
    first_forward: float | None = None  # perf_counter when the first forward began
    last_forward: float | None = None  # perf_counter when the last forward ended
    events: list[tuple[str, str, float, float]] | None = None  # (stage, thread, start, end) when recorded
    # several reading threads add to one total (``predict_scene(readers=n)``)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @contextmanager
    def timed(self, stage: Stage) -> Iterator[None]:
        """Time the ``with`` body as ``stage``: wall seconds, the thread's CPU seconds for read and write,
        and its interval (:meth:`mark`)."""
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            ended, cpu = time.perf_counter(), time.thread_time() - cpu
            with self.lock:
                setattr(self, stage, getattr(self, stage) + ended - started)
                if stage in ("read", "write"):
                    setattr(self, f"{stage}_cpu", getattr(self, f"{stage}_cpu") + cpu)
            self.mark(stage, started, ended)

    def mark(self, stage: str, started: float, ended: float, thread: str | None = None) -> None:
        """Record one stage's interval (perf_counter seconds) when ``events`` is a list; ``thread``: who
        ran it (default: the calling thread's name)."""
        if stage == "forward":
            if self.first_forward is None or started < self.first_forward:
                self.first_forward = started
            if self.last_forward is None or ended > self.last_forward:
                self.last_forward = ended
        if self.events is not None:  # list.append is atomic: the three threads share the list
            self.events.append((stage, thread or threading.current_thread().name, started, ended))

    def add_forward(self, intervals: list[tuple[float, float]], thread: str) -> None:
        """Add forward stretches timed elsewhere (:class:`DeviceClock`: on the device) to the total."""
        for started, ended in intervals:
            with self.lock:
                self.forward += ended - started
            self.mark("forward", started, ended, thread)

    def as_dict(self) -> dict[str, float]:
        return {"read": self.read, "forward": self.forward, "blend": self.blend, "write": self.write}

    def cpu_dict(self) -> dict[str, float]:
        return {"read": self.read_cpu, "write": self.write_cpu}


class DeviceClock:
    """The forward's stretches on an accelerator, timed with the device's events, read once at the end.

    A synchronize after every batch (to time it on the host) made the host wait for the device before it
    stacked and sent the next batch, so host and device took turns. Events are recorded on the stream instead,
    and their times are read after the scene's last batch.

    Args:
        event: makes a timing event (``functools.partial(torch.cuda.Event, enable_timing=True)``): with
            ``record()`` and ``elapsed_time(other)`` in milliseconds, like CUDA's.
        synchronize: waits for the device (``torch.cuda.synchronize``).
        stream: where the events are recorded: the model's device's stream (``torch.cuda.current_stream(
            device)``; the current device's otherwise, which is not the model's on ``cuda:1``).
    """

    def __init__(self, event: Callable[[], Any], synchronize: Callable[[], Any], stream: Any = None) -> None:
        self._event = event
        self._synchronize = synchronize
        self._stream = stream
        self._origin = self._recorded()  # on an idle stream at the scene's start: about this perf_counter
        self._origin_time = time.perf_counter()
        self._pairs: list[tuple[Any, Any]] = []

    def _recorded(self) -> Any:
        event = self._event()
        event.record(self._stream)
        return event

    @contextmanager
    def timed(self) -> Iterator[None]:
        """Record events before and after the ``with`` body's work on the device."""
        start = self._recorded()
        yield
        self._pairs.append((start, self._recorded()))

    def settle(self, clock: StageClock, thread: str = "device") -> None:
        """Wait for the device, add every timed stretch to ``clock`` as "forward" (in perf_counter seconds)."""
        self._synchronize()
        at = self._origin_time
        clock.add_forward(
            [
                (at + self._origin.elapsed_time(start) / 1e3, at + self._origin.elapsed_time(end) / 1e3)
                for start, end in self._pairs
            ],
            thread,
        )
        self._pairs.clear()


@dataclass
class InFlight:
    """Blocks alive between the start of their read and the end of their write; ``peak`` is the most seen."""

    alive: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self.lock:
            self.alive += 1
            self.peak = max(self.peak, self.alive)

    def leave(self) -> None:
        with self.lock:
            self.alive -= 1


class RowsReady:
    """How many rows of a block's read window are final, for a block handed over while it is still read.

    The forward waits for a scene's first block whole otherwise (0.4-0.8 s on 2 cores, 1-2 % of a 2 500 px
    pass): the reader hands that block over after its first strip of file tiles and reads the rest while
    the forward works on the first tiles. Rows below ``rows``, and ``keep`` of every tile that ends above
    it, are final; a failed read is raised in the thread that waits.
    """

    def __init__(self) -> None:
        self.rows = 0
        self._cond = threading.Condition()
        self._error: BaseException | None = None

    def advance(self, rows: int) -> None:
        with self._cond:
            self.rows = rows
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def wait(self, rows: int) -> None:
        """Return once ``rows`` rows are final; raise the reader's error if the read failed first."""
        with self._cond:
            while self.rows < rows and self._error is None:
                self._cond.wait()
            if self.rows < rows:
                assert self._error is not None
                raise self._error
