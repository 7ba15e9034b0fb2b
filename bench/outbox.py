"""Phase 5: the outbox. Publishes while the broker is down, then the drain once it is back.

For each drain limit (the default 1,000 messages/s, then the options flow's highest, i.e.
only the window of 100 unacknowledged publishes limits it):

1. The bench stops its mosquitto and waits until cloudsync's connectivity sensor is off.
2. Enqueue: ``outbox_messages`` cloudsync REST publishes at QoS 1 from
   ``outbox_concurrency`` closed-loop workers. Each must be answered 202 with
   ``"queued": true`` and an ``id``; req/s, p50/p99 and HA CPU per request are reported.
3. Drain: mosquitto starts again. The delivery counter (a persistent session, which the
   broker keeps across its restart) counts every message; drain rate = messages / (first
   ``cloudsync_messages_delivered`` event, i.e. the first PUBACK, announced at once, until
   the counter has all of them). Reconnect = broker listening until that first event
   (cloudsync's backoff). The events (one per batch) must count every queued message,
   and every id they carry must be one a 202 returned.
4. Order: a message answered before another was sent must arrive first (the outbox keeps
   acceptance order; concurrent requests have no order among themselves). Duplicates
   (QoS 1 allows them) are counted, not failed.
5. Raw paho: right after, one paho client (``bench.rawpub``) publishes as many QoS 1
   messages through the same broker with a window of 100, for the drain ÷ raw ratio.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
import json
import math
import time
from typing import Any

import aiohttp

from .context import Context
from .ha import open_event_socket, stop_reading
from .load import new_session, warm_up
from .processes import BenchError
from .requests import CLOUDSYNC_PUBLISH
from .stats import percentile

EVENT_DELIVERED = "cloudsync_messages_delivered"
UNLIMITED = 1_000_000  # the options flow's highest drain rate
WINDOW = 100  # cloudsync's window of unacknowledged publishes, also given to raw paho
_RECONNECT_SLACK = 40.0  # cloudsync's backoff after a few seconds without a broker
_MAX_ERROR_SAMPLES = 5


class DeliveredTap:
    """A websocket of its own that records the delivered events of one topic."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, topic: str) -> None:
        """Record on an authenticated, subscribed websocket."""
        self._ws = ws
        self._topic = topic
        self.ids: set[str] = set()
        self.events = 0
        self.first_fired = 0.0
        self.last_fired = 0.0
        self.dropped = False
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="bench delivered tap")

    @classmethod
    async def open(cls, ctx: Context, topic: str) -> DeliveredTap:
        """Connect, authenticate and subscribe to the delivered events."""
        ws = await open_event_socket(ctx, [EVENT_DELIVERED], "delivered-event")
        return cls(ws, topic)

    async def wait(self, count: int, timeout: float) -> None:
        """Wait until ``count`` events arrived, at most ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.events < count and not self.dropped:
                    self._changed.clear()
                    await self._changed.wait()

    async def close(self) -> None:
        """Stop reading and close the websocket."""
        await stop_reading(self._reader, self._ws)

    async def _read(self) -> None:
        async for frame in self._ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(frame.data)
            for message in data if isinstance(data, list) else [data]:
                self._record(message.get("event") or {})
            self._changed.set()
        self.dropped = True
        self._changed.set()

    def _record(self, event: dict[str, Any]) -> None:
        """Count one batch of delivered messages (ids beyond the first 1,000 are left out)."""
        data = event.get("data") or {}
        if not isinstance(data.get("count"), int):
            return
        self.events += data["count"]
        self.ids.update(str(message_id) for message_id in data.get("ids") or ())
        fired = datetime.fromisoformat(event["time_fired"]).timestamp()
        self.first_fired = min(self.first_fired or fired, fired)
        self.last_fired = max(self.last_fired, fired)


class Enqueue:
    """The publishes of one cycle: per message when it was sent and answered."""

    def __init__(self, count: int) -> None:
        """Prepare for ``count`` publishes."""
        self.count = count
        self.sent_at = [math.inf] * count
        self.answered_at = [math.inf] * count
        self.latencies: list[float] = []
        self.ids: set[str] = set()
        self.queued = 0
        self.statuses: dict[int, int] = {}
        self.error_samples: list[str] = []
        self.seconds = 0.0

    def fail(self, detail: str) -> None:
        """Keep the first few problems."""
        if len(self.error_samples) < _MAX_ERROR_SAMPLES:
            self.error_samples.append(detail)

    async def run(self, ctx: Context, topic: str, concurrency: int) -> None:
        """Send the publishes from ``concurrency`` closed-loop workers."""
        url = f"{ctx.api.base_url}{CLOUDSYNC_PUBLISH}"
        headers = {**ctx.api.headers, "Content-Type": "application/json"}
        seqs = iter(range(self.count))

        async def worker(session: aiohttp.ClientSession) -> None:
            for seq in seqs:
                body = (
                    f'{{"appid":"bench","payload":"{time.time():.6f} {seq}",'
                    f'"topic":"{topic}","url":"127.0.0.1","qos":1}}'
                ).encode()
                sent_at = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        reply, status = await resp.read(), resp.status
                except (aiohttp.ClientError, TimeoutError) as err:
                    self.fail(f"{type(err).__name__}: {err}")
                    continue
                answered_at = time.perf_counter()
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self._answered(seq, sent_at, answered_at, status, reply)

        async with new_session(concurrency) as session:
            await warm_up(
                session, f"{ctx.api.base_url}/api/", ctx.api.headers, concurrency
            )
            start = time.perf_counter()
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))
            self.seconds = time.perf_counter() - start

    def _answered(
        self, seq: int, sent_at: float, answered_at: float, status: int, reply: bytes
    ) -> None:
        try:
            data = json.loads(reply)
        except ValueError:
            data = {}
        if status != 202 or data.get("queued") is not True or not data.get("id"):  # noqa: PLR2004
            self.fail(f"{status}: {reply[:200].decode(errors='replace')}")
            return
        self.queued += 1
        self.ids.add(str(data["id"]))
        self.sent_at[seq] = sent_at
        self.answered_at[seq] = answered_at
        self.latencies.append(answered_at - sent_at)

    def order_violations(self, order: list[int]) -> int:
        """Count arrivals that overtook a message answered before they were sent.

        Walking the arrivals backwards, a message is out of order when something that
        arrived after it had been answered (queued) before it was even sent.
        """
        violations = 0
        earliest_answer_after = math.inf
        for seq in reversed(order):
            if not 0 <= seq < self.count:
                continue
            if earliest_answer_after < self.sent_at[seq]:
                violations += 1
            earliest_answer_after = min(earliest_answer_after, self.answered_at[seq])
        return violations


async def _connection_sensor(ctx: Context) -> str:
    """Return the entity id of cloudsync's connectivity sensor."""
    unique_id = f"{ctx.entry_id}_connection"
    for entry in await ctx.api.entity_registry("cloudsync"):
        if entry.get("unique_id") == unique_id:
            return str(entry["entity_id"])
    msg = "cloudsync's connectivity sensor is missing"
    raise BenchError(msg)


