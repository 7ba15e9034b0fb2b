"""A private RabbitMQ node with its MQTT plugin, started by the tests like mosquitto.

Debian's ``rabbitmq-server`` package (``scripts/setup`` installs it). The node gets its
own name, ports, data and log directories and config file in a temp dir, so it never
touches a system RabbitMQ. ``/usr/lib/rabbitmq/bin/rabbitmq-server`` runs as the calling
user (``/usr/sbin/rabbitmq-server`` switches to the ``rabbitmq`` user, who cannot write
the temp dir). It starts ``epmd`` if none runs; that daemon outlives the node.
"""

from __future__ import annotations

import _socket  # the C socket type: pytest-socket only guards socket.socket
import os
from pathlib import Path
import shutil
import signal
import subprocess
import tempfile
import time

from tests.mosquitto import HOST, free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
START_TIMEOUT = 90.0  # seconds; about 5-15 s on the project's machines


def available() -> bool:
    """Return True when the rabbitmq-server package is installed."""
    return SERVER.exists()


def _listening(port: int) -> bool:
    """Return True when something accepts TCP connections on 127.0.0.1:port."""
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.settimeout(0.2)
    try:
        sock.connect((HOST, port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


class RabbitMQ:
    """One private RabbitMQ node with an anonymous MQTT listener on 127.0.0.1."""

    host = HOST
    kind = "plain"

    def __init__(self) -> None:
        """Prepare the node's directory and config; does not start."""
        self._dir = Path(tempfile.mkdtemp(prefix="cloudsync-rabbitmq-"))
        self.port = free_port()
        self._amqp_port = free_port()
        self._name = f"cloudsync{os.getpid()}x{self.port}@localhost"
        (self._dir / "mnesia").mkdir()
        (self._dir / "log").mkdir()
        (self._dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {HOST}:{self._amqp_port}\n"
            f"mqtt.listeners.tcp.default = {HOST}:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
        )
        (self._dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        self._proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    @property
    def url(self) -> str:
        """Return the broker URL as cloudsync normalizes it."""
        return f"mqtt://{HOST}:{self.port}"

    def _env(self) -> dict[str, str]:
        base = self._dir
        return {
            **os.environ,
            "HOME": str(base),
            "RABBITMQ_NODENAME": self._name,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self._amqp_port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "node.pid"),
        }

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the node and wait until its MQTT listener accepts connections."""
        began = time.monotonic()
        log = (self._dir / "server.out").open("ab")
        self._proc = subprocess.Popen(
            [str(SERVER)],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - began < timeout:
            if self._proc.poll() is not None:
                msg = f"rabbitmq-server exited: {self.log_text()[-2000:]}"
                raise RuntimeError(msg)
            if not _listening(self.port):
                time.sleep(0.1)
                continue
            self.start_seconds = time.monotonic() - began
            return
        self.stop()
        msg = f"RabbitMQ's MQTT listener did not open in {timeout:g} s"
        raise RuntimeError(msg)

    def log_text(self) -> str:
        """Return the node's console output."""
        return (self._dir / "server.out").read_text(errors="replace")

    def stop(self) -> None:
        """Stop the node (its whole process group) and remove its directory."""
        if (proc := self._proc) is not None:
            self._proc = None
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)
