"""Phase 4: a burst from a separate publisher into cloudsync's registry.

cloudsync subscribes (REST) to a few topics; ``bench.publisher`` bursts N QoS 0 messages
over them. With the ``message_events`` option turned on for this phase (it is off by
default), every message that reaches the registry fires ``cloudsync_message_received``;
the bench counts those events (distinct sequence numbers) on a websocket of its own, and
the ``state_changed`` events of the topics' sensors (the entity state writes, which
cloudsync coalesces). Rate = messages / (time from the first message sent until the
registry answers the last one over REST); the event websocket listens meanwhile, so the
rate includes forwarding every event to it. Afterwards the registry must answer each
topic's last payload.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
from yarl import URL

from .context import Context
from .ha import open_event_socket, open_socket, stop_reading
from .processes import BenchError

BASE = "/api/v1/orchestration/cloudsyncmgr"
APP_ID = "bench"
_EVENT_TYPES = ("cloudsync_message_received", "state_changed")
_STALL = 10.0
_POLL = 0.005
_COALESCE_WAIT = 1.5  # one state interval (1 s by default) plus slack


def topics(ctx: Context) -> list[str]:
    """Return the ingest topics."""
    return [f"bench/in/{index}" for index in range(ctx.options.ingest_topics)]


async def subscribe(ctx: Context, filters: list[str]) -> set[str]:
    """Subscribe cloudsync to ``filters`` (REST); return their sensors' entity ids."""
    for topic in filters:
        await ctx.api.post(
            f"{BASE}/subscribe", {"appid": APP_ID, "topic": topic, "url": "127.0.0.1"}
        )
    wanted = {f"_topic_{topic}" for topic in filters}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ids = {
            entry["entity_id"]
            for entry in await ctx.api.entity_registry("cloudsync")
            if str(entry.get("unique_id", "")).endswith(tuple(wanted))
        }
        if len(ids) == len(wanted):
            return ids
        await asyncio.sleep(0.2)
    msg = f"the sensors of {filters} did not appear"
    raise BenchError(msg)


