"""Phases 1-3: the HTTP ceiling, HA's mqtt.publish and cloudsync's publish, measured alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import time
from typing import Any

from .context import Context
from .load import BodyFactory, new_session, run_load, warm_up
from .stats import percentile

CLOUDSYNC_PUBLISH = "/api/v1/orchestration/cloudsyncmgr/publish"
_DELIVERY_TIMEOUT = 10.0
NOISY_CORES = 0.2


def _mqtt_body(topic: str, qos: int) -> BodyFactory:
    def body(seq: int) -> bytes:
        return (
            f'{{"topic":"{topic}","payload":"{time.time():.6f} {seq}","qos":{qos}}}'
        ).encode()

    return body


def _cloudsync_body(topic: str, qos: int) -> BodyFactory:
    def body(seq: int) -> bytes:
        return (
            f'{{"appid":"bench","payload":"{time.time():.6f} {seq}",'
            f'"topic":"{topic}","url":"127.0.0.1","qos":{qos}}}'
        ).encode()

    return body


def _no_body(_topic: str) -> BodyFactory:
    return lambda _seq: None


def _event_body(_topic: str) -> BodyFactory:
    def body(seq: int) -> bytes:
        return f'{{"payload":"{time.time():.6f} {seq}"}}'.encode()

    return body


@dataclass(frozen=True)
class Variant:
    """One kind of request the load generator sends."""

    name: str
    label: str
    path: str
    body: Callable[[str], BodyFactory]
    counted: bool  # each request publishes a message the subscriber counts


VARIANTS: tuple[Variant, ...] = (
    Variant("ceiling", "GET /api/ (HTTP ceiling)", "/api/", _no_body, counted=False),
    # A POST with a small JSON body that HA handles without any MQTT: the cost of
    # HTTP + auth + body + JSON reply alone, for reading the publish numbers.
    Variant(
        "post_floor",
        "POST /api/events (no MQTT)",
        "/api/events/cloudsync_bench_noop",
        _event_body,
        counted=False,
    ),
    Variant(
        "mqtt_publish_qos0",
        "HA mqtt.publish QoS 0",
        "/api/services/mqtt/publish",
        lambda topic: _mqtt_body(topic, 0),
        counted=True,
    ),
    Variant(
        "cloudsync_qos0",
        "cloudsync publish QoS 0",
        CLOUDSYNC_PUBLISH,
        lambda topic: _cloudsync_body(topic, 0),
        counted=True,
    ),
    Variant(
        "mqtt_publish_qos1",
        "HA mqtt.publish QoS 1",
        "/api/services/mqtt/publish",
        lambda topic: _mqtt_body(topic, 1),
        counted=True,
    ),
    Variant(
        "cloudsync_qos1",
        "cloudsync publish QoS 1",
        CLOUDSYNC_PUBLISH,
        lambda topic: _cloudsync_body(topic, 1),
        counted=True,
    ),
)


async def measure(
    ctx: Context, variant: Variant, concurrency: int, round_no: int
) -> dict[str, Any]:
    """Run one variant at one concurrency and return its metrics."""
    options = ctx.options
    topic = f"bench/out/r{round_no}/{variant.name}/c{concurrency}"
    headers = {**ctx.api.headers, "Content-Type": "application/json"}
    base = ctx.api.base_url
    async with new_session(concurrency) as session:
        await warm_up(session, f"{base}/api/", ctx.api.headers, concurrency)
        async with ctx.profiler.record(f"r{round_no}-{variant.name}-c{concurrency}"):
            before = ctx.cpu_sample()
            result = await run_load(
                session,
                f"{base}{variant.path}",
                headers,
                variant.body(topic),
                concurrency=concurrency,
                duration=options.duration,
                max_requests=options.max_requests,
            )
            cpu = ctx.cpu_usage(before, ctx.cpu_sample())
    requests = max(result.sent, 1)
    metrics: dict[str, Any] = {
        "requests": result.sent,
        "sent": result.ok,
        "delivered": result.ok,
        "errors": result.errors,
        "error_samples": result.error_samples,
        "rps": result.rate,
        "p50_ms": percentile(result.latencies, 0.50) * 1000,
        "p99_ms": percentile(result.latencies, 0.99) * 1000,
        "hass_cpu_ms_per_req": cpu["hass_s"] * 1000 / requests,
        "hass_cpu_cores": cpu["hass_s"] / result.seconds if result.seconds else 0.0,
        "generator_cpu_ms_per_req": cpu["bench_s"] * 1000 / requests,
        "other_load_cores": cpu["other_cores"],
        "steal_cores": cpu["steal_cores"],
    }
    if variant.counted:
        report = await ctx.counter.report(topic, result.ok, _DELIVERY_TIMEOUT)
        metrics["delivered"] = report["delivered"]
        metrics["duplicates"] = report["duplicates"]
        metrics["delivery_p50_ms"] = report["p50_ms"]
        metrics["delivery_p99_ms"] = report["p99_ms"]
    return metrics


async def run_round(ctx: Context, round_no: int) -> dict[str, dict[str, Any]]:
    """Measure every variant at every concurrency, interleaved.

    The variants' order rotates from round to round, so a slow drift of the machine
    does not always hit the same variant. A measurement during which processes outside
    the benchmark used more than NOISY_CORES is repeated while the run's retry budget
    lasts.
    """
    shift = (round_no - 1) % len(VARIANTS)
    order = VARIANTS[shift:] + VARIANTS[:shift]
    results: dict[str, dict[str, Any]] = {v.name: {} for v in VARIANTS}
    for concurrency in ctx.options.concurrencies:
        for variant in order:
            metrics = await measure(ctx, variant, concurrency, round_no)
            retries = 0
            # Another job on the machine took CPU: measure again, within a budget.
            while metrics["other_load_cores"] > NOISY_CORES and ctx.retries_left > 0:
                ctx.retries_left -= 1
                retries += 1
                metrics = await measure(ctx, variant, concurrency, round_no)
            results[variant.name][str(concurrency)] = metrics | {"retries": retries}
    return results
