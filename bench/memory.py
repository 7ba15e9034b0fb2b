"""Phase 5: HA's resident memory per cloudsync subscription.

Adds N subscriptions (``bench/mem/<i>``) over REST with bounded concurrency, waits until
each has its sensor and HA is idle again, and divides the RSS growth by N. RSS is also
sampled at N/2, so the marginal cost of the second half (free of one-off costs such as
the first imports or the first storage write) is reported too.
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
    ctx: Context, first: int, last: int, errors: list[str]
) -> int:
    """Subscribe filters first..last-1 with bounded concurrency; return the successes."""
    concurrency = ctx.options.subscribe_concurrency
    url = f"{ctx.api.base_url}{BASE}/subscribe"
    indexes = iter(range(first, last))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for index in indexes:
            body = {"appid": APP_ID, "topic": f"bench/mem/{index}", "url": "127.0.0.1"}
            async with session.post(url, json=body, headers=ctx.api.headers) as resp:
                text = await resp.text()
                if resp.status == 200:  # noqa: PLR2004
                    ok += 1
                elif len(errors) < 5:  # noqa: PLR2004
                    errors.append(f"{resp.status}: {text[:200]}")

    async with new_session(concurrency) as session:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


async def _wait_for_sensors(ctx: Context, count: int) -> int:
    """Wait until ``count`` memory-phase sensors are registered; return how many are."""
    deadline = time.monotonic() + _SENSORS_TIMEOUT
    found = 0
    while time.monotonic() < deadline:
        entries = await ctx.api.entity_registry("cloudsync")
        found = sum("_topic_bench/mem/" in str(e.get("unique_id", "")) for e in entries)
        if found >= count:
            break
        await asyncio.sleep(0.5)
    return found


async def run_memory(ctx: Context) -> dict[str, Any]:
    """Add the subscriptions and return the memory metrics."""
    count = ctx.options.subscriptions
    half = count // 2
    errors: list[str] = []
    await ctx.settle()
    rss_start = ctx.hass_rss()
    started = time.monotonic()
    async with ctx.profiler.record("memory"):
        ok = await _subscribe_range(ctx, 0, half, errors)
        await _wait_for_sensors(ctx, half)
        await ctx.settle()
        rss_half = ctx.hass_rss()
        ok += await _subscribe_range(ctx, half, count, errors)
        sensors = await _wait_for_sensors(ctx, count)
    seconds = time.monotonic() - started
    await ctx.settle(timeout=30)
    rss_end = ctx.hass_rss()
    if ok == 0:
        msg = f"no subscription succeeded: {errors}"
        raise BenchError(msg)
    return {
        "sent": count,
        "delivered": min(ok, sensors),
        "errors": count - ok,
        "error_samples": errors,
        "subscriptions": count,
        "sensors": sensors,
        "subscribe_per_s": ok / seconds,
        "rss_start_mb": rss_start / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "bytes_per_subscription": (rss_end - rss_start) / count,
        "marginal_bytes_per_subscription": (rss_end - rss_half) / max(count - half, 1),
    }
