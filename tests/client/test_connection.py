"""BrokerConnection against real mosquitto brokers."""

from __future__ import annotations

import asyncio
from dataclasses import replace
import socket

import pytest

from custom_components.cloudsync.client import (
    BrokerAuthError,
    BrokerConnection,
    BrokerTimeoutError,
    BrokerTLSError,
    BrokerUnreachableError,
    InvalidTopicError,
    NotConnectedError,
    PayloadTooLargeError,
    Protocol,
    SubscriptionRefusedError,
    bridge as bridge_module,
    paho_compat,
)
from tests.mosquitto import (
    BrokerFactory,
    Mosquitto,
    MqttSubscriber,
    dynsec_config,
    free_port,
    mqtt_publish,
)
from tests.pki import Pki

from .helpers import Recorder, config_for, wait_until


@pytest.fixture
async def recorder() -> Recorder:
    """Return a fresh recorder."""
    return Recorder()


@pytest.mark.parametrize("protocol", [Protocol.MQTTV311, Protocol.MQTTV5])
@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_publish_arrives_at_another_client(
    plain_broker: Mosquitto, recorder: Recorder, qos: int, protocol: Protocol
) -> None:
    """A publish at each QoS and protocol reaches a second, independent client."""
    connection = recorder.connection(config_for(plain_broker, protocol=protocol))
    await connection.connect()
    try:
        async with MqttSubscriber(plain_broker, "home/+/temp", qos=2) as sub:
            mid = await connection.publish(
                "home/kitchen/temp", b"21.5\x00\xff", qos, retain=False
            )
            message = await sub.message()
    finally:
        await connection.disconnect()
    assert mid > 0
    assert message.topic == "home/kitchen/temp"
    assert message.payload == b"21.5\x00\xff"
    assert message.qos == qos
    assert recorder.states == [True, False]


async def test_subscribe_receives_and_unsubscribe_stops(
    plain_broker: Mosquitto, recorder: Recorder
) -> None:
    """Messages on a subscribed filter arrive; after unsubscribe they do not."""
    connection = recorder.connection(config_for(plain_broker))
    await connection.connect()
    try:
        assert await connection.subscribe("sub/test/#", qos=1) == 1
        assert dict(connection.subscriptions) == {"sub/test/#": 1}
        await mqtt_publish(plain_broker, "sub/test/a/b", b"hello", qos=1)
        message = await recorder.next_message()
        assert (message.topic, message.payload, message.qos) == (
            "sub/test/a/b",
            b"hello",
            1,
        )
        await connection.unsubscribe("sub/test/#")
        assert dict(connection.subscriptions) == {}
        await mqtt_publish(plain_broker, "sub/test/a/b", b"late", qos=1)
        with pytest.raises(TimeoutError):
            await recorder.next_message(timeout=0.5)
    finally:
        await connection.disconnect()


async def test_retained_message_is_flagged(
    plain_broker: Mosquitto, recorder: Recorder
) -> None:
    """A retained message delivered on subscribe carries retain=True."""
    await mqtt_publish(plain_broker, "retained/one", b"kept", qos=1, retain=True)
    connection = recorder.connection(config_for(plain_broker))
    await connection.connect()
    try:
        await connection.subscribe("retained/one")
        message = await recorder.next_message()
    finally:
        await connection.disconnect()
        await mqtt_publish(plain_broker, "retained/one", b"", retain=True)
    assert message.retain is True
    assert message.payload == b"kept"


async def test_mutual_tls_connects_and_publishes(
    tls_broker: Mosquitto, pki: Pki, recorder: Recorder
) -> None:
    """A client certificate signed by the broker's CA is accepted."""
    connection = recorder.connection(config_for(tls_broker, pki))
    await connection.connect()
    try:
        async with MqttSubscriber(tls_broker, "tls/#") as sub:
            await connection.publish("tls/x", b"secure", qos=1)
            assert (await sub.message()).payload == b"secure"
            # QoS 0 (the lane's, settled once written) over TLS too.
            await connection.publish("tls/zero", b"quick", qos=0, timeout=5)
            assert (await sub.message()).payload == b"quick"
            assert connection.pending_acks == 0
    finally:
        await connection.disconnect()