async def _wait_state(ctx: Context, entity_id: str, state: str, timeout: float) -> None:
    """Wait until an entity has ``state``."""
    deadline = time.monotonic() + timeout
    current = None
    while time.monotonic() < deadline:
        current = (await ctx.api.get(f"/api/states/{entity_id}")).get("state")
        if current == state:
            return
        await asyncio.sleep(0.05)
    msg = f"{entity_id} stayed {current!r}, expected {state!r}"
    raise BenchError(msg)


async def _raw_paho(ctx: Context, label: str, count: int) -> dict[str, Any]:
    """Publish ``count`` QoS 1 messages with raw paho; return its rate and deliveries."""
    topic = f"bench/out/outbox/{label}-raw"
    summary = await ctx.processes.run_module(
        "rawpub", str(ctx.broker_port), str(count), topic, str(WINDOW)
    )
    report = await ctx.counter.report(topic, count, 30)
    seconds = report["last_at"] - summary["start"]
    return {
        "sent": count,
        "acked": summary["acked"],
        "delivered": report["delivered"],
        "duplicates": report["duplicates"],
        "out_of_order": report["out_of_order"],
        "acked_per_s": summary["rate"],
        "delivered_per_s": count / seconds
        if report["delivered"] and seconds > 0
        else 0.0,
    }


UNLIMITED_FACTOR = 4  # the unlimited cycle queues this many times outbox_messages


