"""Broker profiles: limits refused before sending, the outbound throttle, ALPN, backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib
from dataclasses import replace
import itertools
from pathlib import Path
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
import pytest

from custom_components.cloudsync.client import (
    PROFILES,
    BrokerConfig,
    CloudSyncError,
    Outbox,
    Profile,
    ProfileLimitError,
    ProfilePayloadTooLargeError,
)
from custom_components.cloudsync.client.profiles import (
    AWS_IOT_CORE,
    EMQX_SERVERLESS,
    GENERIC,
)
from custom_components.cloudsync.client.reconnect import Reconnector
from custom_components.cloudsync.client.resubscribe import Resubscription
from custom_components.cloudsync.client.throttle import Throttle
from tests.mosquitto import Mosquitto, free_port
from tests.pki import Pki

from .helpers import Recorder, config_for

KB = 1024


# -- each limit, refused with a message naming it ------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda p: p.check_publish("a/b", b"", 2), ProfileLimitError, "QoS 0 and 1"),
        (
            lambda p: p.check_publish("a", b"x" * (128 * KB + 1), 1),
            ProfilePayloadTooLargeError,
            "131072 bytes",
        ),
        (lambda p: p.check_publish("t" * 257, b"", 0), ProfileLimitError, "256"),
        (lambda p: p.check_publish("a/" * 8 + "z", b"", 0), ProfileLimitError, "7 '/'"),
        (lambda p: p.check_subscribe("a/" * 8 + "#", 0), ProfileLimitError, "7 '/'"),
        (lambda p: p.check_subscribe("f" * 257, 1), ProfileLimitError, "256 bytes"),
        (lambda p: p.check_subscribe("a/#", 2), ProfileLimitError, "not QoS 2"),
        (lambda p: p.check_connection("c" * 129, 60), ProfileLimitError, "128 bytes"),
        (lambda p: p.check_connection("c", 29), ProfileLimitError, "30-1200 s"),
        (lambda p: p.check_connection("c", 1201), ProfileLimitError, "30-1200 s"),
    ],
)
def test_aws_limits_refused(call: object, error: type[Exception], words: str) -> None:
    """Every AWS IoT Core limit is refused with an error naming the limit."""
    with pytest.raises(error, match="AWS IoT Core") as caught:
        call(AWS_IOT_CORE)  # type: ignore[operator]
    assert words in str(caught.value)


def test_aws_limits_allow_what_fits() -> None:
    """Values right at each AWS limit pass."""
    AWS_IOT_CORE.check_publish("a/" * 7 + "z", b"x" * 128 * KB, 1)
    AWS_IOT_CORE.check_publish("t" * 256, b"", 0)
    AWS_IOT_CORE.check_subscribe("a/" * 7 + "#", 1)
    AWS_IOT_CORE.check_connection("c" * 128, 30)
    AWS_IOT_CORE.check_connection("c", 1200)
    GENERIC.check_publish("a/" * 100 + "z", b"x" * 1_000_000, 2)
    GENERIC.check_connection("c" * 1000, 5)


def test_emqx_serverless_limits() -> None:
    """EMQX Cloud Serverless: 10 subscriptions, 10 filter levels, 1 MB payloads."""
    EMQX_SERVERLESS.check_subscribe("a/" * 9 + "b", 2, existing=9)
    with pytest.raises(ProfileLimitError, match="at most 10 subscriptions"):
        EMQX_SERVERLESS.check_subscribe("x", 0, existing=10)
    with pytest.raises(ProfileLimitError, match="10 levels"):
        EMQX_SERVERLESS.check_subscribe("a/" * 10 + "b", 0)
    with pytest.raises(ProfilePayloadTooLargeError, match="1048576 bytes"):
        EMQX_SERVERLESS.check_publish("a", b"x" * (1024 * KB + 1), 2)
    with pytest.raises(ProfileLimitError, match="1024 bytes"):
        EMQX_SERVERLESS.check_connection("c" * 1025, 60)
    assert set(PROFILES) == set(Profile)


def test_error_codes() -> None:
    """The HA layer maps these codes: 400 for rules, 413 for sizes."""
    assert ProfileLimitError.code == "profile_limit"
    assert ProfilePayloadTooLargeError.code == "profile_payload_too_large"


async def test_refused_before_sending_link_stays(plain_broker: Mosquitto) -> None:
    """Over-limit publishes and subscribes are refused locally; the link stays up."""
    recorder = Recorder()
    connection = recorder.connection(config_for(plain_broker, profile=AWS_IOT_CORE))
    await connection.connect()
    try:
        with pytest.raises(ProfilePayloadTooLargeError):
            await connection.publish("cloud/big", b"x" * (128 * KB + 1), 1)
        with pytest.raises(ProfileLimitError):
            await connection.publish("cloud/qos2", b"1", 2)
        with pytest.raises(ProfileLimitError):
            await connection.subscribe("a/b/c/d/e/f/g/h/#", 1)
        assert connection.connected
        assert connection.metrics.sent == 0
        await connection.subscribe("cloud/ok", 1)
        await connection.publish("cloud/ok", b"fits", 1)
        assert (await recorder.next_message()).payload == b"fits"
        assert connection.connected
        assert recorder.states == [True]
    finally:
        await connection.disconnect()


async def test_client_id_and_keepalive_checked_before_connecting() -> None:
    """connect() refuses a client id or keepalive AWS would refuse, without I/O."""
    port = free_port()  # nothing listens: a connect attempt would fail differently
    config = BrokerConfig(host="127.0.0.1", port=port, profile=AWS_IOT_CORE)
    recorder = Recorder()
    with pytest.raises(ProfileLimitError, match="client ids"):
        await recorder.connection(replace(config, client_id="c" * 129)).connect()
    with pytest.raises(ProfileLimitError, match="keepalive"):
        await recorder.connection(replace(config, keepalive=10)).connect()


# -- the outbound throttle, measured at a subscriber ---------------------------------


class Arrivals:
    """Receive times at a subscriber on its own thread (the publisher's loop is busy)."""

    def __init__(self, expected: int) -> None:
        """Expect ``expected`` messages."""
        self.times: list[float] = []
        self.sizes: list[int] = []
        self.done = threading.Event()
        self.expected = expected

    def on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        """Record one arrival (on paho's thread)."""
        self.times.append(time.monotonic())
        self.sizes.append(len(message.payload))
        if len(self.times) >= self.expected:
            self.done.set()

    async def wait(self, timeout: float = 20) -> None:
        """Wait until all expected messages arrived."""
        async with asyncio.timeout(timeout):
            while not self.done.is_set():
                await asyncio.sleep(0.05)

    def max_in_window(self, window: float = 1.0) -> int:
        """Return the most arrivals within any ``window`` seconds."""
        best = start = 0
        for end, stamp in enumerate(self.times):
            while stamp - self.times[start] > window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def max_bytes_in_window(self, window: float = 1.0) -> int:
        """Return the most payload bytes within any ``window`` seconds."""
        best = start = total = 0
        for end, stamp in enumerate(self.times):
            total += self.sizes[end]
            while stamp - self.times[start] > window:
                total -= self.sizes[start]
                start += 1
            best = max(best, total)
        return best


@contextlib.contextmanager
def _subscriber(broker: Mosquitto, topic: str, arrivals: Arrivals) -> Iterator[None]:
    """Record arrivals on ``topic`` with a paho client on its own thread."""
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = arrivals.on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda mqttc, *_args: mqttc.subscribe(topic, 0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        yield
    finally:
        client.disconnect()
        client.loop_stop()


async def test_throttle_holds_aws_publish_rate(
    plain_broker: Mosquitto, tmp_path: Path
) -> None:
    """Live publishes and the outbox drain together stay at 100 publishes/s."""
    arrivals = Arrivals(300)
    connection = Recorder().connection(config_for(plain_broker, profile=AWS_IOT_CORE))
    outbox = Outbox(connection, tmp_path / "outbox.db")
    with _subscriber(plain_broker, "rate/#", arrivals):
        await outbox.open()
        for index in range(150):  # queued: the link is not up yet
            assert (await outbox.publish(f"rate/q/{index}", b"q", 0)).queued
        await connection.connect()  # the drain starts
        live = [connection.publish(f"rate/l/{i}", b"l", 0) for i in range(150)]
        await asyncio.gather(*live)
        await arrivals.wait()
        await connection.disconnect()
        await outbox.close()
    elapsed = arrivals.times[-1] - arrivals.times[0]
    rate = (len(arrivals.times) - 1) / elapsed
    assert 85 <= rate <= 100, rate
    # No second sees more than 100 at the sender (test below); at the subscriber a
    # loaded machine squeezes a few arrivals together (103-108 seen in full runs).
    assert arrivals.max_in_window() <= 110, arrivals.max_in_window()
    assert connection.metrics.sent == 300


async def test_throttle_holds_byte_rate(plain_broker: Mosquitto) -> None:
    """The bytes-per-second budget holds for large payloads."""
    arrivals = Arrivals(24)
    profile = replace(GENERIC, byte_rate=100_000)
    connection = Recorder().connection(config_for(plain_broker, profile=profile))
    with _subscriber(plain_broker, "bytes/#", arrivals):
        await connection.connect()
        try:
            await asyncio.gather(
                *(connection.publish("bytes/x", b"x" * 12_500, 0) for _ in range(24))
            )
            await arrivals.wait()
        finally:
            await connection.disconnect()
    elapsed = arrivals.times[-1] - arrivals.times[0]
    rate = sum(arrivals.sizes[1:]) / elapsed
    assert 80_000 <= rate <= 100_000, rate
    assert arrivals.max_bytes_in_window() <= 100_000 + 12_500


async def test_throttle_holds_the_cap_in_every_second_at_the_sender() -> None:
    """Taken tokens: never more than 100 in any one-second window, about 90/s."""
    throttle = Throttle(100)
    arrivals = Arrivals(250)

    async def take() -> None:
        await throttle.acquire(1)
        arrivals.times.append(time.monotonic())

    await asyncio.gather(*(take() for _ in range(250)))
    assert arrivals.max_in_window() <= 100
    rate = 249 / (arrivals.times[-1] - arrivals.times[0])
    assert 85 <= rate <= 100, rate


async def test_throttle_unit_is_fifo_and_lets_big_messages_through() -> None:
    """A message over the byte bucket still goes (in debt), in the order asked."""
    throttle = Throttle(None, byte_rate=10_000)
    order: list[int] = []

    async def send(index: int, size: int) -> None:
        await throttle.acquire(size)
        order.append(index)

    start = time.monotonic()
    await asyncio.gather(send(0, 5_000), send(1, 1), send(2, 1))
    assert order == [0, 1, 2]
    # The bucket holds 1,000 bytes and refills at 9,000/s: the debt of 4,000 takes
    # about half a second to pay, before the next message may go.
    assert time.monotonic() - start >= 0.4
    assert not Throttle(None).active


# -- ALPN on the profile's port ------------------------------------------------------


async def _alpn_offered(
    pki: Pki, pki_files: dict[str, Path], *, profile: object
) -> str | None:
    """Connect to a local TLS listener and return the ALPN protocol the client chose."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki_files["server_cert"], pki_files["server_key"])
    server.set_alpn_protocols(["x-amzn-mqtt-ca"])
    seen: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    async def handle(
        _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        if not seen.done():
            seen.set_result(ssl_object.selected_alpn_protocol())
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    limits = replace(AWS_IOT_CORE, alpn_ports=frozenset({port})) if profile else GENERIC
    config = BrokerConfig(
        host="127.0.0.1", port=port, tls=True, ca_cert=pki.ca_pem, profile=limits
    )
    connection = Recorder().connection(config, connect_timeout=2)
    try:
        with pytest.raises(CloudSyncError):  # no MQTT behind it
            await connection.connect()
        async with asyncio.timeout(5):
            return await seen
    finally:
        await connection.disconnect()
        listener.close()
        await listener.wait_closed()


async def test_alpn_offered_on_the_profile_port(
    pki: Pki, pki_files: dict[str, Path]
) -> None:
    """The AWS profile offers x-amzn-mqtt-ca on its ALPN port; generic offers nothing."""
    assert await _alpn_offered(pki, pki_files, profile=True) == "x-amzn-mqtt-ca"
    assert await _alpn_offered(pki, pki_files, profile=False) is None
    assert AWS_IOT_CORE.alpn_for(443) == ["x-amzn-mqtt-ca"]
    assert AWS_IOT_CORE.alpn_for(8883) == []


# -- resubscribe batches and the CONNECT floor ---------------------------------------


class _FakePaho:
    """Records the SUBSCRIBE packets a resubscription sends."""

    def __init__(self) -> None:
        self.packets: list[list[tuple[str, int]]] = []

    def subscribe(self, batch: list[tuple[str, int]]) -> tuple[int, int]:
        self.packets.append(batch)
        return 0, len(self.packets)


def test_resubscribe_batches_eight_filters_for_aws() -> None:
    """AWS takes at most 8 filters per SUBSCRIBE: 20 filters go as 8 + 8 + 4."""
    fake = _FakePaho()
    resubscription = Resubscription("aws", AWS_IOT_CORE.max_filters_per_subscribe)
    resubscription.start(fake, {f"f/{i}": 1 for i in range(20)})  # type: ignore[arg-type]
    assert [len(packet) for packet in fake.packets] == [8, 8, 4]


async def test_reconnect_floor_one_connect_per_second() -> None:
    """With AWS's CONNECT floor, attempts are at least a second apart."""
    attempts: list[float] = []

    async def attempt() -> None:
        attempts.append(time.monotonic())
        msg = "down"
        raise CloudSyncError(msg)

    reconnector = Reconnector(
        attempt,
        lambda coro, name: asyncio.get_running_loop().create_task(coro, name=name),
        "aws",
        (0.01, 0.02),
        floor=AWS_IOT_CORE.connect_interval,
    )
    reconnector.enabled = True
    reconnector.start()
    await asyncio.sleep(3.3)
    await reconnector.stop()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert 2 <= len(attempts) <= 4
    assert min(gaps) >= 0.99
