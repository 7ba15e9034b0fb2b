"""Smoke test of scripts/bench: the quick run must work, so the benchmark cannot rot.

It starts its own mosquitto and Home Assistant and takes about a minute. Deselect it with
``scripts/test -k 'not bench'`` (the name is kept plain: pyproject.toml registers no
marker for it).
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 240  # --quick takes about 45 s on 2 cores


@pytest.mark.timeout(TIMEOUT + 90)
def test_bench_quick(tmp_path: Path) -> None:
    results = tmp_path / "bench.json"
    with subprocess.Popen(
        [ROOT / "scripts" / "bench", "--quick", "--json", results],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            bench.terminate()  # SIGTERM: the bench stops Home Assistant and mosquitto
            stdout, stderr = bench.communicate(timeout=60)
            pytest.fail(f"scripts/bench --quick took over {TIMEOUT} s:\n{stderr}")
    sys.stdout.write(stdout)
    sys.stderr.write(stderr[-5000:])
    assert bench.returncode == 0, stderr[-2000:]

    data = json.loads(results.read_text(encoding="utf-8"))
    phases = data["phases"]
    request_phases = (
        "ceiling",
        "post_floor",
        "mqtt_publish_qos0",
        "mqtt_publish_qos1",
        "cloudsync_qos0",
        "cloudsync_qos1",
    )
    measured = [
        (f"{name} c={c}", metrics)
        for name in request_phases
        for c, metrics in phases[name].items()
    ]
    assert len(measured) == len(request_phases) * 3
    assert set(phases["outbox"]) == {"default", "unlimited"}
    measured += [
        ("ingest", phases["ingest"]),
        *((f"outbox {name}", cycle) for name, cycle in phases["outbox"].items()),
        ("recorder counted", phases["recorder"]["counted"]),
        ("recorder wide", phases["recorder"]["wide"]),
        ("memory", phases["memory"]),
        ("memory_no_sensors", phases["memory_no_sensors"]),
    ]
    for name, metrics in measured:
        assert metrics["sent"] > 0, name
        assert metrics["delivered"] == metrics["sent"], name
        assert metrics["errors"] == 0, (name, metrics.get("error_samples"))
    for name in ("cloudsync_qos0", "cloudsync_qos1"):
        assert all(m["rps"] > 0 for m in phases[name].values())
    assert data["ratios"]["8"]["cloudsync_qos1/ceiling"] > 0
    fast = data["fastlanes"]
    for name in ("batch", "ws_publish", "ws_publish_batch", "ws_push", "rest_own"):
        assert fast[name]["sent"] > 0, name
        assert fast[name]["delivered"] == fast[name]["sent"], name
        assert fast[name]["errors"] == 0, (name, fast[name]["error_samples"])
    assert {t["target"] for t in data["fastlanes_targets"]} >= {"batch/raw"}
    # The REST publish's own cost: back-to-back pairs, the median pair is the value.
    own = fast["rest_own"]
    assert len(own["pairs"]) == 3  # one round: 2 x 1 + 1
    assert own["own_cpu_ms"] in [pair["own_cpu_ms"] for pair in own["pairs"]]
    assert own["floor_cpu_ms"] in [pair["floor_cpu_ms"] for pair in own["pairs"]]
    assert own["own_per_floor"] in [
        pair["own_cpu_ms"] / pair["floor_cpu_ms"] for pair in own["pairs"]
    ]
    assert phases["ingest"]["state_writes"] > 0
    for cycle in phases["outbox"].values():
        # Every publish was queued (202) with the broker down, then delivered in
        # order, each with its delivered event; raw paho ran against the same broker.
        assert cycle["queued"] == cycle["sent"]
        assert cycle["statuses"] == {"202": cycle["sent"]}
        assert cycle["out_of_order"] == 0
        assert cycle["delivered_events"] == cycle["sent"]
        assert cycle["enqueue_rps"] > 0
        assert cycle["drain_msgs_per_s"] > 0
        assert cycle["raw_paho"]["delivered"] == cycle["sent"]
    recorder = phases["recorder"]
    # With the recorder on: every burst reached the recorder's counts (a committed
    # marker before and after), and the GET probe ran during the default burst.
    assert recorder["default"]["errors"] == 0, recorder["default"]["error_samples"]
    assert recorder["default"]["get_n"] > 0
    for burst in recorder.values():
        assert burst["rows"]["events"] >= 0
        assert burst["state_rows_per_sensor_max"] > 0
    assert phases["memory"]["sensors"] == phases["memory"]["subscriptions"]
    assert phases["memory_no_sensors"]["sensors"] == 0
    assert {t["target"] for t in data["targets"]}
    _check_mirror(data)


def _check_mirror(data: dict) -> None:
    mirror = data["mirror"]
    # The mirror phase: a baseline without the mirror, then every change through it,
    # each counted at the broker with the entity's last value.
    assert mirror["baseline"]["changes"] == mirror["changes"] > 0
    assert mirror["state"]["sent"] == mirror["state"]["delivered"] == mirror["changes"]
    assert mirror["state"]["published"] == mirror["changes"]
    assert mirror["state"]["errors"] == 0, mirror["state"]["error_samples"]
    assert "mirror_us_per_change" in mirror["state"]
    assert data["mirror_targets"][-1]["met"]