async def run_cycle(
    ctx: Context, label: str, drain_limit: int, count: int
) -> dict[str, Any]:
    """Queue ``count`` with the broker down, drain after it is back; return the metrics."""
    concurrency = ctx.options.outbox_concurrency
    topic = f"bench/out/outbox/{label}"
    sensor = await _connection_sensor(ctx)
    await _wait_state(ctx, sensor, "on", 30)
    tap = await DeliveredTap.open(ctx, topic)
    enqueue = Enqueue(count)
    broker_down = False
    try:
        await ctx.settle()
        await ctx.stop_broker()
        broker_down = True
        await _wait_state(ctx, sensor, "off", 15)
        await ctx.settle()
        before = ctx.cpu_sample()
        async with ctx.profiler.record(f"outbox-{label}-enqueue"):
            await enqueue.run(ctx, topic, concurrency)
        enqueue_cpu = ctx.cpu_usage(before, ctx.cpu_sample())
        await ctx.settle()
        await ctx.start_broker()
        broker_down = False
        restarted = time.time()
        before = ctx.cpu_sample()
        timeout = _RECONNECT_SLACK + 3 * count / min(drain_limit, 10_000)
        async with ctx.profiler.record(f"outbox-{label}-drain"):
            report = await ctx.counter.report(
                topic, enqueue.queued, timeout, order=True
            )
            await tap.wait(enqueue.queued, timeout=10)
        drain_cpu = ctx.cpu_usage(before, ctx.cpu_sample())
    finally:
        await tap.close()
        if broker_down:
            await ctx.start_broker()
    raw = await _raw_paho(ctx, label, count)
    metrics = _metrics(enqueue, report, tap, raw, restarted, enqueue_cpu, drain_cpu)
    return {"drain_limit": drain_limit, "concurrency": concurrency, **metrics}


def _metrics(  # noqa: PLR0913
    enqueue: Enqueue,
    report: dict[str, Any],
    tap: DeliveredTap,
    raw: dict[str, Any],
    restarted: float,
    enqueue_cpu: dict[str, float],
    drain_cpu: dict[str, float],
) -> dict[str, Any]:
    count = enqueue.count
    errors = list(enqueue.error_samples)
    violations = enqueue.order_violations(report.pop("order"))
    if violations:
        errors.append(f"{violations} messages arrived before one queued ahead of them")
    if tap.events < enqueue.queued:
        errors.append(
            f"{tap.events} {EVENT_DELIVERED} events for {enqueue.queued} queued"
            + (" (HA closed the event websocket)" if tap.dropped else "")
        )
    if unknown := len(tap.ids - enqueue.ids):
        errors.append(f"{unknown} delivered events carry an id no 202 returned")
    raw_lost = raw["sent"] - min(raw["acked"], raw["delivered"])
    if raw_lost:
        errors.append(
            f"raw paho: {raw['acked']} acknowledged, {raw['delivered']} delivered "
            f"of {raw['sent']}"
        )
    started = tap.first_fired or report["first_at"]
    drain_s = report["last_at"] - started if report["delivered"] else 0.0
    drain_rate = report["delivered"] / drain_s if drain_s > 0 else 0.0
    return {
        "sent": count,
        "queued": enqueue.queued,
        "delivered": report["delivered"],
        "errors": (count - enqueue.queued)
        + bool(violations)
        + (tap.events < enqueue.queued)
        + bool(unknown)
        + bool(raw_lost),
        "error_samples": errors[:_MAX_ERROR_SAMPLES],
        "statuses": {str(k): v for k, v in sorted(enqueue.statuses.items())},
        "enqueue_rps": enqueue.queued / enqueue.seconds if enqueue.seconds else 0.0,
        "enqueue_p50_ms": percentile(enqueue.latencies, 0.50) * 1000,
        "enqueue_p99_ms": percentile(enqueue.latencies, 0.99) * 1000,
        "enqueue_hass_cpu_ms_per_req": enqueue_cpu["hass_s"] * 1000 / max(count, 1),
        "reconnect_s": started - restarted if started else 0.0,
        "subscriber_reconnect_s": report["connected_at"] - restarted,
        "drain_s": drain_s,
        "drain_msgs_per_s": drain_rate,
        "drain_hass_cpu_us_per_msg": drain_cpu["hass_s"] * 1e6 / max(count, 1),
        "delivered_events": tap.events,
        "duplicates": report["duplicates"],
        "out_of_order": violations,
        "raw_paho": raw,
        "drain_per_raw": drain_rate / raw["acked_per_s"] if raw["acked_per_s"] else 0.0,
        "other_load_cores": max(enqueue_cpu["other_cores"], drain_cpu["other_cores"]),
    }


async def run_outbox(ctx: Context) -> dict[str, Any]:
    """Run a cycle at the default drain limit, then one limited only by the window."""
    count = ctx.options.outbox_messages
    results = {"default": await run_cycle(ctx, "default", 1000, count)}
    await ctx.api.options_flow(ctx.entry_id, {"outbox": {"drain_rate": UNLIMITED}})
    # Four times as many: unlimited, 5,000 drained in 0.4 s, too short to compare
    # with raw paho (its start-up, the first fetch, weighed as much as the rate).
    results["unlimited"] = await run_cycle(
        ctx, "unlimited", UNLIMITED, UNLIMITED_FACTOR * count
    )
    return results