class EventTap:
    """A websocket of its own that counts a burst's events with little CPU.

    HA drops a websocket client that falls 4096 messages behind, and a burst fires
    thousands of events per second: so frames are scanned with a regular expression
    instead of being parsed, except the rare ones that carry a state change.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, sensors: set[str]) -> None:
        """Count on an authenticated, subscribed websocket."""
        self._ws = ws
        self._sensors = sensors
        self._pattern = re.compile(r"(?!)")
        self.seqs: set[str] = set()
        self.last_at = 0.0
        self.state_writes = 0
        self.dropped = False
        self._reader = asyncio.create_task(self._read(), name="bench event tap")

    @classmethod
    async def open(cls, ctx: Context, sensors: set[str]) -> EventTap:
        """Connect, authenticate and subscribe to the two event types."""
        ws = await open_event_socket(ctx, _EVENT_TYPES, "event")
        return cls(ws, sensors)

    @classmethod
    async def open_triggers(cls, ctx: Context, filters: list[str]) -> EventTap:
        """Count through ``cloudsync`` triggers on ``filters`` instead of bus events.

        ``subscribe_trigger`` sends each trigger's variables to the websocket (no bus
        event, nothing for the recorder); the payload appears in them as in an event.
        """
        triggers = [
            {"platform": "cloudsync", "config_entry_id": ctx.entry_id, "topic": topic}
            for topic in filters
        ]
        ws = await open_socket(
            ctx, [{"type": "subscribe_trigger", "trigger": triggers}], "trigger"
        )
        return cls(ws, set())

    def start(self, tag: str) -> None:
        """Count the messages of the burst tagged ``tag`` from now on."""
        self._pattern = re.compile(rf'"payload":"[0-9.]+ ([0-9]+) {re.escape(tag)}"')
        self.seqs = set()
        self.state_writes = 0

    async def close(self) -> None:
        """Stop reading and close the websocket."""
        await stop_reading(self._reader, self._ws)

    async def _read(self) -> None:
        async for frame in self._ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            text: str = frame.data
            before = len(self.seqs)
            self.seqs.update(self._pattern.findall(text))
            if len(self.seqs) != before:
                self.last_at = time.time()
            if '"state_changed"' in text:
                self._count_states(json.loads(text))
        self.dropped = True

    def _count_states(self, data: Any) -> None:
        for message in data if isinstance(data, list) else [data]:
            event = message.get("event", {})
            if (
                event.get("event_type") == "state_changed"
                and event["data"].get("entity_id") in self._sensors
            ):
                self.state_writes += 1


class Ingest:
    """The ingest phase: subscriptions set up once, then a burst per round."""

    def __init__(self, ctx: Context, sensors: set[str]) -> None:
        """Burst into the subscribed topics whose sensors are ``sensors``."""
        self._ctx = ctx
        self._sensors = sensors

    @property
    def sensors(self) -> set[str]:
        """Return the entity ids of the ingest topics' sensors."""
        return self._sensors

    @classmethod
    async def prepare(cls, ctx: Context) -> Ingest:
        """Turn the per-message event on and subscribe cloudsync to the topics."""
        await ctx.api.options_flow(ctx.entry_id, {"message_events": True})
        return cls(ctx, await subscribe(ctx, topics(ctx)))

    async def run(self, round_no: int) -> dict[str, Any]:
        """Burst into the registry and return the ingest metrics."""
        ctx, tag = self._ctx, f"r{round_no}"
        count = ctx.options.ingest_messages
        tap = await EventTap.open(ctx, self._sensors)
        try:
            await ctx.settle()
            tap.start(tag)
            before = ctx.cpu_sample()
            async with ctx.profiler.record(f"r{round_no}-ingest"):
                poll = asyncio.create_task(self._poll_last(tag, 10 + count / 1000))
                burst = await self._burst(tag)
                seen_at = await poll
                cpu = ctx.cpu_usage(before, ctx.cpu_sample())
                await self._wait_for(tap, count)
            await asyncio.sleep(_COALESCE_WAIT)  # the last coalesced state write
        finally:
            await tap.close()
        errors = []
        if seen_at is None:
            errors.append("the burst's last message never reached the registry")
        if tap.dropped:
            errors.append(
                "HA closed the event websocket: over 4096 events queued for it "
                "(see hass.log); the count stops there"
            )
        if not await self._registry_has_last(tag):
            errors.append("the registry does not hold each topic's last payload")
        seconds = (seen_at or time.time()) - burst["start"]
        return {
            "sent": count,
            "delivered": len(tap.seqs),
            "errors": len(errors),
            "error_samples": errors,
            "msgs_per_s": count / seconds if seen_at else 0.0,
            "seconds": seconds,
            "broker_routed_s": burst["routed"] - burst["start"],
            "state_writes": tap.state_writes,
            "topics": len(topics(ctx)),
            "hass_cpu_us_per_msg": cpu["hass_s"] * 1e6 / count,
            "other_load_cores": cpu["other_cores"],
        }

    async def _poll_last(self, tag: str, timeout: float) -> float | None:
        """Return when the registry first answered the burst's last message."""
        names, last = topics(self._ctx), self._ctx.options.ingest_messages - 1
        return await poll_last(
            self._ctx, names[last % len(names)], [str(last), tag], timeout
        )

    async def _burst(self, tag: str) -> dict[str, float]:
        """Run the publisher process and return its summary."""
        ctx = self._ctx
        return await run_publisher(ctx, ctx.options.ingest_messages, tag, topics(ctx))

    @staticmethod
    async def _wait_for(tap: EventTap, count: int) -> None:
        """Wait until every message arrived, or nothing arrived for a while."""
        await wait_for(tap, count)

    async def _registry_has_last(self, tag: str) -> bool:
        """Return True when the registry holds each topic's last payload of the burst."""
        count, names = self._ctx.options.ingest_messages, topics(self._ctx)
        for index, topic in enumerate(names):
            last_seq = max(s for s in range(count) if s % len(names) == index)
            if (await latest(self._ctx, topic))[1:] != [str(last_seq), tag]:
                return False
        return True


def _data_url(ctx: Context, topic: str) -> URL:
    """Return the GET URL of a topic's latest data (``/`` sent as ``%2F``)."""
    path = f"{BASE}/getsubscribedata/127.0.0.1/{topic.replace('/', '%2F')}/{APP_ID}"
    return URL(f"{ctx.api.base_url}{path}", encoded=True)


async def latest(ctx: Context, topic: str) -> list[str]:
    """Return the registry's latest payload on a topic, split at spaces."""
    api = ctx.api
    async with api.session.get(_data_url(ctx, topic), headers=api.headers) as resp:
        reply = await resp.json(content_type=None)
    return str(reply.get("Message", "")).split(" ")


async def poll_last(
    ctx: Context, topic: str, wanted: list[str], timeout: float
) -> float | None:
    """Return when the registry first answered ``<time> *wanted`` on ``topic``.

    Messages on one connection are handled in order, so a burst's last message in the
    registry means the burst went through. Polled every 5 ms, which costs HA a few per
    cent of a core.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await latest(ctx, topic))[1:] == wanted:
            return time.time()
        await asyncio.sleep(_POLL)
    return None


async def run_publisher(
    ctx: Context, count: int, tag: str, names: list[str]
) -> dict[str, float]:
    """Run ``bench.publisher`` (``names``: topics or ``--distinct N PREFIX``)."""
    return await ctx.processes.run_module(
        "publisher", str(ctx.broker_port), str(count), tag, *names
    )


async def wait_for(tap: EventTap, count: int) -> None:
    """Wait until every message arrived, or nothing arrived for a while."""
    last_count, last_change = -1, time.monotonic()
    while (
        len(tap.seqs) < count
        and not tap.dropped
        and time.monotonic() - last_change < _STALL
    ):
        await asyncio.sleep(0.02)
        if len(tap.seqs) != last_count:
            last_count, last_change = len(tap.seqs), time.monotonic()
