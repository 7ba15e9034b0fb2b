"""The processes a run starts (mosquitto, Home Assistant, helpers) and their cleanup.

Each child gets its own session, so a Ctrl-C in the terminal reaches only the bench, which
then stops the children in reverse order; the kernel also sends them SIGTERM should the
bench die without cleaning up (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import shutil
import signal
import socket
import sys
import time
from typing import IO, Any

# A helper's report is one JSON line; the subscriber's order report lists every
# message's sequence number (20,000 in the unlimited outbox cycle).
_LINE_LIMIT = 16 * 1024 * 1024
HOST = "127.0.0.1"
PYTHON = sys.executable
_PR_SET_PDEATHSIG = 1
_STOP_TIMEOUT = 30.0


class BenchError(RuntimeError):
    """The benchmark could not run (a process did not start, a request failed)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Ask for SIGTERM when the bench process dies (runs in the child before exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def wait_for_port(port: int, timeout: float, proc: Child | None = None) -> None:
    """Wait until something accepts connections on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.process.returncode is not None:
            msg = f"{proc.name} exited with {proc.process.returncode}; log:\n"
            raise BenchError(msg + proc.log_tail())
        try:
            _reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    msg = f"nothing listens on {HOST}:{port} after {timeout:g} s"
    raise BenchError(msg)


@dataclass
class Child:
    """A started child process and where its output goes."""

    name: str
    process: asyncio.subprocess.Process
    log: Path | None
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the child's log, for error messages."""
        if self.log is None or not self.log.exists():
            return "(no log)"
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Start children and stop them all, newest first."""

    def __init__(self, cwd: Path) -> None:
        """Start with no children; they run in ``cwd`` (so ``-m bench.*`` works)."""
        self._cwd = cwd
        self._children: list[Child] = []

    async def start(
        self, name: str, *args: str | Path, log: Path | None = None, pipes: bool = False
    ) -> Child:
        """Start a child; its output goes to ``log``, or to pipes when ``pipes``."""
        log_file = log.open("wb") if log is not None else None
        output = (
            asyncio.subprocess.PIPE
            if pipes
            else (log_file or asyncio.subprocess.DEVNULL)
        )
        process = await asyncio.create_subprocess_exec(
            *map(str, args),
            stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=log_file or asyncio.subprocess.DEVNULL,
            cwd=self._cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            limit=_LINE_LIMIT,
        )
        child = Child(name, process, log, log_file)
        self._children.append(child)
        return child

    async def stop(self, child: Child, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop one child: SIGTERM, then SIGKILL after ``timeout``."""
        if child in self._children:
            self._children.remove(child)
        process = child.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                sys.stderr.write(
                    f"{child.name} did not stop in {timeout:g} s; killing it\n"
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if child.log_file is not None:
            child.log_file.close()

    async def run_module(self, module: str, *args: str) -> dict[str, Any]:
        """Run ``python -m bench.<module> args`` to its end; return the JSON it prints.

        A non-zero exit is a BenchError carrying what the module printed.
        """
        child = await self.start(
            module, PYTHON, "-m", f"bench.{module}", *args, pipes=True
        )
        output, _ = await child.process.communicate()
        await self.stop(child)
        if child.process.returncode != 0:
            msg = f"bench.{module} failed ({child.process.returncode}): {output!r}"
            raise BenchError(msg)
        result: dict[str, Any] = json.loads(output)
        return result

    async def stop_all(self) -> None:
        """Stop every child still running, newest first."""
        for child in reversed(self._children.copy()):
            await self.stop(child)


def mosquitto_binary() -> str:
    """Return the mosquitto broker's path (Debian installs it in /usr/sbin)."""
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(found, os.X_OK):
        msg = "mosquitto not found; scripts/setup installs it"
        raise BenchError(msg)
    return found


def write_mosquitto_conf(workdir: Path, port: int) -> Path:
    """Write the private broker's configuration; return its path."""
    conf = workdir / "mosquitto.conf"
    # max_queued_messages 0: no per-client queue limit, so a burst is never dropped
    # by the broker (mosquitto drops QoS 0 messages past the limit by default).
    # persistence: the outbox phase stops and restarts the broker; the subscriber's
    # session (clean_session false, QoS 1) and what is queued for it survive that,
    # so it cannot miss messages whichever client reconnects first. mosquitto writes
    # the file only on shutdown (autosave every 30 minutes), never during a phase.
    # user root: started as root, mosquitto would switch to its own user, and a
    # change of user clears the parent-death signal that stops it if the bench is
    # killed. It listens on 127.0.0.1 only and lives for one run.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"listener {port} {HOST}\n"
        f"{user}"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        "max_queued_messages 0\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n",
        encoding="utf-8",
    )
    conf.chmod(0o644)  # started as root, mosquitto drops to its own user
    return conf


async def start_mosquitto(
    processes: Processes, workdir: Path, port: int, generation: int = 1
) -> Child:
    """Start the private broker on 127.0.0.1:port and wait until it listens.

    ``generation`` counts restarts (the outbox phase), each with a log of its own.
    """
    conf = workdir / "mosquitto.conf"
    if not conf.exists():
        write_mosquitto_conf(workdir, port)
    log = workdir / (
        "mosquitto.log" if generation == 1 else f"mosquitto-{generation}.log"
    )
    child = await processes.start("mosquitto", mosquitto_binary(), "-c", conf, log=log)
    await wait_for_port(port, 10, child)
    return child


# HA's default recorder (SQLite in the config dir, default commit interval).
RECORDER_CONFIG = "recorder:\n"
# The bench-only component that makes the mirror phase's state changes.
BENCH_COMPONENTS = Path(__file__).resolve().parent / "components"
BENCH_STATES = "cloudsync_bench_states"


def write_ha_config(
    config_dir: Path, integration: Path, port: int, *, recorder: bool = False
) -> None:
    """Write a minimal Home Assistant configuration with cloudsync linked in.

    The bench's own component (BENCH_STATES) is linked beside it; ``diagnostics:``
    serves the counters the recorder and mirror phases read.
    """
    custom = config_dir / "custom_components"
    custom.mkdir(parents=True, exist_ok=True)
    for link, target in (
        (custom / "cloudsync", integration),
        (custom / BENCH_STATES, BENCH_COMPONENTS / BENCH_STATES),
    ):
        if not link.is_symlink():
            link.symlink_to(target.resolve())
    (config_dir / "configuration.yaml").write_text(
        "# Written by scripts/bench for one run.\n"
        "homeassistant:\n"
        "  name: bench\n"
        "  time_zone: UTC\n"
        "  unit_system: metric\n"
        "http:\n"
        f"  server_host: {HOST}\n"
        f"  server_port: {port}\n"
        "api:\n"
        "config:\n"
        "onboarding:\n"
        "websocket_api:\n"
        "logger:\n"
        "  default: warning\n"
        "diagnostics:\n"
        f"{BENCH_STATES}:\n"
        f"{RECORDER_CONFIG if recorder else ''}",
        encoding="utf-8",
    )


async def start_home_assistant(  # noqa: PLR0913
    processes: Processes,
    workdir: Path,
    integration: Path,
    port: int,
    generation: int = 1,
    *,
    recorder: bool = False,
) -> Child:
    """Start Home Assistant on 127.0.0.1:port and wait until its HTTP server listens.

    ``generation`` counts restarts: a restart keeps the storage, each start has its log.
    ``recorder`` adds HA's recorder to the configuration.
    """
    config_dir = workdir / "config"
    write_ha_config(config_dir, integration, port, recorder=recorder)
    log = workdir / ("hass.log" if generation == 1 else f"hass-{generation}.log")
    hass = Path(PYTHON).parent / "hass"
    # --skip-pip: everything needed is in the venv; never install at run time.
    child = await processes.start(
        "Home Assistant",
        hass,
        "--config",
        config_dir,
        "--skip-pip",
        log=log,
    )
    await wait_for_port(port, 120, child)
    return child
