"""The stage clock's device timing: stretches timed with events are read once, after one synchronize."""

from __future__ import annotations

import time

from resnet_apps.predict.stages import DeviceClock, StageClock


class _Event:
    """A CUDA event stand-in: ``record`` takes the host's time (and the stream), ``elapsed_time`` is in ms."""

    streams: list[object] = []

    def __init__(self) -> None:
        self.at: float | None = None

    def record(self, stream: object = None) -> None:
        _Event.streams.append(stream)
        self.at = time.perf_counter()

    def elapsed_time(self, other: _Event) -> float:
        assert self.at is not None and other.at is not None, "an event read before it was recorded"
        return (other.at - self.at) * 1e3


def test_device_clock_reads_its_stretches_once_at_the_end() -> None:
    synchronized: list[int] = []
    clock = StageClock(events=[])
    _Event.streams = []
    started = time.perf_counter()
    device = DeviceClock(_Event, lambda: synchronized.append(1), stream="model stream")
    for _ in range(3):
        with device.timed():
            time.sleep(0.02)  # the batch's work on the device
        time.sleep(0.01)  # the host's work between batches is not forward time
    assert synchronized == [] and clock.forward == 0.0  # nothing waits for the device per batch
    elapsed = time.perf_counter() - started
    device.settle(clock)
    assert synchronized == [1]
    # the three 20 ms stretches, not the host's 10 ms gaps (sleeps only overshoot, so bounds not equalities)
    assert 0.06 <= clock.forward <= elapsed - 0.03
    assert [(stage, thread) for stage, thread, _, _ in clock.events or []] == [("forward", "device")] * 3
    assert clock.first_forward is not None and clock.last_forward is not None
    assert (
        started
        <= clock.first_forward
        < clock.first_forward + 0.02
        <= clock.last_forward
        <= time.perf_counter()
    )
    gaps = [b[2] - a[3] for a, b in zip(clock.events or [], (clock.events or [])[1:], strict=False)]
    assert len(gaps) == 2 and all(gap >= 0.01 for gap in gaps)  # the stretches sit where they ran, apart
    assert _Event.streams == ["model stream"] * 7  # the origin and two per batch, on the model's stream
    device.settle(clock)  # nothing left: settling again adds nothing
    assert clock.forward <= elapsed - 0.03 and len(clock.events or []) == 3
