"""Phase 6: HA's resident memory per cloudsync subscription, with and without sensors.

Adds N subscriptions (``bench/mem/<label>/<i>``) over REST with bounded concurrency,
waits until each has its sensor (when topic sensors are on) and HA is idle again, and
divides the RSS growth by N. RSS is also sampled at N/2, so the marginal cost of the
second half (free of one-off costs such as the first imports or the first storage write)
is reported too.

The runner restarts Home Assistant before this phase: memory that earlier phases freed
would otherwise be reused by the subscriptions and hide part of their cost. Then it runs
twice. First with the ``topic_sensors`` option off (set through the options flow;
the entry reloads): the subscriptions alone. Then with it back on (the default): the entry
reloads and makes sensors for the first N subscriptions, which is not measured; then N
more subscriptions, each with its sensor, are measured. Off comes first because memory
that Python frees is reused rather than returned: measured after the sensors were
removed, the smaller number would come out too small.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .context import Context
from .ingest import APP_ID, BASE
from .load import new_session
from .processes import BenchError

_SENSORS_TIMEOUT = 120.0


async def _subscribe_range(
    ctx: Context, label: str, first: int, last: int, errors: list[str]
) -> int:
    """Subscribe filters first..last-1 with bounded concurrency; return the successes."""
    concurrency = ctx.options.subscribe_concurrency
    url = f"{ctx.api.base_url}{BASE}/subscribe"
    indexes = iter(range(first, last))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for index in indexes:
            body = {
                "appid": APP_ID,
                "topic": f"bench/mem/{label}/{index}",
                "url": "127.0.0.1",
            }
            async with session.post(url, json=body, headers=ctx.api.headers) as resp:
                text = await resp.text()
                if resp.status == 200:  # noqa: PLR2004
                    ok += 1
                elif len(errors) < 5:  # noqa: PLR2004
                    errors.append(f"{resp.status}: {text[:200]}")

    async with new_session(concurrency) as session:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


async def _count_sensors(ctx: Context, label: str) -> int:
    """Return how many sensors the label's subscriptions have."""
    entries = await ctx.api.entity_registry("cloudsync")
    marker = f"_topic_bench/mem/{label}/"
    return sum(marker in str(e.get("unique_id", "")) for e in entries)


async def _wait_for_sensors(
    ctx: Context, label: str, count: int, timeout: float = _SENSORS_TIMEOUT
) -> int:
    """Wait until ``count`` of the label's sensors are registered; return how many are."""
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        found = await _count_sensors(ctx, label)
        if found >= count:
            break
        await asyncio.sleep(0.5)
    return found


async def _measure(ctx: Context, label: str, *, sensors: bool) -> dict[str, Any]:
    """Add the label's subscriptions and return the memory metrics."""
    count = ctx.options.subscriptions
    half = count // 2
    errors: list[str] = []
    await ctx.settle()
    rss_start = ctx.hass_rss()
    started = time.monotonic()
    async with ctx.profiler.record(f"memory-{label}"):
        ok = await _subscribe_range(ctx, label, 0, half, errors)
        if sensors:
            await _wait_for_sensors(ctx, label, half)
        await ctx.settle()
        rss_half = ctx.hass_rss()
        ok += await _subscribe_range(ctx, label, half, count, errors)
        made = (
            await _wait_for_sensors(ctx, label, count)
            if sensors
            else await _count_sensors(ctx, label)
        )
    seconds = time.monotonic() - started
    await ctx.settle(timeout=30)
    rss_end = ctx.hass_rss()
    if ok == 0:
        msg = f"no subscription succeeded: {errors}"
        raise BenchError(msg)
    if not sensors and made:
        errors.append(f"{made} sensors made with topic_sensors off")
    return {
        "topic_sensors": sensors,
        "sent": count,
        "delivered": min(ok, made) if sensors else ok,
        "errors": count - ok + (0 if sensors or not made else 1),
        "error_samples": errors,
        "subscriptions": count,
        "sensors": made,
        "subscribe_per_s": ok / seconds,
        "rss_start_mb": rss_start / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "bytes_per_subscription": (rss_end - rss_start) / count,
        "marginal_bytes_per_subscription": (rss_end - rss_half) / max(count - half, 1),
    }


async def run_memory(ctx: Context) -> dict[str, dict[str, Any]]:
    """Measure with topic sensors off, then on (the default); return both."""
    await ctx.api.options_flow(ctx.entry_id, {"topic_sensors": False})
    without = await _measure(ctx, "off", sensors=False)
    await ctx.api.options_flow(ctx.entry_id, {"topic_sensors": True})
    # The reload makes a sensor for each of the first N subscriptions.
    await _wait_for_sensors(ctx, "off", without["subscriptions"])
    return {
        "sensors_off": without,
        "sensors_on": await _measure(ctx, "on", sensors=True),
    }
