"""SocketBridge: how the event loop drives a connection's socket, against mosquitto."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from custom_components.cloudsync.client import BrokerConnection, ReceivedMessage
from tests.mosquitto import Mosquitto

from .helpers import config_for

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
    steady stream stalls for the 40 ms delayed-ACK timer now and then, unless the
    reader acknowledges each read at once.
    """
    delays: list[float] = []
    done = asyncio.Event()
    count = 300

    def on_message(message: ReceivedMessage) -> None:
        delays.append(time.monotonic() - _STAMP.unpack_from(message.payload)[0])
        if len(delays) == count:
            done.set()

    receiver = BrokerConnection(config_for(plain_broker))
    sender = BrokerConnection(config_for(plain_broker))
    receiver.add_message_listener(on_message)
    await receiver.connect()
    await sender.connect()
    try:
        await receiver.subscribe("steady", qos=0)
        padding = b"x" * 700
        for _ in range(count):
            await sender.publish("steady", _STAMP.pack(time.monotonic()) + padding)
            await asyncio.sleep(0.005)
        await asyncio.wait_for(done.wait(), 10)
        # A hold lasts the 40 ms timer; without one the slowest is a few ms (15 ms
        # with both cores busy).
        assert max(delays) < 0.035, sorted(delays)[-5:]
    finally:
        await sender.disconnect()
        await receiver.disconnect()
