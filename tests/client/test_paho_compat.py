"""The fast PUBACK/PUBCOMP path of paho_compat, and paho's own handler behind it."""

from __future__ import annotations

import contextlib
from dataclasses import replace
import socket
import struct
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
import pytest

from custom_components.cloudsync.client import (
    Protocol,
    attempt as attempt_module,
    paho_compat,
)

from .helpers import Recorder, config_for

if TYPE_CHECKING:
    from tests.mosquitto import BrokerFactory, Mosquitto
    from tests.pki import Pki


def _client(acks: list[tuple[int, Any]]) -> mqtt.Client:
    """Return an unconnected paho client that records on_publish calls."""
    mqttc = mqtt.Client(
        CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    mqttc.on_publish = lambda _c, _u, mid, reason, _p: acks.append((mid, reason))
    return mqttc


def _feed(mqttc: mqtt.Client, body: bytes) -> MQTTErrorCode:
    """Hand the client a PUBACK with ``body`` as if it had just been read."""
    mqttc._in_packet = {
        "command": 0x40,
        "remaining_length": len(body),
        "packet": body,
    }
    return mqttc._handle_pubackcomp("PUBACK")


def test_bare_puback_uses_shared_objects() -> None:
    """A two-byte PUBACK settles its message with the shared success reason."""
    acks: list[tuple[int, Any]] = []
    mqttc = _client(acks)
    assert paho_compat.install_fast_acks(mqttc)
    mid = mqttc.publish("t", b"x", qos=1).mid
    assert _feed(mqttc, struct.pack("!H", mid)) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert acks == [(mid, paho_compat._BARE_ACKS["PUBACK"][0])]
    assert acks[0][1] is paho_compat._BARE_ACKS["PUBACK"][0]
    assert not acks[0][1].is_failure
    assert mid not in mqttc._out_messages
    # A second PUBACK for the same id is ignored, as paho does.
    assert _feed(mqttc, struct.pack("!H", mid)) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert len(acks) == 1


def test_puback_with_reason_goes_to_paho() -> None:
    """An MQTT 5 PUBACK with a reason code is paho's to parse (a failure here)."""
    acks: list[tuple[int, Any]] = []
    mqttc = _client(acks)
    assert paho_compat.install_fast_acks(mqttc)
    mid = mqttc.publish("t", b"x", qos=1).mid
    _feed(mqttc, struct.pack("!HB", mid, 0x87) + b"\x00")
    assert acks[0][0] == mid
    assert acks[0][1] is not paho_compat._BARE_ACKS["PUBACK"][0]
    assert acks[0][1].is_failure
    assert acks[0][1].value == 0x87


def test_without_private_names_paho_handles_acks() -> None:
    """A paho without the private names keeps its own handler."""

    class Bare:
        pass

    assert not paho_compat.has_fast_acks(Bare())
    assert not paho_compat.install_fast_acks(Bare())  # type: ignore[arg-type]
    assert paho_compat.has_fast_acks(_client([]))  # the pinned paho 2.1


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("protocol", ["mqttv311", "mqttv5"])
async def test_publish_acks_on_both_paths(
    broker_factory: BrokerFactory,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    fast: bool,
    protocol: str,
) -> None:
    """QoS 1 and 2 publishes are acknowledged with and without the fast path."""
    installed: list[bool] = []

    def install(mqttc: mqtt.Client) -> bool:
        installed.append(fast and paho_compat.install_fast_acks(mqttc))
        return installed[-1]

    monkeypatch.setattr(attempt_module, "install_fast_acks", install)
    broker: Mosquitto = broker_factory()
    config = config_for(broker, pki)
    connection = Recorder().connection(replace(config, protocol=Protocol(protocol)))
    await connection.connect()
    try:
        mids = [
            await connection.publish(f"fast/{i}", b"x", qos=1 + i % 2, timeout=5)
            for i in range(20)
        ]
        futures = [connection.publish_nowait("fast/n", b"y", qos=1) for _ in range(200)]
        for future in futures:
            await future
    finally:
        await connection.disconnect()
    assert len(set(mids)) == 20
    assert installed == [fast]
    assert connection.pending_acks == 0


def _message(topic: bytes = b"a/b") -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(mid=1, topic=topic)
    message.payload = b"x"
    return message


def test_message_goes_straight_to_on_message() -> None:
    """Without per-filter callbacks on_message is called directly."""
    got: list[bytes] = []
    mqttc = _client([])
    mqttc.on_message = lambda _c, _u, msg: got.append(msg.payload)
    assert paho_compat.install_fast_messages(mqttc)
    mqttc._handle_on_message(_message())
    assert got == [b"x"]


def test_filter_callbacks_still_go_through_paho() -> None:
    """With a per-filter callback paho's own dispatch runs (and skips on_message)."""
    general: list[bytes] = []
    filtered: list[bytes] = []
    mqttc = _client([])
    mqttc.on_message = lambda _c, _u, msg: general.append(msg.payload)
    assert paho_compat.install_fast_messages(mqttc)
    mqttc.message_callback_add("a/#", lambda _c, _u, msg: filtered.append(msg.payload))
    mqttc._handle_on_message(_message())
    assert (general, filtered) == ([], [b"x"])


def test_raising_on_message_is_logged_and_suppressed() -> None:
    """A raising on_message is logged through paho's log and, suppressed, swallowed."""
    lines: list[str] = []
    mqttc = _client([])
    mqttc.on_log = lambda _c, _u, _level, buf: lines.append(buf)

    def boom(*_args: Any) -> None:
        msg = "boom"
        raise ValueError(msg)

    mqttc.on_message = boom
    assert paho_compat.install_fast_messages(mqttc)
    mqttc.suppress_exceptions = True
    mqttc._handle_on_message(_message())
    assert lines == ["Caught exception in on_message: boom"]
    mqttc.suppress_exceptions = False
    with pytest.raises(ValueError, match="boom"):
        mqttc._handle_on_message(_message())


def test_without_matcher_paho_handles_messages() -> None:
    """A paho without the matcher's private names keeps its own dispatch."""

    class Bare:
        pass

    assert not paho_compat.install_fast_messages(Bare())  # type: ignore[arg-type]
    mqttc = _client([])
    mqttc.on_message = None
    assert paho_compat.install_fast_messages(mqttc)
    mqttc._handle_on_message(_message())


def test_joined_write_resumes_after_a_partial_send() -> None:
    """A joined send the socket takes only part of continues where it stopped."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    mqttc = mqtt.Client(CallbackAPIVersion.VERSION2)
    mqttc.on_socket_register_write = lambda *_: None  # paho only queues, as bridged
    mqttc._sock = ours
    sent: list[tuple[int, int]] = []
    send = mqttc._sock_send

    def counted(buf: bytes) -> int:
        sent.append((len(buf), written := send(buf)))
        return written

    mqttc._sock_send = counted  # type: ignore[method-assign]
    packets = [bytes([0x32, i]) + bytes([i]) * 30_000 for i in range(8)]
    for mid, packet in enumerate(packets, 1):
        mqttc._packet_queue(0x30, packet, mid, 1)
    received = bytearray()
    try:
        while mqttc.want_write() or len(received) < sum(map(len, packets)):
            paho_compat.write_packets(mqttc)
            with contextlib.suppress(BlockingIOError):
                received += theirs.recv(1 << 20)
    finally:
        ours.close()
        theirs.close()
    assert bytes(received) == b"".join(packets)
    assert sent[0][0] == sum(map(len, packets)) > sent[0][1]  # joined, taken in part
