"""Issue 15's fast lanes, each beside raw paho and single REST publishes of the same run.

- ``raw``: one plain paho client, QoS 1, window 100 (bench.rawpub), through mosquitto.
- ``rest_qos1``: single POST /publish QoS 1 at c=8 (the request phases' measurement).
- ``rest_own``: the REST publish's own cost, HA CPU per request of POST /publish QoS 1
  minus the empty POST's (/api/events), measured in back-to-back pairs; the target takes
  the median pair (a machine whose speed drifts moves both halves of a pair alike).
- ``batch``: POST /publish/batch, 100 QoS 1 messages a request, c=8; delivered msg/s
  from the first request to the last delivery at the subscriber.
- ``ws_publish``: cloudsync/publish on HA's websocket, one message a command, QoS 1,
  ``WS_WINDOW`` commands outstanding.
- ``ws_push``: cloudsync/subscribe while bench.ratepub publishes ``PUSH_RATE`` msg/s;
  latency from the publisher's clock to the websocket client's, lost = sent - received.

The unlimited outbox drain beside raw paho is the outbox phase's ``unlimited`` cycle.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from .context import Context
from .ha import Websocket
from .load import new_session, run_load, warm_up
from .outbox import _raw_paho
from .requests import VARIANTS, measure
from .stats import median, percentile

BATCH_PATH = "/api/v1/orchestration/cloudsyncmgr/publish/batch"
BATCH_SIZE = 100
CONCURRENCY = 8
WS_WINDOW = 64
WS_BATCH = 10  # messages per command in the ws_publish_batch phase
PUSH_RATE = 5000
PUSH_SECONDS = 5.0
RAW_MESSAGES = 20_000
TARGETS = {
    "batch/raw": 0.8,
    "ws_publish/rest_qos1": 3.0,
    f"ws_publish_{WS_BATCH}/rest_qos1": 3.0,
    "ws_push_p99_ms": 5.0,
    "outbox_unlimited/raw": 0.8,
    "rest_qos1_own_cpu_ms": 0.06,
}


async def run_fastlanes(ctx: Context) -> dict[str, Any]:
    """Run the fast-lane phases; return their metrics."""
    rest = next(v for v in VARIANTS if v.name == "cloudsync_qos1")
    return {
        "raw": await _raw_paho(ctx, "fastlanes", RAW_MESSAGES),
        "rest_qos1": await measure(ctx, rest, CONCURRENCY, 0),
        "rest_own": await _rest_own(ctx),
        "batch": await _batch(ctx),
        "ws_publish": await _ws_publish(ctx, 1),
        "ws_publish_batch": await _ws_publish(ctx, WS_BATCH),
        "ws_push": await _ws_push(ctx),
    }


async def _rest_own(ctx: Context) -> dict[str, Any]:
    """Measure the empty POST and the REST publish back to back, in pairs."""
    variants = {v.name: v for v in VARIANTS}
    pairs = []
    for number in range(2 * ctx.options.rounds + 1):
        order = ("post_floor", "cloudsync_qos1")
        measured = {
            name: await measure(ctx, variants[name], CONCURRENCY, 100 + number)
            for name in (order if number % 2 else order[::-1])
        }
        floor, publish = measured["post_floor"], measured["cloudsync_qos1"]
        pairs.append(
            {
                "floor_cpu_ms": floor["hass_cpu_ms_per_req"],
                "publish_cpu_ms": publish["hass_cpu_ms_per_req"],
                "own_cpu_ms": publish["hass_cpu_ms_per_req"]
                - floor["hass_cpu_ms_per_req"],
                "sent": publish["sent"],
                "delivered": publish["delivered"],
                "errors": floor["errors"] + publish["errors"],
                "other_load_cores": max(
                    floor["other_load_cores"], publish["other_load_cores"]
                ),
            }
        )
    return {
        "pairs": pairs,
        "own_cpu_ms": median([pair["own_cpu_ms"] for pair in pairs]),
        # The same cost as a share of the empty POST's, which tells how fast this
        # machine ran: the figures were 0.06 ms against 0.094 ms (0.64).
        "floor_cpu_ms": median([pair["floor_cpu_ms"] for pair in pairs]),
        "own_per_floor": median(
            [
                pair["own_cpu_ms"] / pair["floor_cpu_ms"]
                for pair in pairs
                if pair["floor_cpu_ms"] > 0
            ]
        ),
        "sent": sum(pair["sent"] for pair in pairs),
        "delivered": sum(pair["delivered"] for pair in pairs),
        "errors": sum(pair["errors"] for pair in pairs),
    }


def _batch_body(topic: str) -> Any:
    def body(seq: int) -> bytes:
        now = f"{time.time():.6f}"
        first = seq * BATCH_SIZE
        messages = ",".join(
            f'{{"topic":"{topic}","payload":"{now} {first + i}","qos":1}}'
            for i in range(BATCH_SIZE)
        )
        return f'{{"appid":"bench","url":"127.0.0.1","messages":[{messages}]}}'.encode()

    return body


async def _batch(ctx: Context) -> dict[str, Any]:
    """POST batches of 100 QoS 1 messages at c=8."""
    topic = "bench/out/fast/batch"
    headers = {**ctx.api.headers, "Content-Type": "application/json"}
    base = ctx.api.base_url
    async with new_session(CONCURRENCY) as session:
        await warm_up(session, f"{base}/api/", ctx.api.headers, CONCURRENCY)
        async with ctx.profiler.record("fast-batch"):
            before, start = ctx.cpu_sample(), time.time()
            result = await run_load(
                session,
                f"{base}{BATCH_PATH}",
                headers,
                _batch_body(topic),
                concurrency=CONCURRENCY,
                duration=ctx.options.duration,
                max_requests=max(ctx.options.max_requests // BATCH_SIZE, 100),
            )
            cpu = ctx.cpu_usage(before, ctx.cpu_sample())
    sent = result.ok * BATCH_SIZE
    report = await ctx.counter.report(topic, sent, 30)
    return _rates(sent, report, start, cpu) | {
        "requests": result.sent,
        "errors": result.errors,
        "error_samples": result.error_samples,
        "request_p99_ms": percentile(result.latencies, 0.99) * 1000,
    }


def _rates(
    sent: int, report: dict[str, Any], start: float, cpu: dict[str, float]
) -> dict[str, Any]:
    seconds = (report["last_at"] or start) - start
    return {
        "sent": sent,
        "delivered": report["delivered"],
        "duplicates": report["duplicates"],
        "delivered_per_s": report["delivered"] / seconds if seconds > 0 else 0.0,
        "delivery_p99_ms": report["p99_ms"],
        "hass_cpu_ms_per_msg": cpu["hass_s"] * 1000 / max(sent, 1),
        "other_load_cores": cpu["other_cores"],
    }


async def _ws_publish(ctx: Context, per_command: int) -> dict[str, Any]:
    """Publish QoS 1 messages over the websocket, WS_WINDOW commands outstanding.

    The commands are written as text and their replies counted in callbacks: a task,
    a future and a JSON encoding per command made this client, not HA, the limit.
    """
    topic = f"bench/out/fast/ws{per_command}"
    errors: list[str] = []
    acked = 0
    window = asyncio.Semaphore(WS_WINDOW)

    def on_reply(result: Any, failure: dict[str, Any] | None) -> None:
        nonlocal acked
        window.release()
        if failure is not None:
            errors.append(str(failure)[:200])
            return
        acked += result["published"]
        if result["published"] != per_command:
            errors.append(str(result["results"])[:200])

    def command(seq: int) -> str:
        now = f"{time.time():.6f}"
        messages = ",".join(
            f'{{"topic":"{topic}","payload":"{now} {seq * per_command + i}","qos":1}}'
            for i in range(per_command)
        )
        return f'"type":"cloudsync/publish","url":"127.0.0.1","messages":[{messages}]}}'

    async with aiohttp.ClientSession() as session:
        ws = await Websocket.connect(session, ctx.api.base_url, ctx.api.token)
        async with ctx.profiler.record(f"fast-ws-publish-{per_command}"):
            before, start = ctx.cpu_sample(), time.time()
            deadline = time.monotonic() + ctx.options.duration
            seq = 0
            limit = max(ctx.options.max_requests // per_command, 100)
            while time.monotonic() < deadline and seq < limit:
                await window.acquire()
                await ws.send_command(command(seq), on_reply)
                seq += 1
            try:
                async with asyncio.timeout(30):
                    for _ in range(WS_WINDOW):  # every reply is in
                        await window.acquire()
            except TimeoutError:
                errors.append("replies missing after 30 s")
            seconds = time.time() - start
            cpu = ctx.cpu_usage(before, ctx.cpu_sample())
        await ws.close()
    report = await ctx.counter.report(topic, acked, 30)
    return _rates(acked, report, start, cpu) | {
        "acked_per_s": acked / seconds if seconds > 0 else 0.0,
        "errors": len(errors),
        "error_samples": errors[:3],
    }


async def _ws_push(ctx: Context) -> dict[str, Any]:
    """Stream a filter to a websocket client while PUSH_RATE msg/s are published."""
    topic = "bench/push/t"
    latencies: list[float] = []
    problems: list[Any] = []

    def on_event(event: dict[str, Any]) -> None:
        now = time.time()
        if "error" in event:
            problems.append(event["error"])
        latencies.extend(
            now - float(message["payload"].split(" ", 1)[0])
            for message in event.get("messages", ())
        )

    async with aiohttp.ClientSession() as session:
        ws = await Websocket.connect(session, ctx.api.base_url, ctx.api.token)
        await ws.subscribe(
            {"type": "cloudsync/subscribe", "url": "127.0.0.1", "topic": topic},
            on_event,
        )
        async with ctx.profiler.record("fast-ws-push"):
            before = ctx.cpu_sample()
            ratepub = await ctx.processes.run_module(
                "ratepub",
                str(ctx.broker_port),
                str(PUSH_RATE),
                str(PUSH_SECONDS),
                topic,
            )
            sent = int(ratepub["sent"])
            deadline = time.monotonic() + 10
            while len(latencies) < sent and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            cpu = ctx.cpu_usage(before, ctx.cpu_sample())
        await ws.close()
    return {
        "rate": PUSH_RATE,
        "sent": sent,
        "delivered": len(latencies),
        "lost": sent - len(latencies),
        "errors": len(problems),
        "error_samples": problems[:3],
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=0.0) * 1000,
        "hass_cpu_ms_per_msg": cpu["hass_s"] * 1000 / max(sent, 1),
        "other_load_cores": cpu["other_cores"],
    }


def fastlanes_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return issue 15's targets, each a ratio within this run."""
    fast, phases = result["fastlanes"], result["phases"]
    raw = fast["raw"]["acked_per_s"] or 1e-9
    rest = fast["rest_qos1"]
    values = {
        "batch/raw": fast["batch"]["delivered_per_s"] / raw,
        "ws_publish/rest_qos1": fast["ws_publish"]["delivered_per_s"]
        / max(rest["rps"], 1e-9),
        f"ws_publish_{WS_BATCH}/rest_qos1": fast["ws_publish_batch"]["delivered_per_s"]
        / max(rest["rps"], 1e-9),
        "ws_push_p99_ms": fast["ws_push"]["p99_ms"],
        "outbox_unlimited/raw": phases["outbox"]["unlimited"]["drain_per_raw"],
        "rest_qos1_own_cpu_ms": fast["rest_own"]["own_cpu_ms"],
    }
    lower_is_better = {"ws_push_p99_ms", "rest_qos1_own_cpu_ms"}
    return [
        {
            "target": name,
            "value": round(value, 3),
            "goal": goal,
            "met": value <= goal if name in lower_is_better else value >= goal,
        }
        for name, goal in TARGETS.items()
        for value in (values[name],)
    ]