async def test_encrypted_client_key_with_password(
    tls_broker: Mosquitto, pki: Pki
) -> None:
    """An encrypted client key loads with its password."""
    config = config_for(
        tls_broker,
        pki,
        client_key=pki.client_key_encrypted_pem,
        key_password=pki.client_key_password,
    )
    connection = BrokerConnection(config)
    await connection.connect()
    assert connection.connected
    await connection.disconnect()


async def test_wrong_ca_is_a_tls_error(tls_broker: Mosquitto, pki: Pki) -> None:
    """A server certificate from an untrusted CA fails verification."""
    config = config_for(tls_broker, pki, ca_cert=pki.other_ca_pem)
    with pytest.raises(BrokerTLSError, match="certificate verify failed") as err:
        await BrokerConnection(config).connect()
    assert "the broker's certificate does not verify against the CA" in str(err.value)


async def test_missing_client_certificate_is_a_tls_error(
    tls_broker: Mosquitto, pki: Pki
) -> None:
    """A broker requiring client certificates rejects a client without one."""
    config = config_for(tls_broker, pki, client_cert=None, client_key=None)
    connection = BrokerConnection(config)
    # The broker's TLS alert may arrive (then it is quoted) or be lost with the link
    # (then what cloudsync knows of its configuration speaks): either names the cause.
    with pytest.raises(BrokerTLSError, match="requires a client certificate"):
        await connection.connect()
    assert not connection.connected


async def test_client_certificate_from_other_ca_is_a_tls_error(
    tls_broker: Mosquitto, pki: Pki
) -> None:
    """A client certificate the broker does not trust is rejected."""
    config = config_for(
        tls_broker,
        pki,
        client_cert=pki.other_client_cert_pem,
        client_key=pki.other_client_key_pem,
    )
    with pytest.raises(
        BrokerTLSError,
        match="its CA is not one it trusts|not accept the client certificate",
    ):
        await BrokerConnection(config).connect()


async def test_expired_client_certificate_is_named(
    tls_broker: Mosquitto, pki: Pki
) -> None:
    """An expired client certificate: the error says it is the client's, expired."""
    config = config_for(tls_broker, pki, client_cert=pki.client_cert_expired_pem)
    with pytest.raises(BrokerTLSError, match="the client certificate: it has expired"):
        await BrokerConnection(config).connect()


async def test_hostname_check_can_be_turned_off(
    tls_broker: Mosquitto, pki: Pki
) -> None:
    """With the hostname check off the chain is still verified and the link works."""
    connection = BrokerConnection(config_for(tls_broker, pki, verify_hostname=False))
    await connection.connect()
    assert connection.connected
    await connection.disconnect()
    untrusted = config_for(
        tls_broker, pki, verify_hostname=False, ca_cert=pki.other_ca_pem
    )
    with pytest.raises(BrokerTLSError, match="certificate verify failed"):
        await BrokerConnection(untrusted).connect()


@pytest.mark.parametrize("protocol", [Protocol.MQTTV311, Protocol.MQTTV5])
async def test_password_broker(password_broker: Mosquitto, protocol: Protocol) -> None:
    """The right password connects; a wrong one is an auth error."""
    good = BrokerConnection(config_for(password_broker, protocol=protocol))
    await good.connect()
    assert good.connected
    await good.disconnect()
    bad = BrokerConnection(
        config_for(password_broker, password="wrong", protocol=protocol)
    )
    with pytest.raises(BrokerAuthError):
        await bad.connect()
    assert bad.last_error is not None
    assert "wrong" not in bad.last_error


async def test_unreachable_broker() -> None:
    """Nothing listening is a BrokerUnreachableError naming the URL, and says refused."""
    port = free_port()
    connection = BrokerConnection(config_for_port(port))
    with pytest.raises(BrokerUnreachableError, match=f"127.0.0.1:{port}") as err:
        await connection.connect()
    assert err.value.code == "connection_refused"


def config_for_port(port: int):
    """Return a plain config for a port."""
    from custom_components.cloudsync.client import BrokerConfig

    return BrokerConfig(host="127.0.0.1", port=port)


async def test_not_connected_errors(plain_broker: Mosquitto) -> None:
    """Publishing or subscribing without a connection raises NotConnectedError."""
    connection = BrokerConnection(config_for(plain_broker))
    with pytest.raises(NotConnectedError):
        await connection.publish("a/b", b"x")
    with pytest.raises(NotConnectedError):
        await connection.subscribe("a/#")
    await connection.unsubscribe("a/#")  # offline unsubscribe only untracks


