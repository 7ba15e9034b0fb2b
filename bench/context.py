"""What every phase needs: the HA API, its process, the broker and the delivery counter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import json
import time
from typing import Any

import psutil

from .ha import HomeAssistantApi
from .processes import BenchError, Child, Processes
from .profile import Profiler


@dataclass(frozen=True)
class Options:
    """How big a run is."""

    rounds: int
    duration: float
    concurrencies: tuple[int, ...]
    max_requests: int
    ingest_messages: int
    ingest_topics: int
    subscriptions: int
    subscribe_concurrency: int
    retries: int


class DeliveryCounter:
    """The asyncio side of the subscriber process (bench.subscriber)."""

    def __init__(self, child: Child) -> None:
        """Talk to the started subscriber over its pipes."""
        self.child = child
        self._lock = asyncio.Lock()

    async def ready(self, timeout: float = 15) -> None:
        """Wait for the subscriber's ``ready`` line."""
        assert self.child.process.stdout is not None  # noqa: S101
        async with asyncio.timeout(timeout):
            line = await self.child.process.stdout.readline()
        if line.strip() != b"ready":
            msg = f"subscriber did not start: {line!r} {self.child.log_tail()}"
            raise BenchError(msg)

    async def report(self, topic: str, expected: int, timeout: float) -> dict[str, Any]:
        """Return deliveries on ``topic``, waiting up to ``timeout`` for ``expected``."""
        process = self.child.process
        assert process.stdin is not None  # noqa: S101
        assert process.stdout is not None  # noqa: S101
        request = {"topic": topic, "expected": expected, "timeout": timeout}
        async with self._lock:
            process.stdin.write(json.dumps(request).encode() + b"\n")
            await process.stdin.drain()
            line = await process.stdout.readline()
        if not line:
            msg = f"subscriber exited: {self.child.log_tail()}"
            raise BenchError(msg)
        result: dict[str, Any] = json.loads(line)
        return result


def _cpu_seconds(process: psutil.Process) -> float:
    """Return a process's CPU seconds so far (user + system, all threads)."""
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far: by the machine, HA, the bench and its helpers."""

    wall: float
    machine: float
    steal: float
    hass: float
    bench: float
    helpers: float


@dataclass
class Context:
    """The running system under test."""

    api: HomeAssistantApi
    hass: psutil.Process
    broker_port: int
    counter: DeliveryCounter
    options: Options
    profiler: Profiler
    processes: Processes
    helpers: list[psutil.Process]  # mosquitto and the subscriber
    retries_left: int = 0  # measurements that may be repeated because of other load

    def hass_cpu(self) -> float:
        """Return HA's CPU seconds so far (user + system, all threads)."""
        return _cpu_seconds(self.hass)

    def cpu_sample(self) -> CpuSample:
        """Return the CPU seconds used so far, machine-wide and per process."""
        machine = psutil.cpu_times()
        steal = float(getattr(machine, "steal", 0.0))
        return CpuSample(
            wall=time.monotonic(),
            machine=float(
                machine.user
                + machine.nice
                + machine.system
                + getattr(machine, "irq", 0.0)
                + getattr(machine, "softirq", 0.0)
            ),
            steal=steal,
            hass=self.hass_cpu(),
            bench=time.process_time(),
            helpers=sum(_cpu_seconds(p) for p in self.helpers),
        )

    @staticmethod
    def cpu_usage(before: CpuSample, after: CpuSample) -> dict[str, float]:
        """Return CPU seconds of HA and the bench, and other load in cores.

        ``other_cores`` is what processes outside this benchmark used: another job on
        the machine makes the numbers of that measurement unreliable.
        """
        wall = max(after.wall - before.wall, 1e-9)
        ours = sum(
            getattr(after, name) - getattr(before, name)
            for name in ("hass", "bench", "helpers")
        )
        return {
            "hass_s": after.hass - before.hass,
            "bench_s": after.bench - before.bench,
            "other_cores": max(0.0, (after.machine - before.machine - ours) / wall),
            "steal_cores": (after.steal - before.steal) / wall,
        }

    def hass_rss(self) -> int:
        """Return HA's resident set size in bytes."""
        return int(self.hass.memory_info().rss)

    async def settle(
        self, idle: float = 0.05, window: float = 0.5, timeout: float = 20
    ) -> None:
        """Wait until HA uses less than ``idle`` of a core over ``window`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.hass_cpu()
            await asyncio.sleep(window)
            if self.hass_cpu() - before < idle * window:
                return