def fastlanes_markdown(result: dict[str, Any]) -> str:
    """Return the fast lanes' table and targets."""
    if "fastlanes" not in result:
        return ""
    fast = result["fastlanes"]
    lines = [
        "",
        "## Fast lanes (issue 15)",
        "",
        "| phase | msg/s | HA CPU ms/msg | p99 ms | delivered/sent | other load |",
        "|---|---:|---:|---:|---:|---:|",
        _row("raw paho QoS 1", fast["raw"]["acked_per_s"], None, None, fast["raw"]),
        _row(
            "single REST QoS 1 c=8",
            fast["rest_qos1"]["rps"],
            fast["rest_qos1"]["hass_cpu_ms_per_req"],
            fast["rest_qos1"]["p99_ms"],
            fast["rest_qos1"],
        ),
    ]
    own = fast["rest_own"]
    lines.append(
        "| REST QoS 1 own cost (HA CPU ms/request over the empty POST), pairs: "
        + ", ".join(f"{pair['own_cpu_ms']:.3f}" for pair in own["pairs"])
        + f" | - | {own['own_cpu_ms']:.3f} | - | {own['delivered']}/{own['sent']} | - |"
    )
    lines.append(
        f"| the same ÷ the empty POST's HA CPU ({own['floor_cpu_ms']:.3f} ms): "
        f"{own['own_per_floor']:.2f} (when the target was set: 0.06 ÷ 0.094 = 0.64) "
        "| - | - | - | - | - |"
    )
    for name, label in (
        ("batch", "batch 100 x QoS 1 c=8"),
        ("ws_publish", f"websocket publish QoS 1 ({WS_WINDOW} outstanding)"),
        ("ws_publish_batch", f"websocket publish {WS_BATCH} x QoS 1 a command"),
    ):
        phase = fast[name]
        lines.append(
            _row(
                label,
                phase["delivered_per_s"],
                phase["hass_cpu_ms_per_msg"],
                phase["delivery_p99_ms"],
                phase,
            )
        )
    push = fast["ws_push"]
    lines.append(
        _row(
            f"websocket push at {push['rate']} msg/s",
            push["rate"],
            push["hass_cpu_ms_per_msg"],
            push["p99_ms"],
            push,
        )
    )
    lines += ["", "| target | value | goal | met |", "|---|---:|---:|---|"]
    lines += [
        f"| {t['target']} | {t['value']} | {t['goal']} | {'yes' if t['met'] else 'no'} |"
        for t in result.get("fastlanes_targets", [])
    ]
    return "\n".join(lines) + "\n"


def _row(
    label: str,
    rate: float,
    cpu: float | None,
    p99: float | None,
    phase: dict[str, Any],
) -> str:
    def num(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    other = phase.get("other_load_cores", phase.get("other_cores"))
    return (
        f"| {label} | {rate:.0f} | {num(cpu, 3)} | {num(p99, 1)} | "
        f"{phase.get('delivered', '?')}/{phase.get('sent', '?')} | {num(other, 2)} |"
    )
