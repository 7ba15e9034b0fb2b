"""Phase 6: ingest bursts with Home Assistant's recorder on, as in a real installation.

The runner restarts Home Assistant with ``recorder:`` (its default SQLite database in the
config dir, default commit interval: 5 s in HA 2025.4) and ``diagnostics:`` in the
configuration. Three bursts, each measured alike:

1. ``recorder_messages`` on the ingest topics (their sensors on, ``message_events`` at its
   default, off). Every message is counted through ``cloudsync`` triggers on the same
   filters (``subscribe_trigger`` on a websocket: no bus event, nothing recorded).
2. ``wide_topics`` messages on as many distinct topics, under one ``bench/wide/#``
   subscription (one sensor), with the latest-data cache capped at ``wide_cache_topics``
   topics (options flow). Counted through the cache's counts in the entry's
   diagnostics: every new topic is either kept or evicts one.
3. For contrast, ``recorder_event_messages`` on the ingest topics with ``message_events``
   on, counted by their events (as the ingest phase does).

Rows: the bench fires a marker event over REST and reads the database file (read-only)
once the marker's row is there: the recorder writes in order, so everything queued
before the marker has been committed. Rows added between the marker before the burst and
the one after it, marker rows excluded, divided by the messages. DB bytes: the database
file plus its WAL. Meanwhile ``GET /api/`` runs at 100 requests/s (open loop): its
latency 1 s before the burst (idle), while the burst is processed (first message sent ->
the registry holds the last one) and up to the recorder's commit. HA's RSS is read after
HA settled, before and after each burst, and sampled during it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
import sqlite3
import time
from typing import Any

from .context import Context
from .ingest import (
    EventTap,
    latest,
    poll_last,
    run_publisher,
    subscribe,
    topics,
    wait_for,
)
from .load import LatencyProbe
from .processes import BenchError
from .stats import percentile

MARKER = "bench_recorder_marker"
WIDE_FILTER = "bench/wide/#"
_MARKER_TIMEOUT = 120.0  # the commit interval, plus any backlog of the recorder
_IDLE = 1.0  # seconds of idle latency before the burst
_COALESCE_WAIT = 1.5  # the sensors' last coalesced state write
_STALL = 10.0
_MIB = 2**20
_TABLES = ("events", "event_data", "states", "state_attributes")


class RecorderDb:
    """The recorder's SQLite file, read with a read-only connection of the bench."""

    def __init__(self, path: Path) -> None:
        """Read ``path`` (and its WAL)."""
        self.path = path

    def size(self) -> int:
        """Return the bytes of the database file and its WAL."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def counts(self) -> dict[str, Any]:
        """Return the rows per table, the marker rows and each entity's state rows."""
        with contextlib.closing(
            sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        ) as db:
            rows: dict[str, Any] = {
                table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
                for table in _TABLES
            }
            rows["markers"] = db.execute(
                "SELECT COUNT(*) FROM events e JOIN event_types t"
                " ON e.event_type_id = t.event_type_id WHERE t.event_type = ?",
                (MARKER,),
            ).fetchone()[0]
            # Every entity's, so that the next burst (other sensors) can start here.
            rows["entity_states"] = dict(
                db.execute(
                    "SELECT m.entity_id, COUNT(*) FROM states s JOIN states_meta m"
                    " ON s.metadata_id = m.metadata_id GROUP BY m.entity_id"
                ).fetchall()
            )
        rows["bytes"] = self.size()
        return rows

    async def committed(self, ctx: Context) -> dict[str, Any]:
        """Fire a marker event; return the counts once the recorder committed it."""
        loop = asyncio.get_running_loop()
        before = await self._markers()
        await ctx.api.post(f"/api/events/{MARKER}", {})
        deadline = time.monotonic() + _MARKER_TIMEOUT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            with contextlib.suppress(sqlite3.Error):
                counts = await loop.run_in_executor(None, self.counts)
                if counts["markers"] > before:
                    return counts
        msg = f"the recorder did not commit a marker event in {_MARKER_TIMEOUT:g} s"
        raise BenchError(msg)

    async def _markers(self) -> int:
        """Return the marker rows so far (-1 while the database is being created)."""
        loop = asyncio.get_running_loop()
        try:
            counts = await loop.run_in_executor(None, self.counts)
        except sqlite3.Error:
            return -1
        return int(counts["markers"])


