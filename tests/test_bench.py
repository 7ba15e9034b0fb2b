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
TIMEOUT = 240


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
    measured += [("ingest", phases["ingest"]), ("memory", phases["memory"])]
    for name, metrics in measured:
        assert metrics["sent"] > 0, name
        assert metrics["delivered"] == metrics["sent"], name
        assert metrics["errors"] == 0, (name, metrics.get("error_samples"))
    for name in ("cloudsync_qos0", "cloudsync_qos1"):
        assert all(m["rps"] > 0 for m in phases[name].values())
    assert data["ratios"]["8"]["cloudsync_qos1/ceiling"] > 0
    assert phases["ingest"]["state_writes"] > 0
    assert {t["target"] for t in data["targets"]}
