"""SocketBridge: how the event loop drives a connection's socket, against mosquitto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import socket
import struct
import time

import pytest

from custom_components.cloudsync.client import (
    BrokerConnection,
    ReceivedMessage,
    paho_compat,
)
from tests.mosquitto import Mosquitto
from tests.pki import Pki

from .helpers import Recorder, config_for

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's"
)

_STAMP = struct.Struct("!d")


async def test_steady_stream_is_not_held_for_a_delayed_ack(
    plain_broker: Mosquitto,
) -> None:
    """Equal-sized messages every 5 ms arrive without ~40 ms holds.

    Linux delays the ACK of a segment as large as the one before it, and mosquitto
    (Nagle on by default) keeps its next small write back until that ACK comes: a
    steady stream stalls for the 40 ms delayed-ACK timer now and then (every stream
    of 1.5 s did without the bridge's quick ACKs), unless the reader acknowledges each
    read at once. A busy machine can delay a message as long, so one clean stream of
    five passes.
    """
    receiver = BrokerConnection(config_for(plain_broker))
    async with _linked(plain_broker, receiver) as sender:
        await receiver.subscribe("steady", qos=0)
        slowest: list[float] = []
        while len(slowest) < 5 and min(slowest, default=1) >= 0.035:
            slowest.append(await _stream(sender, receiver))
    # A hold lasts the 40 ms timer; without one the slowest is a few ms.
    assert min(slowest) < 0.035, slowest


@contextlib.asynccontextmanager
async def _linked(
    broker: Mosquitto, receiver: BrokerConnection, pki: Pki | None = None
) -> AsyncIterator[BrokerConnection]:
    """Connect ``receiver`` and a new sender to ``broker``; disconnect both after."""
    sender = BrokerConnection(config_for(broker, pki))
    await receiver.connect()
    await sender.connect()
    try:
        yield sender
    finally:
        await sender.disconnect()
        await receiver.disconnect()


async def _stream(
    sender: BrokerConnection, receiver: BrokerConnection, count: int = 300
) -> float:
    """Send ``count`` equal-sized messages 5 ms apart; return the longest delay."""
    delays: list[float] = []
    done = asyncio.Event()

    def on_message(message: ReceivedMessage) -> None:
        delays.append(time.monotonic() - _STAMP.unpack_from(message.payload)[0])
        if len(delays) == count:
            done.set()

    stop = receiver.add_message_listener(on_message)
    try:
        padding = b"x" * 700
        for _ in range(count):
            await sender.publish("steady", _STAMP.pack(time.monotonic()) + padding)
            await asyncio.sleep(0.005)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        stop()
    return max(delays)


def _counting_sends(connection: BrokerConnection) -> list[int]:
    """Record the size of every send paho makes on the connection's socket."""
    link = connection._link
    assert link is not None
    mqttc = link.mqttc
    sizes: list[int] = []
    send = mqttc._sock_send

    def counted(buf: bytes) -> int:
        sizes.append(len(buf))
        return send(buf)

    mqttc._sock_send = counted  # type: ignore[method-assign]
    return sizes


async def test_publishes_of_one_turn_go_out_in_one_send(
    plain_broker: Mosquitto,
) -> None:
    """QoS 1 publishes made in one loop turn cost one send, and arrive in order."""
    recorder = Recorder()
    receiver = recorder.connection(config_for(plain_broker))
    async with _linked(plain_broker, receiver) as sender:
        await receiver.subscribe("joined/#", qos=1)
        sizes = _counting_sends(sender)
        futures = [
            sender.publish_nowait(f"joined/{i}", str(i).encode(), 1) for i in range(20)
        ]
        await asyncio.sleep(0)  # the turn ends: the bridge writes
        assert len(sizes) == 1, sizes
        await asyncio.wait_for(asyncio.gather(*futures), 5)
        got = [(await recorder.next_message()).payload for _ in futures]
    assert got == [str(i).encode() for i in range(20)]


async def test_mixed_qos_publishes_of_one_turn_all_complete_in_order(
    plain_broker: Mosquitto,
) -> None:
    """QoS 0 publishes (paho writes them and reports them written) mixed with 1 and 2.

    The quiet packets at the head of paho's queue go with one send, paho writes the
    rest; every publish completes, and each QoS keeps its order (mosquitto forwards a
    QoS 2 message only after its PUBREL).
    """
    recorder = Recorder()
    receiver = recorder.connection(config_for(plain_broker))
    async with _linked(plain_broker, receiver) as sender:
        await receiver.subscribe("mixed/#", qos=2)
        sizes = _counting_sends(sender)
        qos = [1, 2, 1, 1, 0, 1, 2, 0, 0, 1] * 3
        futures = [
            sender.publish_nowait(f"mixed/{i}", str(i).encode(), q)
            for i, q in enumerate(qos)
        ]
        await asyncio.wait_for(asyncio.gather(*futures), 5)
        got = [await recorder.next_message() for _ in qos]
    assert sizes[0] > max(sizes[1:])  # the first four went together
    for level in (0, 1, 2):
        sent = [str(i).encode() for i, q in enumerate(qos) if q == level]
        assert [m.payload for m in got if m.qos == level] == sent


@pytest.mark.parametrize("kind", ["plain", "tls"])
async def test_large_and_small_messages_arrive_whole_through_the_read_buffer(
    request: pytest.FixtureRequest, pki: Pki, kind: str
) -> None:
    """Packets read ahead into memory, a 3 MB one among small ones, reach paho whole.

    Over TLS a recv returns at most one record; the rest waits in the SSL object.
    """
    broker: Mosquitto = request.getfixturevalue(f"{kind}_broker")
    recorder = Recorder()
    receiver = recorder.connection(config_for(broker, pki))
    async with _linked(broker, receiver, pki) as sender:
        link = receiver._link
        assert link is not None
        mqttc = link.mqttc
        assert isinstance(mqttc._sock_recv, paho_compat.BufferedRecv)
        await receiver.subscribe("sizes/#", qos=1)
        payloads = [bytes([i]) * (3_000_000 if i == 5 else 10 + i) for i in range(12)]
        futures = [
            sender.publish_nowait(f"sizes/{i}", payload, 1)
            for i, payload in enumerate(payloads)
        ]
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        got = [(await recorder.next_message()).payload for _ in payloads]
    assert got == payloads
