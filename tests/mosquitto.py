"""Real mosquitto brokers and mosquitto-clients CLI helpers for tests."""

from __future__ import annotations

import _socket  # the C socket type: pytest-socket only guards socket.socket
import asyncio
import atexit
import contextlib
from dataclasses import dataclass
import json
from pathlib import Path
import re
import shutil
import signal
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, Self
import uuid

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence
    from types import TracebackType

    from tests.pki import Pki

BrokerKind = Literal["plain", "tls", "password"]

HOST = "127.0.0.1"
DEFAULT_USERNAME = "cloudsync"
DEFAULT_PASSWORD = "s3cret-pw"
START_TIMEOUT = 10.0
CLI_TIMEOUT = 10.0
_POLL = 0.02
_RUNNING_RE = re.compile(r"mosquitto version \S+ running")
_ADDRESS_IN_USE = "Address already in use"
_UNCLOSED: set[Mosquitto] = set()


class BrokerStartError(RuntimeError):
    """Mosquitto did not come up; the message carries its log."""


class MqttCliError(RuntimeError):
    """A mosquitto_pub / mosquitto_sub process failed."""

    def __init__(self, message: str, returncode: int | None, stderr: str) -> None:
        """Store the exit code and stderr alongside the message."""
        super().__init__(f"{message} (rc={returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1 (works under pytest-socket)."""
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def _write(path: Path, text: str) -> Path:
    """Write a world-readable text file (mosquitto runs as user `mosquitto`)."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    return path


class Mosquitto:
    """One real mosquitto process with a single listener on 127.0.0.1."""

    host = HOST

    def __init__(
        self,
        kind: BrokerKind = "plain",
        *,
        pki: Pki | None = None,
        port: int | None = None,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        extra_config: Sequence[str] = (),
    ) -> None:
        """Prepare config and files in a private temp dir; does not start."""
        if kind == "tls" and pki is None:
            msg = "a TLS broker needs a Pki"
            raise ValueError(msg)
        self.kind: BrokerKind = kind
        self.username = username if kind == "password" else None
        self.password = password if kind == "password" else None
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._extra_config = list(extra_config)
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="cloudsync-mosquitto-"))
        self._dir.chmod(0o755)
        self.files: dict[str, Path] = pki.write_files(self._dir) if pki else {}
        self.log_path = self._dir / "mosquitto.log"
        self.log_path.touch()
        self.log_path.chmod(0o666)  # mosquitto opens it after dropping privileges
        if kind == "password":
            self._write_password_file()
        self._write_config()
        _UNCLOSED.add(self)

    def __repr__(self) -> str:
        """Return a short description."""
        return f"<Mosquitto {self.kind} {self.url} running={self.running}>"

    @property
    def port(self) -> int:
        """Return the listener port (stable across restarts)."""
        return self._port

    @property
    def url(self) -> str:
        """Return the broker URL as cloudsync normalizes it."""
        scheme = "mqtts" if self.kind == "tls" else "mqtt"
        return f"{scheme}://{HOST}:{self._port}"

    @property
    def running(self) -> bool:
        """Return True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Return the process id of the running broker."""
        return self._proc.pid if self.running and self._proc else None

    def log_text(self) -> str:
        """Return the whole broker log (all starts) including stderr output."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_offset(self) -> int:
        """Return the current log length, for `wait_for_log(since=...)`."""
        return len(self.log_text())

    def change_password(self, password: str) -> None:
        """Give the broker's user a new password; it applies from the next start."""
        self.password = password
        self._write_password_file()

    def _write_password_file(self) -> None:
        """Create the password file with mosquitto_passwd (PBKDF2-SHA512)."""
        path = self._dir / "passwords"
        assert self.username is not None
        assert self.password is not None
        subprocess.run(
            [
                _tool("mosquitto_passwd"),
                "-b",
                "-c",
                str(path),
                self.username,
                self.password,
            ],
            check=True,
            capture_output=True,
            timeout=CLI_TIMEOUT,
        )
        path.chmod(0o644)
        self.files["password_file"] = path

    def _write_config(self) -> None:
        """Write mosquitto.conf for the current port."""
        lines = [
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            f"listener {self._port} {HOST}",
            "max_connections -1",
        ]
        if self.kind == "plain":
            lines.append("allow_anonymous true")
        elif self.kind == "tls":
            lines += [
                f"cafile {self.files['ca']}",
                f"certfile {self.files['server_cert']}",
                f"keyfile {self.files['server_key']}",
                "require_certificate true",
                "use_identity_as_username true",
                "allow_anonymous false",
            ]
        else:
            lines += [
                "allow_anonymous false",
                f"password_file {self.files['password_file']}",
            ]
        lines += self._extra_config
        self.config_path = _write(self._dir / "mosquitto.conf", "\n".join(lines) + "\n")

    def _spawn(self) -> int:
        """Start the process without waiting; return the log offset at start."""
        if self.running:
            msg = f"{self!r} is already running"
            raise RuntimeError(msg)
        offset = self.log_offset()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [_tool("mosquitto"), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return offset

    def _check_started(self, offset: int) -> bool | None:
        """Return True when ready, None while starting, False on a port clash."""
        text = self.log_text()[offset:]
        if _RUNNING_RE.search(text):
            return True
        assert self._proc is not None
        if self._proc.poll() is None:
            return None
        if _ADDRESS_IN_USE in text and not self._fixed_port:
            return False
        msg = f"mosquitto exited with {self._proc.returncode}:\n{self.log_text()}"
        raise BrokerStartError(msg)

    def _on_timeout(self) -> BrokerStartError:
        """Kill a broker that did not start in time and describe why."""
        self.kill()
        return BrokerStartError(f"mosquitto not ready in time:\n{self.log_text()}")

    def _new_port(self) -> None:
        """Move to another free port after a clash (first start only)."""
        self._port = free_port()
        self._write_config()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the broker and block until it accepts connections."""
        deadline = time.monotonic() + timeout
        offset = self._spawn()
        while (state := self._check_started(offset)) is not True:
            if state is False:
                self._new_port()
                offset = self._spawn()
            elif time.monotonic() > deadline:
                raise self._on_timeout()
            time.sleep(_POLL)
        self._fixed_port = True  # later restarts must keep this port

    async def async_start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the broker, yielding to the event loop while it comes up."""
        deadline = time.monotonic() + timeout
        offset = self._spawn()
        while (state := self._check_started(offset)) is not True:
            if state is False:
                self._new_port()
                offset = self._spawn()
            elif time.monotonic() > deadline:
                raise self._on_timeout()
            await asyncio.sleep(_POLL)
        self._fixed_port = True

    def _signal(self, sig: signal.Signals) -> subprocess.Popen[bytes] | None:
        """Send a signal to a running broker and return its process."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        return proc

    def stop(self, timeout: float = START_TIMEOUT) -> None:
        """Stop the broker gracefully (SIGTERM) and wait for it to exit."""
        self._signal(signal.SIGCONT)
        if (proc := self._signal(signal.SIGTERM)) is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    async def async_stop(self, timeout: float = START_TIMEOUT) -> None:
        """Stop the broker gracefully, yielding to the event loop while waiting."""
        self._signal(signal.SIGCONT)
        if (proc := self._signal(signal.SIGTERM)) is not None:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(_POLL)
        self.kill()

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL): clients see a dead TCP peer."""
        if (proc := self._signal(signal.SIGKILL)) is not None:
            proc.wait(START_TIMEOUT)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused broker (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop and start again on the same port."""
        self.stop(timeout)
        self.start(timeout)

    async def async_restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop and start again on the same port without blocking the loop."""
        await self.async_stop(timeout)
        await self.async_start(timeout)

    def close(self) -> None:
        """Stop the broker and delete its files."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
        _UNCLOSED.discard(self)

    def log_contains(self, text: str | re.Pattern[str], since: int = 0) -> bool:
        """Return True if `text` (substring or regex) is in the log after `since`."""
        log = self.log_text()[since:]
        return bool(text.search(log)) if isinstance(text, re.Pattern) else text in log

    def wait_for_log(
        self, text: str | re.Pattern[str], *, since: int = 0, timeout: float = 10.0
    ) -> None:
        """Block until `text` (substring or regex) appears in the log."""
        deadline = time.monotonic() + timeout
        while not self.log_contains(text, since):
            if time.monotonic() > deadline:
                msg = f"{text!r} not in log of {self!r}:\n{self.log_text()[since:]}"
                raise TimeoutError(msg)
            time.sleep(_POLL)

    async def async_wait_for_log(
        self, text: str | re.Pattern[str], *, since: int = 0, timeout: float = 10.0
    ) -> None:
        """Wait until `text` (substring or regex) appears in the log."""
        deadline = time.monotonic() + timeout
        while not self.log_contains(text, since):
            if time.monotonic() > deadline:
                msg = f"{text!r} not in log of {self!r}:\n{self.log_text()[since:]}"
                raise TimeoutError(msg)
            await asyncio.sleep(_POLL)

    def cli_args(self, auth: CliAuth | None = None) -> list[str]:
        """Return mosquitto_pub/sub connection arguments for this broker."""
        auth = auth or CliAuth()
        args = ["-h", HOST, "-p", str(self._port)]
        if self.kind == "tls":
            args += ["--cafile", str(auth.cafile or self.files["ca"])]
            if auth.client_cert:
                cert = auth.cert_file or self.files["client_cert"]
                key = auth.key_file or self.files["client_key"]
                args += ["--cert", str(cert), "--key", str(key)]
        if not auth.anonymous:
            username = auth.username or self.username
            password = auth.password or self.password
            if username is not None:
                args += ["-u", username]
            if password is not None:
                args += ["-P", password]
        return args


class BrokerFactory(Protocol):
    """Signature of the `broker_factory` fixture."""

    def __call__(
        self,
        kind: BrokerKind = "plain",
        *,
        port: int | None = None,
        extra_config: Sequence[str] = (),
        start: bool = True,
    ) -> Mosquitto:
        """Create (and by default start) a private broker."""


@dataclass(frozen=True)
class CliAuth:
    """How a CLI client authenticates; unset fields fall back to the broker's."""

    client_cert: bool = True
    cert_file: Path | None = None
    key_file: Path | None = None
    cafile: Path | None = None
    username: str | None = None
    password: str | None = None
    anonymous: bool = False


class CliResult(NamedTuple):
    """Outcome of a finished CLI client."""

    returncode: int
    stdout: str
    stderr: str


class ReceivedMessage(NamedTuple):
    """A message seen by a mosquitto_sub subscriber."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


def _tool(name: str) -> str:
    """Return the absolute path of a mosquitto executable."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        msg = f"{name} not found; install the mosquitto and mosquitto-clients packages"
        raise FileNotFoundError(msg)
    return path


async def _kill_process(proc: asyncio.subprocess.Process) -> None:
    """Kill a CLI process if still running and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


async def mqtt_publish(
    broker: Mosquitto,
    topic: str,
    payload: bytes | str,
    qos: int = 0,
    retain: bool = False,
    *,
    auth: CliAuth | None = None,
    extra_args: Sequence[str] = (),
    check: bool = True,
    timeout: float = CLI_TIMEOUT,
) -> CliResult:
    """Publish one message with mosquitto_pub; raise MqttCliError if `check`."""
    data = payload.encode() if isinstance(payload, str) else payload
    args = [*broker.cli_args(auth), "-t", topic, "-q", str(qos), *extra_args]
    args += ["-r"] if retain else []
    args += ["-s"] if data else ["-n"]
    proc = await asyncio.create_subprocess_exec(
        _tool("mosquitto_pub"),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await proc.communicate(data)
    finally:
        await _kill_process(proc)
    result = CliResult(proc.returncode or 0, stdout.decode(), stderr.decode())
    if check and result.returncode != 0:
        msg = f"mosquitto_pub to {topic!r} failed"
        raise MqttCliError(msg, result.returncode, result.stderr)
    return result


class MqttSubscriber:
    """A mosquitto_sub process whose subscription is active inside `async with`."""

    def __init__(
        self,
        broker: Mosquitto,
        topic: str | Sequence[str],
        *,
        qos: int = 0,
        auth: CliAuth | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = CLI_TIMEOUT,
        client_id: str | None = None,
    ) -> None:
        """Describe the subscription; the process starts in `__aenter__`."""
        self.broker = broker
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        self.client_id = client_id or f"cloudsync-test-sub-{uuid.uuid4().hex[:12]}"
        self._qos = qos
        self._auth = auth
        self._extra_args = list(extra_args)
        self._ready_timeout = ready_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[ReceivedMessage | None] = asyncio.Queue()
        self._stderr = b""
        self.received: list[ReceivedMessage] = []

    async def __aenter__(self) -> Self:
        """Start mosquitto_sub and wait until the broker has sent its SUBACK."""
        args = [*self.broker.cli_args(self._auth), "-i", self.client_id]
        args += ["-q", str(self._qos), "-F", "%q %r %x %t", *self._extra_args]
        for topic in self.topics:
            args += ["-t", topic]
        since = self.broker.log_offset()
        self._proc = await asyncio.create_subprocess_exec(
            _tool("mosquitto_sub"),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read(self._proc))
        try:
            await self._wait_subscribed(since)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop mosquitto_sub and its reader task."""
        await self._close()

    async def _wait_subscribed(self, since: int) -> None:
        """Wait for `Sending SUBACK to <client id>` or for the process to die."""
        marker = f"Sending SUBACK to {self.client_id}"
        deadline = time.monotonic() + self._ready_timeout
        while not self.broker.log_contains(marker, since):
            if self._reader is not None and self._reader.done():
                msg = "mosquitto_sub exited before subscribing"
                raise MqttCliError(msg, self.returncode, self.stderr)
            if time.monotonic() > deadline:
                msg = f"mosquitto_sub not subscribed within {self._ready_timeout}s"
                raise MqttCliError(msg, self.returncode, self.stderr)
            await asyncio.sleep(_POLL)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        """Parse `qos retain hexpayload topic` lines until EOF."""
        assert proc.stdout is not None
        assert proc.stderr is not None
        stderr_task = asyncio.create_task(proc.stderr.read())
        try:
            while line := await proc.stdout.readline():
                qos, retain, hex_payload, topic = (
                    line.decode().rstrip("\n").split(" ", 3)
                )
                message = ReceivedMessage(
                    topic, bytes.fromhex(hex_payload), int(qos), retain == "1"
                )
                self.received.append(message)
                self._queue.put_nowait(message)
        finally:
            self._stderr = await stderr_task
            self._queue.put_nowait(None)

    async def _close(self) -> None:
        """Terminate the process and wait for the reader to finish."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLI_TIMEOUT):
                    await self._proc.wait()
            await _kill_process(self._proc)
        if self._reader is not None:
            await self._reader

    @property
    def returncode(self) -> int | None:
        """Return the exit code once mosquitto_sub has exited."""
        return self._proc.returncode if self._proc else None

    @property
    def stderr(self) -> str:
        """Return what mosquitto_sub wrote to stderr (complete after exit)."""
        return self._stderr.decode(errors="replace")

    async def messages(
        self, count: int = 1, timeout: float = CLI_TIMEOUT
    ) -> list[ReceivedMessage]:
        """Return the next `count` messages; raise TimeoutError if they don't come."""
        got: list[ReceivedMessage] = []
        try:
            async with asyncio.timeout(timeout):
                while len(got) < count:
                    message = await self._queue.get()
                    if message is None:
                        msg = "mosquitto_sub exited"
                        raise MqttCliError(msg, self.returncode, self.stderr)
                    got.append(message)
        except TimeoutError:
            msg = f"got {len(got)} of {count} messages on {self.topics}: {got}"
            raise TimeoutError(msg) from None
        return got

    async def message(self, timeout: float = CLI_TIMEOUT) -> ReceivedMessage:
        """Return the next message."""
        return (await self.messages(1, timeout))[0]

    async def assert_no_message(self, seconds: float = 0.5) -> None:
        """Assert that nothing arrives within `seconds`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                if (message := await self._queue.get()) is None:
                    msg = "mosquitto_sub exited"
                    raise MqttCliError(msg, self.returncode, self.stderr)
                msg = f"unexpected message on {self.topics}: {message}"
                raise AssertionError(msg)


async def mqtt_subscribe_collect(
    broker: Mosquitto,
    topic: str | Sequence[str],
    count: int,
    timeout: float = CLI_TIMEOUT,
    *,
    hex_payload: bool = False,
    extra_args: Sequence[str] = (),
    auth: CliAuth | None = None,
    qos: int = 0,
) -> list[tuple[str, bytes]]:
    """Subscribe and return `(topic, payload)` of the first `count` messages."""
    async with MqttSubscriber(
        broker, topic, qos=qos, auth=auth, extra_args=extra_args
    ) as sub:
        return [(m.topic, m.payload) for m in await sub.messages(count, timeout)]


DYNSEC_PLUGIN = next(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"), None)


def dynsec_config(
    allow: Sequence[tuple[str, str]],
    *,
    subscribe_default: bool,
    publish_default: bool,
) -> list[str]:
    """Return config lines limiting anonymous clients with the dynamic-security plugin.

    ``allow`` lists (acltype, topic pattern) pairs, e.g. ("subscribePattern", "a/#").
    Unlike acl_file, the plugin answers a denied SUBSCRIBE (and, for MQTT 5, a denied
    PUBLISH) with a failure code.
    """
    assert DYNSEC_PLUGIN is not None, "mosquitto's dynamic security plugin is missing"
    rules = {
        "defaultACLAccess": {
            "publishClientSend": publish_default,
            "publishClientReceive": True,
            "subscribe": subscribe_default,
            "unsubscribe": True,
        },
        "clients": [],
        "groups": [{"groupname": "anon", "roles": [{"rolename": "anon"}]}],
        "roles": [
            {
                "rolename": "anon",
                "acls": [
                    {"acltype": kind, "topic": topic, "allow": True}
                    for kind, topic in allow
                ],
            }
        ],
        "anonymousGroup": "anon",
    }
    folder = Path(tempfile.mkdtemp(prefix="cloudsync-dynsec-"))
    folder.chmod(0o755)
    path = folder / "dynsec.json"
    path.write_text(json.dumps(rules), encoding="utf-8")
    path.chmod(0o666)  # the plugin rewrites it as user mosquitto
    return [f"plugin {DYNSEC_PLUGIN}", f"plugin_opt_config_file {path}"]


@atexit.register
def _kill_leftovers() -> None:
    """Kill and delete brokers that were not closed (e.g. an aborted session)."""
    for broker in list(_UNCLOSED):
        broker.kill()
        broker.close()


def run_broker(kind: BrokerKind, pki: Pki) -> Generator[Mosquitto]:
    """Run one broker until the generator is closed (for session fixtures)."""
    broker = Mosquitto(kind, pki=pki)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