async def test_invalid_topics_rejected_before_sending(plain_broker: Mosquitto) -> None:
    """Wildcards in publish topics and malformed filters are refused locally."""
    connection = BrokerConnection(config_for(plain_broker))
    await connection.connect()
    try:
        with pytest.raises(InvalidTopicError):
            await connection.publish("a/+/b", b"x")
        with pytest.raises(InvalidTopicError):
            await connection.subscribe("a/#/b")
        assert connection.connected
    finally:
        await connection.disconnect()


async def test_payload_over_limit(plain_broker: Mosquitto) -> None:
    """A payload over MQTT's packet limit is refused with PayloadTooLargeError."""
    connection = BrokerConnection(config_for(plain_broker))
    await connection.connect()
    try:
        with pytest.raises(PayloadTooLargeError):
            await connection.publish("big", bytes(268_435_456))
    finally:
        await connection.disconnect()


async def test_broker_packet_limit_from_connack(broker_factory: BrokerFactory) -> None:
    """An MQTT 5 broker's Maximum Packet Size is enforced before sending."""
    broker = broker_factory(extra_config=["max_packet_size 1000"])
    connection = BrokerConnection(config_for(broker, protocol=Protocol.MQTTV5))
    await connection.connect()
    try:
        await connection.publish("small", bytes(500), qos=1)
        with pytest.raises(PayloadTooLargeError):
            await connection.publish("big", bytes(2000), qos=1)
        assert connection.connected
    finally:
        await connection.disconnect()


async def test_refused_subscription(broker_factory: BrokerFactory) -> None:
    """A filter the broker's ACL denies raises SubscriptionRefusedError and is not tracked."""
    broker = broker_factory(
        extra_config=dynsec_config(
            [("subscribePattern", "public/#")],
            subscribe_default=False,
            publish_default=True,
        )
    )
    connection = BrokerConnection(config_for(broker))
    await connection.connect()
    try:
        assert await connection.subscribe("public/#", qos=1) == 1
        with pytest.raises(SubscriptionRefusedError, match="secret/#"):
            await connection.subscribe("secret/#")
        assert dict(connection.subscriptions) == {"public/#": 1}
        assert connection.connected
    finally:
        await connection.disconnect()


@pytest.mark.parametrize("qos", [1, 2])
async def test_publish_times_out_without_ack(
    broker_factory: BrokerFactory, qos: int
) -> None:
    """A frozen broker never acks a publish: BrokerTimeoutError after the timeout."""
    broker = broker_factory()
    connection = BrokerConnection(config_for(broker))
    await connection.connect()
    broker.pause()
    try:
        with pytest.raises(BrokerTimeoutError, match="frozen within 0.5 s"):
            await connection.publish("frozen", b"x", qos=qos, timeout=0.5)
        assert connection.pending_acks == 0
    finally:
        broker.resume()
        await connection.disconnect()


async def test_publish_timeouts_each_keep_their_own(
    broker_factory: BrokerFactory,
) -> None:
    """A short timeout after a long one ends on time; the long one still gets its ack."""
    broker = broker_factory()
    connection = BrokerConnection(config_for(broker))
    await connection.connect()
    try:
        # Acked publishes leave no deadline behind, and one timer serves them all:
        # not a TimerHandle made and cancelled each time the heap empties.
        await connection.publish("acked", b"first", qos=1, timeout=0.5)
        timer = connection._acks._timer
        assert timer is not None
        for number in range(200):
            await connection.publish("acked", str(number).encode(), qos=1)
        assert connection._acks._deadlines == []
        assert connection._acks._timer is timer
        await wait_until(lambda: connection._acks._timer is None, 5)  # fired, idle
        broker.pause()
        loop = asyncio.get_running_loop()
        long = asyncio.ensure_future(
            connection.publish("long", b"x", qos=1, timeout=30)
        )
        await asyncio.sleep(0)
        started = loop.time()
        with pytest.raises(BrokerTimeoutError, match="short within 0.3 s"):
            await connection.publish("short", b"x", qos=1, timeout=0.3)
        assert 0.25 < loop.time() - started < 5
        assert not long.done()
        broker.resume()
        await asyncio.wait_for(long, 10)
        assert connection.pending_acks == 0
    finally:
        broker.resume()
        await connection.disconnect()