class _RssSampler:
    """HA's RSS every 50 ms in the background; ``peak`` is the largest seen."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.peak = ctx.hass_rss()
        self._task = asyncio.create_task(self._run(), name="bench rss sampler")

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self._ctx.hass_rss())
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def _cache_counts(ctx: Context) -> int:
    """Return topics kept + topics evicted by the entry's latest-data cache."""
    reply = await ctx.api.get(f"/api/diagnostics/config_entry/{ctx.entry_id}")
    registry = reply["data"]["registry"]
    return int(registry["topics_with_data"]) + int(registry["evicted_topics"])


async def _wait_cache(ctx: Context, start: int, count: int) -> int:
    """Wait until the cache saw ``count`` new topics, or none came for a while."""
    seen, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < _STALL:
        now = await _cache_counts(ctx) - start
        if now >= count:
            return now
        if now != seen:
            seen, last_change = now, time.monotonic()
        await asyncio.sleep(0.2)
    return seen


def _ms(values: list[float], fraction: float) -> float:
    return percentile(values, fraction) * 1000


class Burst:
    """One burst with the recorder on: what it sends and how it counts."""

    def __init__(  # noqa: PLR0913
        self,
        ctx: Context,
        db: RecorderDb,
        *,
        label: str,
        count: int,
        names: list[str],
        last_topic: str,
        sensors: set[str],
    ) -> None:
        """Describe a burst of ``count`` messages over ``names`` (publisher args)."""
        self.ctx = ctx
        self.db = db
        self.label = label
        self.count = count
        self.names = names
        self.last_topic = last_topic
        self.sensors = sensors

    async def run(
        self,
        tag: str,
        counter: EventTap | str | None,
        before: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Burst; return the metrics and the database counts after it.

        ``counter``: a tap counting every message, ``"cache"`` (distinct topics, from
        the cache's counts) or None (not counted: only each topic's last payload is
        checked). ``before``: the counts the previous burst ended with, when nothing
        happened since.
        """
        ctx, count = self.ctx, self.count
        tap = counter if isinstance(counter, EventTap) else None
        await ctx.settle()
        if before is None:
            before = await self.db.committed(ctx)
        start_cache = await _cache_counts(ctx) if counter == "cache" else 0
        rss_before = ctx.hass_rss()
        probe = LatencyProbe(f"{ctx.api.base_url}/api/", ctx.api.headers)
        await probe.start()
        await asyncio.sleep(_IDLE)
        rss = _RssSampler(ctx)
        if tap:
            tap.start(tag)
        cpu_before = ctx.cpu_sample()
        async with ctx.profiler.record(f"recorder-{tag}"):
            poll = asyncio.create_task(
                poll_last(
                    ctx, self.last_topic, [str(count - 1), tag], 10 + count / 1000
                )
            )
            burst = await run_publisher(ctx, count, tag, self.names)
            seen_at = await poll
            cpu = ctx.cpu_usage(cpu_before, ctx.cpu_sample())
            delivered = None
            if tap:
                await wait_for(tap, count)
                delivered = len(tap.seqs)
            elif counter == "cache":
                delivered = await _wait_cache(ctx, start_cache, count)
            await asyncio.sleep(_COALESCE_WAIT)
            after = await self.db.committed(ctx)
        await probe.stop()
        await rss.stop()
        await ctx.settle(timeout=30)
        rss_after = ctx.hass_rss()
        errors = []
        if seen_at is None:
            errors.append("the burst's last message never reached the registry")
        if tap and tap.dropped:
            errors.append("HA closed the counting websocket (see hass.log)")
        if counter is None and not await self._has_last_payloads(tag):
            errors.append("the registry does not hold each topic's last payload")
        errors += probe.errors[:3]
        end = seen_at or time.time()
        during = probe.latencies(burst["start"], end)
        to_commit = probe.latencies(burst["start"])
        idle = probe.latencies(0, burst["start"])
        rows = {t: after[t] - before[t] for t in _TABLES}
        rows["events"] -= after["markers"] - before["markers"]
        sensor_rows = [
            after["entity_states"].get(s, 0) - before["entity_states"].get(s, 0)
            for s in self.sensors
        ]
        result = {
            "label": self.label,
            "sent": count,
            "delivered": delivered,
            "counted": counter is not None,
            "errors": len(errors) + len(probe.errors),
            "error_samples": errors,
            "topics": len(self.names) if self.names[0] != "--distinct" else count,
            "sensors": len(self.sensors),
            "msgs_per_s": count / (end - burst["start"]) if seen_at else 0.0,
            "seconds": end - burst["start"],
            "rows": rows,
            "event_rows_per_msg": rows["events"] / count,
            "state_rows_per_msg": rows["states"] / count,
            "state_rows_per_sensor_max": max(sensor_rows, default=0),
            "db_bytes": after["bytes"] - before["bytes"],
            "db_bytes_per_msg": (after["bytes"] - before["bytes"]) / count,
            "get_idle_p99_ms": _ms(idle, 0.99),
            "get_p50_ms": _ms(during, 0.5),
            "get_p99_ms": _ms(during, 0.99),
            "get_n": len(during),
            "get_max_to_commit_ms": _ms(to_commit, 1.0),
            "get_n_to_commit": len(to_commit),
            # The five slowest GETs: seconds after the first message sent, ms taken.
            "get_slowest": [
                [round(sent - burst["start"], 3), round(took * 1000, 1)]
                for sent, took in sorted(
                    probe.samples, key=lambda sample: sample[1], reverse=True
                )[:5]
            ],
            "rss_start_mb": rss_before / _MIB,
            "rss_end_mb": rss_after / _MIB,
            "rss_growth_mb": (rss_after - rss_before) / _MIB,
            "rss_peak_growth_mb": (rss.peak - rss_before) / _MIB,
            "hass_cpu_us_per_msg": cpu["hass_s"] * 1e6 / count,
            "other_load_cores": cpu["other_cores"],
        }
        return result, after

    async def _has_last_payloads(self, tag: str) -> bool:
        """Return True when each topic's last message of the burst is in the registry."""
        for index, topic in enumerate(self.names):
            last = max(s for s in range(self.count) if s % len(self.names) == index)
            if (await latest(self.ctx, topic))[1:] != [str(last), tag]:
                return False
        return True


async def prepare_recorder(ctx: Context) -> set[str]:
    """Set the options and the wide subscription, before HA restarts with the recorder.

    So that no reload happens between the bursts. Returns the wide filter's sensor.
    """
    await ctx.api.options_flow(
        ctx.entry_id,
        {
            "message_events": False,
            "cache": {"max_topics": ctx.options.wide_cache_topics},
        },
    )
    return await subscribe(ctx, [WIDE_FILTER])


async def run_recorder(
    ctx: Context, ingest_sensors: set[str], wide_sensors: set[str]
) -> dict[str, Any]:
    """Run the bursts against the recorder-on Home Assistant; return their metrics."""
    options = ctx.options
    db = RecorderDb(ctx.workdir / "config" / "home-assistant_v2.db")
    names = topics(ctx)
    few = Burst(
        ctx,
        db,
        label="message_events off (default)",
        count=options.recorder_messages,
        names=names,
        last_topic=names[(options.recorder_messages - 1) % len(names)],
        sensors=ingest_sensors,
    )
    results: dict[str, Any] = {}
    results["default"], after = await few.run("rec", None)
    few.label = "message_events off, counted by cloudsync triggers"
    tap = await EventTap.open_triggers(ctx, names)
    try:
        results["counted"], after = await few.run("reccount", tap, after)
    finally:
        await tap.close()

    count = options.wide_topics
    wide = Burst(
        ctx,
        db,
        label=f"cache cap {options.wide_cache_topics}",
        count=count,
        names=["--distinct", str(count), WIDE_FILTER[:-2]],
        last_topic=f"{WIDE_FILTER[:-2]}/{count - 1}",
        sensors=wide_sensors,
    )
    results["wide"], after = await wide.run("wide", "cache", after)

    if options.recorder_event_messages:
        await ctx.api.options_flow(ctx.entry_id, {"message_events": True})
        events = Burst(
            ctx,
            db,
            label="message_events on",
            count=options.recorder_event_messages,
            names=names,
            last_topic=names[(options.recorder_event_messages - 1) % len(names)],
            sensors=ingest_sensors,
        )
        tap = await EventTap.open(ctx, ingest_sensors)
        try:
            results["events"], _ = await events.run("recev", tap)
        finally:
            await tap.close()
    return results
