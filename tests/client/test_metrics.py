"""ConnectionMetrics: the last minute's ack latencies, capped, without garbage."""

from __future__ import annotations

import gc

import pytest

from custom_components.cloudsync.client import metrics as metrics_module
from custom_components.cloudsync.client.metrics import (
    MAX_SAMPLES,
    WINDOW,
    ConnectionMetrics,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """Drive the metrics' time.monotonic()."""
    clock = _Clock()
    monkeypatch.setattr(metrics_module.time, "monotonic", clock)
    return clock


def test_percentiles_of_the_last_minute(clock: _Clock) -> None:
    """p50/p95 over acks of the last WINDOW seconds; older ones no longer count."""
    metrics = ConnectionMetrics()
    assert metrics.snapshot().latency_p50 is None
    for latency_ms in range(1, 101):  # 1..100 ms, acked now
        metrics.record(clock.now - latency_ms / 1000)
    snapshot = metrics.snapshot()
    assert snapshot.latency_p50 == 50.0
    assert snapshot.latency_p95 == 95.0
    clock.now += WINDOW / 2
    metrics.record(clock.now - 0.5)  # one slow ack later on: 101 samples
    snapshot = metrics.snapshot()
    assert (snapshot.latency_p50, snapshot.latency_p95) == (51.0, 96.0)  # nearest rank
    clock.now += WINDOW / 2 + 1  # the first hundred are out of the window
    assert metrics.snapshot().latency_p50 == 500.0
    clock.now += WINDOW
    assert metrics.snapshot().latency_p50 is None


def test_keeps_the_newest_samples_only(clock: _Clock) -> None:
    """Past MAX_SAMPLES acks the oldest give way, whatever the window."""
    metrics = ConnectionMetrics()
    for _ in range(MAX_SAMPLES):
        metrics.record(clock.now - 1.0)  # 1 s each
    for _ in range(MAX_SAMPLES // 2 + 1):
        metrics.record(clock.now)  # 0 ms each: now over half of the samples
    snapshot = metrics.snapshot()
    assert snapshot.latency_p50 == 0.0
    assert snapshot.latency_p95 == 1000.0


def test_recording_leaves_nothing_for_the_collector(clock: _Clock) -> None:
    """An ack adds no object the garbage collector counts (or it runs every 2,000)."""
    metrics = ConnectionMetrics()
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for number in range(5_000):
            metrics.record(clock.now - number / 1e6)
        assert gc.get_count()[0] - before < 50
    finally:
        gc.enable()
