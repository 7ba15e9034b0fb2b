"""What every phase needs: the HA API, its process, the broker and the delivery counter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import json
from pathlib import Path
import time
from typing import Any

import psutil

from .ha import HomeAssistantApi
from .processes import (
    BenchError,
    Child,
    Processes,
    start_home_assistant,
    start_mosquitto,
)
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
    outbox_messages: int
    outbox_concurrency: int
    recorder_messages: int  # the burst on the ingest topics with the recorder on
    recorder_event_messages: int  # the same with message_events on (0: skipped)
    wide_topics: int  # distinct topics of the burst against the cache cap
    wide_cache_topics: int  # the cache's max_topics for it
    mirror_entities: int  # sensors the mirror phase changes
    mirror_rate: float  # changes per entity per second
    mirror_seconds: float  # seconds of changes per measurement
    mirror_payloads: tuple[str, ...]  # a mirrored measurement per payload form
    mirror_rounds: int  # rounds of baseline + mirrored measurements


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

    async def report(
        self, topic: str, expected: int, timeout: float, *, order: bool = False
    ) -> dict[str, Any]:
        """Return deliveries on ``topic``, waiting up to ``timeout`` for ``expected``.

        With ``order`` the reply lists the sequence numbers in arrival order.
        """
        process = self.child.process
        assert process.stdin is not None  # noqa: S101
        assert process.stdout is not None  # noqa: S101
        request = {
            "topic": topic,
            "expected": expected,
            "timeout": timeout,
            "order": order,
        }
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
    broker: Child
    hass_child: Child
    integration: Path
    workdir: Path
    retries_left: int = 0  # measurements that may be repeated because of other load
    broker_starts: int = 1
    hass_starts: int = 1
    entry_id: str = ""  # cloudsync's config entry

    async def restart_hass(self, *, recorder: bool = False) -> None:
        """Stop Home Assistant and start it again with its storage.

        ``recorder`` starts it with HA's recorder in the configuration.
        """
        await self.api.close()
        await self.processes.stop(self.hass_child)
        self.hass_starts += 1
        self.hass_child = await start_home_assistant(
            self.processes,
            self.workdir,
            self.integration,
            self.api.port,
            self.hass_starts,
            recorder=recorder,
        )
        self.hass = psutil.Process(self.hass_child.pid)
        self.profiler.pid = self.hass_child.pid
        await self.api.wait_running()
        await self.api.connect_websocket()
        await self.api.wait_entry_loaded("cloudsync")

    async def stop_broker(self) -> None:
        """Stop mosquitto (SIGTERM: it saves its sessions to disk and exits)."""
        await self.processes.stop(self.broker)
        self.helpers = [p for p in self.helpers if p.pid != self.broker.pid]

    async def start_broker(self) -> None:
        """Start mosquitto again on the same port, with the sessions it saved."""
        self.broker_starts += 1
        self.broker = await start_mosquitto(
            self.processes, self.workdir, self.broker_port, self.broker_starts
        )
        self.helpers.append(psutil.Process(self.broker.pid))

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
