"""A real Home Assistant process with the frontend, for the browser suite."""

from __future__ import annotations

import contextlib
import http.client
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time

from tests.mosquitto import HOST, free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0

# Like scripts/develop: a small set instead of default_config.
CONFIGURATION = """\
frontend:
config:
api:

http:
  server_host: {host}
  server_port: {port}

logger:
  default: warning
  logs:
    custom_components.cloudsync: debug
    homeassistant.setup: info
"""


class HomeAssistantServer:
    """`hass --config DIR` on a free port with cloudsync linked in."""

    def __init__(self, config_dir: Path) -> None:
        """Prepare the config dir; does not start."""
        self.config_dir = config_dir
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = config_dir / "home-assistant.log"
        self.output_path = config_dir / "hass-output.log"
        self._proc: subprocess.Popen[bytes] | None = None
        (config_dir / "custom_components").mkdir(parents=True, exist_ok=True)
        link = config_dir / "custom_components" / "cloudsync"
        if not link.exists():
            link.symlink_to(ROOT / "custom_components" / "cloudsync")
        (config_dir / "configuration.yaml").write_text(
            CONFIGURATION.format(host=HOST, port=self.port), encoding="utf-8"
        )

    def start(self) -> None:
        """Start Home Assistant and wait until its HTTP server answers."""
        hass = Path(sys.executable).with_name("hass")
        with self.output_path.open("ab") as output:
            self._proc = subprocess.Popen(
                [str(hass), "--config", str(self.config_dir)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._proc.poll() is not None:
                msg = f"Home Assistant exited with {self._proc.returncode}; see {self.output_path}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = f"Home Assistant did not answer in time; see {self.log_path}"
                raise TimeoutError(msg)
            time.sleep(0.2)

    def _answers(self) -> bool:
        """Return True once the onboarding API answers (HTTP is up, frontend loaded)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
        try:
            conn.request("GET", "/api/onboarding")
            return conn.getresponse().status == http.HTTPStatus.OK
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop Home Assistant (SIGTERM, then SIGKILL)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """Stop and delete the config dir."""
        self.stop()
        shutil.rmtree(self.config_dir, ignore_errors=True)
