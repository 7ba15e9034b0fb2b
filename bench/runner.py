"""Start the system under test, run every phase and always clean up."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
import os
from pathlib import Path
import platform
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import aiohttp
import psutil

from .context import Context, DeliveryCounter, Options
from .fastlanes import fastlanes_targets, run_fastlanes
from .ha import HomeAssistantApi
from .ingest import Ingest
from .memory import run_memory
from .mirror import mirror_targets, run_mirror
from .outbox import run_outbox
from .processes import (
    HOST,
    PYTHON,
    Processes,
    free_port,
    mosquitto_binary,
    start_home_assistant,
    start_mosquitto,
)
from .profile import Profiler
from .recorder import prepare_recorder, run_recorder
from .report import aggregate
from .requests import run_round

REPO = Path(__file__).resolve().parent.parent


def log(text: str) -> None:
    """Print progress to stderr (stdout carries the results)."""
    sys.stderr.write(f"==> {text}\n")
    sys.stderr.flush()


async def _configure(api: HomeAssistantApi, broker_port: int) -> dict[str, Any]:
    """Onboard, then add cloudsync and HA's mqtt through their config flows."""
    await api.onboard()
    config: dict[str, Any] = await api.wait_running()
    await api.config_flow(
        "cloudsync", {"user": {"url": f"mqtt://{HOST}:{broker_port}"}}
    )
    await api.config_flow(
        "mqtt",
        {
            "user": {"next_step_id": "broker"},
            "broker": {"broker": HOST, "port": broker_port},
        },
    )
    await api.wait_entry_loaded("cloudsync")
    await api.wait_entry_loaded("mqtt")
    return config


async def _phases(ctx: Context) -> dict[str, Any]:
    """Run the rounds (request phases + ingest), then outbox, recorder and memory."""
    ingest = await Ingest.prepare(ctx)
    rounds = []
    for round_no in range(1, ctx.options.rounds + 1):
        log(f"round {round_no}/{ctx.options.rounds}: request phases")
        requests = await run_round(ctx, round_no)
        log(f"round {round_no}/{ctx.options.rounds}: ingest burst")
        rounds.append({"requests": requests, "ingest": await ingest.run(round_no)})
    log("fast lanes: raw paho, batch, websocket publish and push")
    fastlanes = await run_fastlanes(ctx)
    mirror = await _mirror(ctx)
    log(f"outbox: {ctx.options.outbox_messages} publishes with the broker down, twice")
    outbox = await run_outbox(ctx)
    wide_sensors = await prepare_recorder(ctx)
    log("restarting Home Assistant with the recorder on")
    await ctx.restart_hass(recorder=True)
    log(
        f"recorder: {ctx.options.recorder_messages} messages on "
        f"{ctx.options.ingest_topics} topics, {ctx.options.wide_topics} topics"
        + (
            f", {ctx.options.recorder_event_messages} with message events"
            if ctx.options.recorder_event_messages
            else ""
        )
    )
    recorder = await run_recorder(ctx, ingest.sensors, wide_sensors)
    log("restarting Home Assistant (no recorder) for the memory phase")
    await ctx.restart_hass()
    log(f"memory: {ctx.options.subscriptions} subscriptions, topic sensors off and on")
    memory = await run_memory(ctx)
    return {
        "rounds": rounds,
        "outbox": outbox,
        "recorder": recorder,
        "memory": memory,
        "fastlanes": fastlanes,
        "mirror": mirror,
    }


async def _mirror(ctx: Context) -> dict[str, Any]:
    """Run the mirror phase (before the outbox phase stops the broker)."""
    options = ctx.options
    log(
        f"mirror: {options.mirror_entities} entities x {options.mirror_rate:g}/s x "
        f"{options.mirror_seconds:g} s, baselines (no listener, a no-op listener), payloads "
        f"{', '.join(options.mirror_payloads)}, {options.mirror_rounds} round(s)"
    )
    return await run_mirror(ctx)


async def run(
    options: Options,
    *,
    integration: Path = REPO / "custom_components" / "cloudsync",
    profile_dir: Path | None = None,
    keep: bool = False,
    only_mirror: bool = False,
) -> dict[str, Any]:
    """Run the benchmark against ``integration`` and return the aggregated results.

    ``only_mirror`` runs the mirror phase alone.
    """
    workdir = Path(tempfile.mkdtemp(prefix="cloudsync-bench-"))
    workdir.chmod(0o755)  # mosquitto drops to its own user
    processes = Processes(cwd=REPO)
    try:
        broker_port = free_port()
        ha_port = free_port()
        log(f"mosquitto on {HOST}:{broker_port}, Home Assistant on {HOST}:{ha_port}")
        broker = await start_mosquitto(processes, workdir, broker_port)
        hass = await start_home_assistant(processes, workdir, integration, ha_port)
        subscriber = await processes.start(
            "subscriber",
            PYTHON,
            "-m",
            "bench.subscriber",
            str(broker_port),
            "bench/out/#",
            log=workdir / "subscriber.log",
            pipes=True,
        )
        counter = DeliveryCounter(subscriber)
        await counter.ready()
        helpers = [psutil.Process(c.pid) for c in (broker, subscriber)]
        profiler = Profiler(processes, profile_dir)
        profiler.pid = hass.pid
        async with aiohttp.ClientSession() as session:
            api = HomeAssistantApi(session, ha_port)
            try:
                log("onboarding and config flows")
                config = await _configure(api, broker_port)
                ctx = Context(
                    api=api,
                    hass=psutil.Process(hass.pid),
                    broker_port=broker_port,
                    counter=counter,
                    options=options,
                    profiler=profiler,
                    processes=processes,
                    helpers=helpers,
                    broker=broker,
                    hass_child=hass,
                    integration=integration,
                    workdir=workdir,
                    retries_left=options.retries,
                    entry_id=await api.entry_id("cloudsync"),
                )
                phases = (
                    {"mirror": await _mirror(ctx)}
                    if only_mirror
                    else await _phases(ctx)
                )
            finally:
                await api.close()
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except BaseException:
        log(f"failed; logs in {workdir}")
        keep = True
        raise
    else:
        return _result(phases) | {"meta": _meta(options, config, integration)}
    finally:
        log("stopping")
        await processes.stop_all()
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _result(phases: dict[str, Any]) -> dict[str, Any]:
    """Aggregate the phases that ran; the mirror's targets are kept apart."""
    mirror = phases.pop("mirror")
    result: dict[str, Any] = {}
    if "fastlanes" in phases:
        fastlanes = phases.pop("fastlanes")
        result = aggregate(**phases)
        result["fastlanes"] = fastlanes
        result["fastlanes_targets"] = fastlanes_targets(result)
    return result | {"mirror": mirror, "mirror_targets": mirror_targets(mirror)}


def _command_output(*args: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(  # noqa: S603 - fixed commands
            args, capture_output=True, text=True, timeout=10, check=False, cwd=REPO
        )
        return (done.stdout or done.stderr).strip().splitlines()[0]
    return ""


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor()


def _meta(
    options: Options, config: dict[str, Any], integration: Path
) -> dict[str, Any]:
    """Describe the run: when, where, which versions, how big."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(),
        },
        "python": platform.python_version(),
        "homeassistant": config.get("version"),
        "mosquitto": _command_output(mosquitto_binary(), "-h"),
        "commit": _command_output("git", "describe", "--always", "--dirty"),
        "integration": str(integration),
        "rounds": options.rounds,
        "duration_s": options.duration,
        "options": options.__dict__,
    }
