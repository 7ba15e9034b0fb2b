"""The fast PUBACK/PUBCOMP path of paho_compat, and paho's own handler behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import replace
import socket
import struct
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
import pytest

from custom_components.cloudsync.client import (
    NotConnectedError,
    Protocol,
    attempt as attempt_module,
    fastlane,
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


def _feed(mqttc: mqtt.Client, body: bytes, cmd: str = "PUBACK") -> MQTTErrorCode:
    """Hand the client a PUBACK (or PUBCOMP) with ``body`` as if just read."""
    mqttc._in_packet = {
        "command": 0x40 if cmd == "PUBACK" else 0x70,
        "remaining_length": len(body),
        "packet": body,
    }
    return mqttc._handle_pubackcomp(cmd)


def _ignore(_mids: list[int]) -> None:
    """Take the lane's written QoS 0 publishes where a test has none."""


def _queued(mqttc: mqtt.Client) -> bytes:
    """Return (and forget) the packet paho queued last."""
    return bytes(mqttc._out_packet.pop()["packet"])


@pytest.mark.parametrize(
    "protocol", [MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5]
)
@pytest.mark.parametrize("size", [0, 1, 100, 16_400, 2_097_200])
@pytest.mark.parametrize("retain", [False, True])
@pytest.mark.parametrize("qos", [0, 1])
def test_lane_packet_is_pahos(
    protocol: MQTTProtocolVersion, size: int, retain: bool, qos: int
) -> None:
    """The lane's PUBLISH is byte for byte the packet paho builds (1-4 length bytes)."""
    mqttc = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    mqttc.on_socket_register_write = lambda *_: None  # paho only queues, as bridged
    mqttc._sock = socket.socket()  # "connected": nothing is written (only queued)
    lane = fastlane.install_lane(mqttc, lambda _mid, _reason: None, _ignore)
    assert lane is not None
    payload = bytes(range(256)) * (size // 256) + b"p" * (size % 256)
    mid = lane.publish("zoo/ä/topic".encode(), payload, retain=retain, qos=qos)
    ours = _queued(mqttc)
    mqttc._send_publish(mid, "zoo/ä/topic".encode(), payload, qos, retain)
    assert ours == _queued(mqttc)


def test_lane_qos0_is_written_once_pahos_queue_is_empty() -> None:
    """A lane QoS 0 publish is told of only when paho's queue has gone out whole.

    paho leaves it alone once written (no on_publish, no MQTTMessageInfo); while
    closing, the socket is gone and nothing is told (the lost link answers it).
    """
    paho_acks: list[tuple[int, Any]] = []
    written: list[list[int]] = []
    mqttc = _client(paho_acks)
    mqttc.on_socket_register_write = lambda *_: None
    mqttc._sock = ours = socket.socket()
    lane = fastlane.install_lane(mqttc, lambda _mid, _reason: None, written.append)
    assert lane is not None
    first = lane.publish(b"t", b"a", retain=False, qos=0)
    second = lane.publish(b"t", b"b", retain=True, qos=0)
    acked = lane.publish(b"t", b"c", retain=False)  # QoS 1: its PUBACK tells
    assert [p["qos"] for p in mqttc._out_packet] == [1, 1, 1]  # paho: nothing to do
    lane.written()
    assert written == []  # still queued
    mqttc._out_packet.clear()  # as after write_packets sent them all
    lane.written()
    lane.written()
    assert written == [[first, second]]
    assert acked not in written[0]
    third = lane.publish(b"t", b"d", retain=False, qos=0)
    mqttc._sock = None  # paho's _sock_close: unregister_write comes with no socket
    lane.written()
    assert written == [[first, second]]
    assert third not in mqttc._out_messages
    assert paho_acks == []
    ours.close()


def test_lane_acks_its_publishes_and_leaves_pahos() -> None:
    """Bare and MQTT 5 PUBACKs of lane publishes go to the lane; paho keeps its own."""
    lane_acks: list[tuple[int, int]] = []
    paho_acks: list[tuple[int, Any]] = []
    mqttc = _client(paho_acks)
    mqttc.on_socket_register_write = lambda *_: None
    mqttc._sock = socket.socket()
    lane = fastlane.install_lane(
        mqttc, lambda mid, reason: lane_acks.append((mid, reason)), _ignore
    )
    assert lane is not None
    first = lane.publish(b"t", b"x", retain=False)
    second = lane.publish(b"t", b"y", retain=False)
    exactly_once = mqttc.publish("t", b"z", qos=2).mid  # paho's own, in _out_messages
    assert _feed(mqttc, struct.pack("!H", first)) == MQTTErrorCode.MQTT_ERR_SUCCESS
    _feed(mqttc, struct.pack("!HB", second, 0x87) + b"\x00")  # refused, MQTT 5
    assert lane_acks == [(first, 0), (second, 0x87)]
    assert paho_acks == []
    mqttc._out_messages[exactly_once].state = mqtt.mqtt_ms_wait_for_pubcomp
    _feed(mqttc, struct.pack("!H", exactly_once), "PUBCOMP")
    assert [mid for mid, _reason in paho_acks] == [exactly_once]
    assert not paho_acks[0][1].is_failure
    assert exactly_once not in mqttc._out_messages
    assert len(lane_acks) == 2


def test_malformed_puback_under_mqtt_311_is_pahos_protocol_error() -> None:
    """Under MQTT 3.1.1 a PUBACK longer than the message id is paho's protocol error."""
    lane_acks: list[tuple[int, int]] = []
    mqttc = mqtt.Client(CallbackAPIVersion.VERSION2)
    mqttc.on_socket_register_write = lambda *_: None
    mqttc._sock = socket.socket()
    lane = fastlane.install_lane(
        mqttc, lambda mid, reason: lane_acks.append((mid, reason)), _ignore
    )
    assert lane is not None
    mid = lane.publish(b"t", b"x", retain=False)
    rc = _feed(mqttc, struct.pack("!HB", mid, 0x87))
    assert rc == MQTTErrorCode.MQTT_ERR_PROTOCOL
    assert lane_acks == []


def test_lane_refuses_a_closed_socket() -> None:
    """Without paho's socket the lane raises NotConnectedError and queues nothing."""
    mqttc = _client([])
    lane = fastlane.install_lane(mqttc, lambda _mid, _reason: None, _ignore)
    assert lane is not None
    with pytest.raises(NotConnectedError):
        lane.publish(b"t", b"x", retain=False)
    assert not mqttc._out_packet


def test_without_private_names_there_is_no_lane() -> None:
    """A paho without the private names gets no lane: paho does everything."""

    class Bare:
        pass

    assert not fastlane.has_lane(Bare())
    assert fastlane.install_lane(Bare(), lambda _m, _r: None, _ignore) is None  # type: ignore[arg-type]
    assert fastlane.has_lane(_client([]))  # the pinned paho 2.1


def _laned(
    sock: socket.socket,
    acked: list[int],
    recv: Callable[[int], bytes] | None = None,
) -> tuple[mqtt.Client, Any]:
    """Return a client reading ``sock`` through a BufferedRecv, and its lane's ack.

    ``recv`` stands in for paho's own ``_sock_recv`` under the BufferedRecv.
    """
    mqttc = mqtt.Client(CallbackAPIVersion.VERSION2)
    mqttc._sock = sock
    if recv is not None:
        mqttc._sock_recv = recv  # type: ignore[method-assign]
    assert paho_compat.install_buffered_reads(mqttc)
    lane = fastlane.install_lane(mqttc, lambda mid, _reason: acked.append(mid), _ignore)
    assert lane is not None
    return mqttc, lane.ack


def test_buffered_bare_acks_skip_paho() -> None:
    """read_packets hands buffered bare PUBACKs to the lane; paho reads the rest."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    bare: list[int] = []
    mqttc, ack = _laned(ours, bare)
    messages: list[bytes] = []
    mqttc.on_message = lambda _c, _u, msg: messages.append(msg.payload)
    pubacks = b"".join(struct.pack("!BBH", 0x40, 2, mid) for mid in range(1, 101))
    publish = bytes([0x30, 6, 0, 1]) + b"tmsg"  # QoS 0 on "t"
    theirs.sendall(pubacks + publish + pubacks[:6])  # and 1.5 PUBACKs
    read_by_paho = mqttc._packet_read
    paho_reads: list[int] = []

    def counted() -> MQTTErrorCode:
        paho_reads.append(1)
        return read_by_paho()

    mqttc._packet_read = counted  # type: ignore[method-assign]
    try:
        outcome = paho_compat.read_packets(mqttc, 64, ack)
        assert outcome is paho_compat.ReadOutcome.DRAINED
        assert messages == [b"msg"]
        assert bare == [*range(1, 101), 1]
        # paho read the PUBLISH and the half PUBACK, which waits in paho for its
        # second half.
        assert len(paho_reads) == 2
        assert mqttc._in_packet["command"] == 0x40
        theirs.sendall(pubacks[6:8])
        paho_compat.read_packets(mqttc, 64, ack)
        assert bare[-1] == 2
    finally:
        ours.close()
        theirs.close()


def test_acks_count_against_the_read_bound() -> None:
    """Bare PUBACKs cost 1/ACKS_PER_PACKET of a packet: a bound still stops a read."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    bare: list[int] = []
    mqttc, ack = _laned(ours, bare)
    theirs.sendall(
        b"".join(struct.pack("!BBH", 0x40, 2, mid) for mid in range(1, 1001))
    )
    try:
        outcome = paho_compat.read_packets(mqttc, 8, ack)
        assert outcome is paho_compat.ReadOutcome.MORE
        assert len(bare) == 8 * paho_compat.ACKS_PER_PACKET
        while paho_compat.read_packets(mqttc, 8, ack) is paho_compat.ReadOutcome.MORE:
            pass
        assert bare == list(range(1, 1001))
    finally:
        ours.close()
        theirs.close()


def test_a_short_read_ends_the_read_without_another_recv() -> None:
    """What one recv took whole ends the read: no second recv that would block."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    recvs: list[int] = []

    def counted(bufsize: int) -> bytes:
        recvs.append(-1)  # a recv that would block stays -1
        data = ours.recv(bufsize)  # raises BlockingIOError when there is nothing
        recvs[-1] = len(data)
        return data

    bare: list[int] = []
    mqttc, ack = _laned(ours, bare, counted)
    messages: list[bytes] = []
    mqttc.on_message = lambda _c, _u, msg: messages.append(msg.payload)
    try:
        theirs.sendall(struct.pack("!BBH", 0x40, 2, 7))
        outcome = paho_compat.read_packets(mqttc, 64, ack)
        assert (outcome, bare, recvs) == (paho_compat.ReadOutcome.DRAINED, [7], [4])
        # Next time the selector says readable, the socket is read again.
        theirs.sendall(struct.pack("!BBH", 0x40, 2, 8) + bytes([0x30, 3, 0, 1]) + b"t")
        assert paho_compat.read_packets(mqttc, 64, ack) is (
            paho_compat.ReadOutcome.DRAINED
        )
        assert (bare, messages, recvs) == ([7, 8], [b""], [4, 9])
        # The broker closing the socket reaches paho as before: the link is lost.
        theirs.close()
        assert paho_compat.read_packets(mqttc, 64, ack) is (
            paho_compat.ReadOutcome.CLOSED
        )
        assert recvs == [4, 9, 0]
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("lane", [True, False])
@pytest.mark.parametrize("protocol", ["mqttv311", "mqttv5"])
async def test_publish_acks_on_both_paths(
    broker_factory: BrokerFactory,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    lane: bool,
    protocol: str,
) -> None:
    """QoS 0, 1 and 2 publishes are answered with and without the lane, in order."""
    installed: list[bool] = []

    def install(
        mqttc: mqtt.Client,
        on_ack: fastlane.AckHandler,
        on_written: fastlane.WrittenHandler,
    ) -> fastlane.FastLane | None:
        made = fastlane.install_lane(mqttc, on_ack, on_written) if lane else None
        installed.append(made is not None)
        return made

    monkeypatch.setattr(attempt_module, "install_lane", install)
    broker: Mosquitto = broker_factory()
    config = config_for(broker, pki)
    connection = Recorder().connection(replace(config, protocol=Protocol(protocol)))
    reader = Recorder()
    listener = reader.connection(replace(config, client_id="fast-reader"))
    await listener.connect()
    await listener.subscribe("fast/order", qos=1, timeout=5)
    await connection.connect()
    try:
        # Mixed QoS 0/1 go out in publish order (below mosquitto's 20 in flight).
        order = [
            connection.publish_nowait("fast/order", b"%d" % i, qos=i % 2)
            for i in range(24)
        ]
        await asyncio.gather(*order)
        got = [(await reader.next_message()).payload for _ in range(24)]
        assert got == [b"%d" % i for i in range(24)]
        mids = [
            await connection.publish(f"fast/{i}", b"x", qos=1 + i % 2, timeout=5)
            for i in range(20)
        ]
        futures = [connection.publish_nowait("fast/n", b"y", qos=1) for _ in range(200)]
        for future in futures:
            await future
        settled: list[object] = []
        for qos in (0, 1, 2):
            connection.send_publish_then("fast/cb", b"z", qos, settled.append)
            assert settled == []  # never before it returns
        for _ in range(100):
            if len(settled) == 3:
                break
            await asyncio.sleep(0.01)
        assert settled == [None, None, None]
    finally:
        await connection.disconnect()
        await listener.disconnect()
    assert len(set(mids)) == 20
    assert installed == [lane, lane]  # the reader, then the publisher
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


def test_write_releases_the_write_interest_once_all_is_sent() -> None:
    """The host hears "nothing to write" after each flush, so the next queue tells it."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    mqttc = mqtt.Client(CallbackAPIVersion.VERSION2)
    events: list[str] = []
    mqttc.on_socket_register_write = lambda *_: events.append("register")
    mqttc.on_socket_unregister_write = lambda *_: events.append("unregister")
    mqttc._sock = ours
    try:
        for mid in (1, 2):
            packet = bytes([0x32, 5, 0, 1]) + b"t" + bytes([0, mid])
            mqttc._packet_queue(0x30, packet, mid, 1)
            assert paho_compat.write_packets(mqttc) == MQTTErrorCode.MQTT_ERR_SUCCESS
            assert theirs.recv(100) == packet
        assert events == ["register", "unregister"] * 2
        assert not mqttc.want_write()
    finally:
        ours.close()
        theirs.close()
