"""Turn the rounds into medians, same-round ratios, target checks and a markdown table."""

from __future__ import annotations

from typing import Any

from .requests import NOISY_CORES as _NOISY_CORES, VARIANTS
from .stats import median

_SUMMED = ("requests", "sent", "delivered", "errors", "duplicates", "retries")
_RATIOS = (
    ("post_floor", "ceiling"),
    ("cloudsync_qos0", "ceiling"),
    ("cloudsync_qos1", "ceiling"),
    ("mqtt_publish_qos0", "ceiling"),
    ("mqtt_publish_qos1", "ceiling"),
    ("cloudsync_qos0", "mqtt_publish_qos0"),
    ("cloudsync_qos1", "mqtt_publish_qos1"),
)
_CEILING_SHARE = 0.75
_P99_MS = 2.0
_INGEST_RATE = 10_000
_BYTES_PER_SUBSCRIPTION = 1024
_STATE_ROWS_PER_SENSOR = 2
_GET_P99_MS = 50.0
_RSS_GROWTH_MB = 20.0


def combine(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the median of each number over the rounds, the sum of the counts."""
    combined: dict[str, Any] = {}
    for key, value in samples[0].items():
        values = [sample[key] for sample in samples if key in sample]
        if key in _SUMMED:
            combined[key] = sum(values)
        elif key == "error_samples":
            combined[key] = [text for sample in values for text in sample][:5]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            combined[key] = median(values)
    combined["rounds"] = samples
    return combined


def aggregate(
    rounds: list[dict[str, Any]],
    outbox: dict[str, dict[str, Any]],
    recorder: dict[str, dict[str, Any]],
    memory: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Return the phases (medians), the ratios and the targets."""
    concurrencies = list(rounds[0]["requests"]["ceiling"])
    phases: dict[str, Any] = {
        v.name: {
            c: combine([r["requests"][v.name][c] for r in rounds])
            for c in concurrencies
        }
        for v in VARIANTS
    }
    phases["ingest"] = combine([r["ingest"] for r in rounds])
    phases["outbox"] = outbox
    phases["recorder"] = recorder
    phases["memory"] = memory["sensors_on"]
    phases["memory_no_sensors"] = memory["sensors_off"]
    ratios = {
        c: {
            f"{top}/{bottom}": median(
                [
                    r["requests"][top][c]["rps"] / r["requests"][bottom][c]["rps"]
                    for r in rounds
                    if r["requests"][bottom][c]["rps"]
                ]
            )
            for top, bottom in _RATIOS
        }
        for c in concurrencies
    }
    result: dict[str, Any] = {"phases": phases, "ratios": ratios}
    result["targets"] = targets(result)
    return result


def _lossless(phase: dict[str, Any]) -> bool:
    if phase.get("counted") is False:  # a burst measured without counting each message
        return bool(phase["errors"] == 0)
    return bool(phase["delivered"] == phase["sent"] and phase["errors"] == 0)


def all_phases(phases: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return every measured phase as (name, metrics), one per concurrency."""
    found = [
        (f"{v.name} c={c}", metrics)
        for v in VARIANTS
        for c, metrics in phases[v.name].items()
    ]
    return [
        *found,
        ("ingest", phases["ingest"]),
        *((f"outbox {name}", cycle) for name, cycle in phases["outbox"].items()),
        *((f"recorder {name}", burst) for name, burst in phases["recorder"].items()),
        ("memory", phases["memory"]),
        ("memory_no_sensors", phases["memory_no_sensors"]),
    ]


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Check the issue's targets against the medians."""
    phases, ratios = result["phases"], result["ratios"]
    checks: list[dict[str, Any]] = [
        {
            "target": f"cloudsync QoS 1 >= {_CEILING_SHARE} x GET ceiling, c={c}",
            "value": round(ratios[c]["cloudsync_qos1/ceiling"], 3),
            "met": ratios[c]["cloudsync_qos1/ceiling"] >= _CEILING_SHARE,
        }
        for c in ("8", "32")
        if c in ratios
    ]
    if "1" in phases["cloudsync_qos0"]:
        p99 = phases["cloudsync_qos0"]["1"]["delivery_p99_ms"]
        checks.append(
            {
                "target": f"cloudsync QoS 0 send->delivery p99 <= {_P99_MS} ms, c=1",
                "value": round(p99, 3),
                "met": p99 <= _P99_MS,
            }
        )
    ingest = phases["ingest"]
    coalesced = ingest["state_writes"] <= ingest["topics"] * (ingest["seconds"] + 3)
    checks.append(
        {
            "target": f"ingest >= {_INGEST_RATE} msg/s, state writes coalesced",
            "value": f"{ingest['msgs_per_s']:.0f} msg/s, {ingest['state_writes']:g} writes",
            "met": ingest["msgs_per_s"] >= _INGEST_RATE and coalesced,
        }
    )
    for name, how in (("memory", "topic sensors on"), ("memory_no_sensors", "off")):
        memory = phases[name]
        checks.append(
            {
                "target": f"<= {_BYTES_PER_SUBSCRIPTION} B RSS per subscription "
                f"({memory['subscriptions']} subscriptions, {how})",
                "value": round(memory["bytes_per_subscription"]),
                "met": memory["bytes_per_subscription"] <= _BYTES_PER_SUBSCRIPTION,
            }
        )
    checks += _recorder_targets(phases["recorder"])
    lossy = [name for name, phase in all_phases(phases) if not _lossless(phase)]
    checks.append(
        {
            "target": "100 % delivered, 0 errors in every phase",
            "value": "yes" if not lossy else f"no: {', '.join(lossy)}",
            "met": not lossy,
        }
    )
    return checks


def _recorder_targets(recorder: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Check the recorder-on bursts: rows per message, GET latency, RSS."""
    default, wide = recorder["default"], recorder["wide"]
    state_rows = {
        name: recorder[name]["state_rows_per_sensor_max"]
        for name in ("default", "counted", "wide")
    }
    return [
        {
            "target": "recorder: 0 event rows per message (message_events off)",
            "value": f"{default['event_rows_per_msg']:g} "
            f"({default['rows']['events']} rows / {default['sent']} messages)",
            "met": default["rows"]["events"] == 0,
        },
        {
            "target": f"recorder: <= {_STATE_ROWS_PER_SENSOR} state rows per sensor "
            f"per {default['sent']}-message burst on {default['topics']} topics",
            "value": f"{max(state_rows['default'], state_rows['counted'])} "
            f"({', '.join(f'{n}: {v}' for n, v in state_rows.items())})",
            "met": max(state_rows["default"], state_rows["counted"])
            <= _STATE_ROWS_PER_SENSOR,
        },
        {
            "target": f"GET /api/ p99 <= {_GET_P99_MS:g} ms during a "
            f"{default['sent']}-message burst (recorder on)",
            "value": f"{default['get_p99_ms']:.1f} ms (n={default['get_n']})",
            "met": default["get_p99_ms"] <= _GET_P99_MS,
        },
        {
            "target": f"HA RSS growth < {_RSS_GROWTH_MB:g} MB over {wide['topics']} "
            "topics (cache cap)",
            "value": f"{wide['rss_growth_mb']:.1f} MB "
            f"(peak {wide['rss_peak_growth_mb']:.1f})",
            "met": wide["rss_growth_mb"] < _RSS_GROWTH_MB,
        },
    ]


def _ratio_text(ratios: dict[str, float], name: str, bottom: str) -> str:
    value = ratios.get(f"{name}/{bottom}")
    return f"{value:.2f}" if value is not None else ""


def markdown(result: dict[str, Any]) -> str:
    """Return the results as markdown tables."""
    phases, ratios, meta = result["phases"], result["ratios"], result["meta"]
    lines = [
        f"Medians of {meta['rounds']} round(s), {meta['duration_s']:g} s per "
        "measurement; ratios are computed within each round, then the median taken.",
        "",
        "| phase | c | req/s | p50 ms | p99 ms | HA CPU ms/req | delivered/sent "
        "| delivery p50 / p99 ms | ÷ ceiling | ÷ mqtt.publish |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for variant in VARIANTS:
        mqtt = "mqtt_publish_qos" + variant.name[-1]
        for c, m in phases[variant.name].items():
            delivery = (
                f"{m['delivery_p50_ms']:.2f} / {m['delivery_p99_ms']:.2f}"
                if "delivery_p99_ms" in m
                else ""
            )
            ratio_ceiling = (
                _ratio_text(ratios[c], variant.name, "ceiling")
                if variant.name != "ceiling"
                else ""
            )
            ratio_mqtt = (
                _ratio_text(ratios[c], variant.name, mqtt)
                if variant.name.startswith("cloudsync")
                else ""
            )
            lines.append(
                f"| {variant.label} | {c} | {m['rps']:.0f} | {m['p50_ms']:.2f} "
                f"| {m['p99_ms']:.2f} | {m['hass_cpu_ms_per_req']:.3f} "
                f"| {m['delivered']}/{m['sent']} | {delivery} "
                f"| {ratio_ceiling} | {ratio_mqtt} |"
            )
    gen = [
        m["generator_cpu_ms_per_req"] for v in VARIANTS for m in phases[v.name].values()
    ]
    lines += [
        "",
        f"Load generator CPU: {min(gen):.3f}-{max(gen):.3f} ms per request "
        "(one process, asyncio + aiohttp).",
        *_noise_warning(phases),
        "",
        *_ingest_memory(phases),
        "",
        *_outbox(phases["outbox"]),
        "",
        *_recorder(phases["recorder"]),
        "",
        "| target | measured | met |",
        "|---|--:|:-:|",
    ]
    lines += [
        f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |"
        for t in result["targets"]
    ]
    problems = [
        f"- {name}: {sample}"
        for name, phase in all_phases(phases)
        for sample in phase.get("error_samples", [])
    ]
    if problems:
        lines += ["", "Errors (first few per phase):", *problems]
    return "\n".join(lines) + "\n"


def _noise_warning(phases: dict[str, Any]) -> list[str]:
    """Warn when other processes used the CPU during some measurements."""
    loads = [
        (sample.get("other_load_cores", 0.0), name)
        for name, phase in all_phases(phases)
        for sample in phase.get("rounds", [phase])
        if "other_load_cores" in sample
    ]
    worst, name = max(loads, default=(0.0, ""))
    if worst < _NOISY_CORES:
        return []
    noisy = sum(load >= _NOISY_CORES for load, _ in loads)
    return [
        "",
        f"**Warning:** processes outside the benchmark used up to {worst:.2f} cores "
        f"({name}); {noisy} of {len(loads)} measurements had over {_NOISY_CORES} "
        "cores of other load, so their absolute numbers are unreliable.",
    ]


def _ingest_memory(phases: dict[str, Any]) -> list[str]:
    ingest = phases["ingest"]
    return [
        "| ingest burst | msg/s | delivered/sent | state writes | HA CPU µs/msg "
        "| broker routed in |",
        "|---|--:|--:|--:|--:|--:|",
        f"| {ingest['sent'] // len(ingest['rounds'])} messages on {ingest['topics']} "
        f"topics | {ingest['msgs_per_s']:.0f} | {ingest['delivered']}/{ingest['sent']} "
        f"| {ingest['state_writes']:g} | {ingest['hass_cpu_us_per_msg']:.1f} "
        f"| {ingest['broker_routed_s']:.2f} s |",
        "",
        "| memory | subscriptions | RSS before → after | bytes/subscription "
        "| marginal (2nd half) | subscribe/s |",
        "|---|--:|--:|--:|--:|--:|",
        *(
            f"| REST subscribe, topic sensors {how} ({m['sensors']} sensors) "
            f"| {m['subscriptions']} "
            f"| {m['rss_start_mb']:.0f} → {m['rss_end_mb']:.0f} MB "
            f"| {m['bytes_per_subscription']:.0f} "
            f"| {m['marginal_bytes_per_subscription']:.0f} "
            f"| {m['subscribe_per_s']:.0f} |"
            for how, m in (
                ("on", phases["memory"]),
                ("off", phases["memory_no_sensors"]),
            )
        ),
    ]


def _outbox(cycles: dict[str, dict[str, Any]]) -> list[str]:
    """Two tables: the publishes queued with the broker down, then their drain."""
    enqueue = [
        "| outbox: publishes with the broker down | c | req/s | p50 ms | p99 ms "
        "| HA CPU ms/req | answered 202 queued |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    drain = [
        "| outbox drain after the broker is back | limit /s | reconnect s "
        "| drain msg/s | raw paho QoS 1 msg/s | drain ÷ raw | delivered/sent "
        "| delivered events | duplicates | out of order | HA CPU µs/msg |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, m in cycles.items():
        limit = "none" if name == "unlimited" else f"{m['drain_limit']:,}"
        enqueue.append(
            f"| {m['sent']} QoS 1 publishes (before the {name} drain) "
            f"| {m['concurrency']} | {m['enqueue_rps']:.0f} "
            f"| {m['enqueue_p50_ms']:.2f} | {m['enqueue_p99_ms']:.2f} "
            f"| {m['enqueue_hass_cpu_ms_per_req']:.3f} | {m['queued']}/{m['sent']} |"
        )
        drain.append(
            f"| {m['sent']} messages, drain limit {name} | {limit} "
            f"| {m['reconnect_s']:.2f} | {m['drain_msgs_per_s']:.0f} "
            f"| {m['raw_paho']['acked_per_s']:.0f} | {m['drain_per_raw']:.2f} "
            f"| {m['delivered']}/{m['sent']} | {m['delivered_events']} "
            f"| {m['duplicates']} | {m['out_of_order']} "
            f"| {m['drain_hass_cpu_us_per_msg']:.0f} |"
        )
    return [*enqueue, "", *drain]


def _recorder(bursts: dict[str, dict[str, Any]]) -> list[str]:
    """Return the table of the recorder-on bursts: rows, DB bytes, GET, RSS."""
    lines = [
        "| recorder on: burst | delivered/sent | msg/s | event rows/msg "
        "| state rows (max per sensor) | state_attributes rows | DB bytes/msg "
        "| GET /api/ p50 / p99 ms (n) | GET max ms to commit | HA RSS growth (peak) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for m in bursts.values():
        topics = "topics" if m["topics"] != 1 else "topic"
        lines.append(
            f"| {m['sent']} messages on {m['topics']} {topics}, {m['label']} "
            f"| {_delivered(m)} | {m['msgs_per_s']:.0f} "
            f"| {m['event_rows_per_msg']:.3f} "
            f"| {m['rows']['states']} ({m['state_rows_per_sensor_max']}) "
            f"| {m['rows']['state_attributes']} | {m['db_bytes_per_msg']:.1f} "
            f"| {m['get_p50_ms']:.1f} / {m['get_p99_ms']:.1f} ({m['get_n']}) "
            f"| {m['get_max_to_commit_ms']:.1f} "
            f"| {m['rss_growth_mb']:+.1f} MB ({m['rss_peak_growth_mb']:+.1f}) |"
        )
    idle = [m["get_idle_p99_ms"] for m in bursts.values()]
    lines += [
        "",
        f"GET /api/ at 100 requests/s, idle before each burst: p99 "
        f"{min(idle):.1f}-{max(idle):.1f} ms. Not counted: no listener per message "
        "(the default); each topic's last payload checked.",
    ]
    return lines


def _delivered(burst: dict[str, Any]) -> str:
    if not burst["counted"]:
        return "not counted"
    return f"{burst['delivered']}/{burst['sent']}"