async def test_answered_deadlines_do_not_pile_up(plain_broker: Mosquitto) -> None:
    """Mixed timeouts leave answered long deadlines behind short live ones: capped."""
    connection = BrokerConnection(config_for(plain_broker))
    await connection.connect()

    async def publisher(timeout: float) -> None:
        for number in range(400):
            await connection.publish("mixed", str(number).encode(), 1, timeout=timeout)

    try:
        await asyncio.gather(*(publisher(1 if n % 2 else 60) for n in range(8)))
        # Without the cap about half of the 3,200 deadlines (the 60 s ones) would stay.
        assert len(connection._acks._deadlines) < 300
        assert connection.pending_acks == 0
    finally:
        await connection.disconnect()


async def test_cancelled_publish_stops_waiting(broker_factory: BrokerFactory) -> None:
    """A publish whose caller gives up no longer counts as waiting for the broker."""
    broker = broker_factory()
    connection = BrokerConnection(config_for(broker))
    await connection.connect()
    broker.pause()
    try:
        task = asyncio.ensure_future(
            connection.publish("gone", b"x", qos=1, timeout=30)
        )
        await wait_until(lambda: connection.pending_acks == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert connection.pending_acks == 0
        assert connection._acks._deadlines == []
    finally:
        broker.resume()
        await connection.disconnect()


async def test_tcp_nodelay_is_set(plain_broker: Mosquitto) -> None:
    """Nagle is off on the broker socket."""
    connection = BrokerConnection(config_for(plain_broker))
    await connection.connect()
    try:
        sock = connection._link.mqttc.socket()  # type: ignore[union-attr]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        await connection.disconnect()


async def test_reconnects_and_resubscribes_after_broker_restart(
    broker_factory: BrokerFactory, recorder: Recorder
) -> None:
    """After the broker restarts the client reconnects and the subscription delivers again."""
    broker = broker_factory()
    connection = recorder.connection(
        config_for(broker), backoff_min=0.1, backoff_max=0.5
    )
    await connection.connect()
    try:
        await connection.subscribe("restart/#", qos=1)
        await broker.async_stop()
        await recorder.wait_state(False)
        with pytest.raises(NotConnectedError):
            await connection.publish("restart/x", b"while down")
        await broker.async_start()
        await recorder.wait_state(True)
        await mqtt_publish(broker, "restart/again", b"back", qos=1)
        message = await recorder.next_message()
    finally:
        await connection.disconnect()
    assert (message.topic, message.payload) == ("restart/again", b"back")
    assert recorder.states == [True, False, True, False]


async def test_pending_publish_fails_when_link_drops(
    broker_factory: BrokerFactory,
) -> None:
    """A publish waiting for its ack fails with NotConnectedError when the broker dies."""
    broker = broker_factory()
    connection = BrokerConnection(config_for(broker), backoff_min=5)
    await connection.connect()
    broker.pause()
    publish = asyncio.ensure_future(connection.publish("x", b"y", qos=1, timeout=10))
    await asyncio.sleep(0.2)
    broker.kill()
    try:
        with pytest.raises(NotConnectedError):
            await publish
    finally:
        await connection.disconnect()


async def test_reconnect_loop_stops_on_disconnect(
    broker_factory: BrokerFactory,
) -> None:
    """disconnect() while the broker is down ends the reconnect loop; nothing lingers."""
    broker = broker_factory()
    recorder = Recorder()
    connection = recorder.connection(
        config_for(broker), backoff_min=0.05, backoff_max=0.1
    )
    await connection.connect()
    await broker.async_stop()
    await recorder.wait_state(False)
    await asyncio.sleep(0.3)  # a few failed attempts
    assert connection.last_error is not None
    await connection.disconnect()
    assert not connection.connected


async def test_track_subscribes_on_connect(
    plain_broker: Mosquitto, recorder: Recorder
) -> None:
    """A filter tracked before connecting is subscribed by the first CONNACK."""
    connection = recorder.connection(config_for(plain_broker))
    connection.track("tracked/topic", qos=1)
    await connection.connect()
    try:
        await mqtt_publish(plain_broker, "tracked/topic", b"1", qos=1)
        assert (await recorder.next_message()).payload == b"1"
    finally:
        await connection.disconnect()


async def test_listener_error_does_not_break_connection(
    plain_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in the message listener is logged; the connection keeps working."""
    seen: list[bytes] = []

    def listener(message):
        seen.append(message.payload)
        if message.payload == b"boom":
            msg = "listener failed"
            raise RuntimeError(msg)

    connection = BrokerConnection(config_for(plain_broker))
    connection.add_message_listener(listener)
    await connection.connect()
    try:
        await connection.subscribe("listener/#", qos=1)
        await mqtt_publish(plain_broker, "listener/a", b"boom", qos=1)
        await mqtt_publish(plain_broker, "listener/a", b"fine", qos=1)
        async with asyncio.timeout(5):
            while len(seen) < 2:
                await asyncio.sleep(0.02)
        assert connection.connected
    finally:
        await connection.disconnect()
    assert seen == [b"boom", b"fine"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "listener failed" in str(errors[0].exc_info[1])


async def test_paho_callback_error_is_logged_not_raised(
    plain_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """paho's suppress_exceptions is on: a callback that raises is logged, not raised."""
    connection = BrokerConnection(config_for(plain_broker))
    await connection.connect()
    try:
        assert connection._link is not None
        mqttc = connection._link.mqttc
        assert mqttc.suppress_exceptions

        def broken(*_args):
            msg = "callback failed"
            raise RuntimeError(msg)

        mqttc.on_message = broken
        await connection.subscribe("broken/#", qos=1)
        await mqtt_publish(plain_broker, "broken/a", b"x", qos=1)
        async with asyncio.timeout(5):
            while "callback failed" not in caplog.text:
                await asyncio.sleep(0.02)
        assert connection.connected
        assert await connection.publish("broken/b", b"y", qos=1)
    finally:
        await connection.disconnect()


def test_unique_client_ids() -> None:
    """Connections without a configured client id get distinct generated ones."""
    config = config_for_port(1883)
    ids = {BrokerConnection(config).client_id for _ in range(20)}
    assert len(ids) == 20
    assert BrokerConnection(replace(config, client_id="mine")).client_id == "mine"


@pytest.mark.parametrize("reader", ["private", "public"])
@pytest.mark.parametrize("kind", ["plain", "tls"])
async def test_burst_arrives_complete_and_in_order(
    broker_factory: BrokerFactory,
    pki: Pki,
    kind: str,
    reader: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 3,000-message burst (TLS records batch many packets) arrives whole and in order.

    A small per-turn read bound makes the reader stop with data left, in the kernel
    (plain) or decrypted in the SSL object (TLS), where only a scheduled read finds it.
    ``public`` reads through paho's public ``loop_read``, the fallback for a paho
    without the private ``_packet_read``.
    """
    monkeypatch.setattr(bridge_module, "MAX_PACKETS_PER_READ", 3)
    monkeypatch.setattr(paho_compat, "USE_PRIVATE_READER", reader == "private")
    broker = broker_factory(kind, extra_config=["max_queued_messages 0"])
    recorder = Recorder()
    connection = recorder.connection(config_for(broker, pki))
    await connection.connect()
    try:
        await connection.subscribe("burst/#", qos=1)
        lines = "".join(f"{i:05d}{'x' * 200}\n" for i in range(3000))
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub",
            *broker.cli_args(),
            "-t",
            "burst/t",
            "-q",
            "1",
            "-l",
            stdin=asyncio.subprocess.PIPE,
        )
        await proc.communicate(lines.encode())
        assert proc.returncode == 0
        got = [
            (await recorder.next_message(timeout=15)).payload[:5] for _ in range(3000)
        ]
    finally:
        await connection.disconnect()
    assert got == [f"{i:05d}".encode() for i in range(3000)]


def test_private_reader_detection() -> None:
    """The private read path is used only when paho still has both private calls."""

    class WithoutPacketRead:
        def _loop_rc_handle(self, rc):
            return rc

    class WithBoth(WithoutPacketRead):
        def _packet_read(self):
            return 0

    assert paho_compat.has_private_reader()  # the pinned paho 2.1
    assert paho_compat.has_private_reader(WithBoth)
    assert not paho_compat.has_private_reader(WithoutPacketRead)
    assert not paho_compat.has_private_reader(object)
