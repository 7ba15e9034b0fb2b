"""Two clients sharing a client id at mosquitto: backoff instead of a reconnect storm."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
import pytest

from custom_components.cloudsync.client import Protocol
from custom_components.cloudsync.client.takeover import TakeoverWatch
from tests.mosquitto import Mosquitto

from .helpers import Recorder, config_for

SHARED_ID = "cloudsync-shared-id"


@contextlib.contextmanager
def aggressive_twin(
    broker: Mosquitto,
    protocol: Protocol = Protocol.MQTTV311,
    client_id: str = SHARED_ID,
) -> Iterator[mqtt.Client]:
    """Run another client with the same id that reconnects every 0.2 s when kicked."""
    v5 = protocol is Protocol.MQTTV5
    twin = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
    )
    twin.reconnect_delay_set(min_delay=0.2, max_delay=0.2)  # type: ignore[arg-type]
    twin.connect_async(broker.host, broker.port)
    twin.loop_start()
    try:
        yield twin
    finally:
        twin.disconnect()
        twin.loop_stop()


@pytest.mark.parametrize("protocol", [Protocol.MQTTV311, Protocol.MQTTV5])
async def test_shared_client_id_backs_off_and_reports(
    plain_broker: Mosquitto, protocol: Protocol
) -> None:
    """The link lost right after each connect backs off further each time and says why."""
    recorder = Recorder()
    connection = recorder.connection(
        config_for(plain_broker, client_id=SHARED_ID, protocol=protocol),
        backoff_min=0.2,
    )
    reports: list[tuple[bool, int]] = []
    connection.add_takeover_listener(
        lambda suspected: reports.append((suspected, connection.metrics.connects))
    )
    await connection.connect()
    try:
        with aggressive_twin(plain_broker, protocol):
            start = time.monotonic()
            await asyncio.sleep(8)
            connects = connection.metrics.connects
        # A storm (0.1-0.2 s backoff against a twin back every 0.2 s) connects 20+
        # times in 8 s; doubling delays from 0.2 s allow at most 7 after the first.
        assert 2 <= connects <= 8, connects
        assert reports
        assert reports[0][0] is True
        # mosquitto 2.0.11 just closes the socket, under MQTT 5 too (no DISCONNECT
        # 0x8E, checked with paho): three short sessions in a row tell. Brokers that
        # send 0x8E are caught at once (see the TakeoverWatch test below).
        assert reports[0][1] == 3
        assert connection.client_id == SHARED_ID
        # The twin is gone: the next session lasts, and the report is withdrawn.
        await recorder.wait_state(True, timeout=15)
        async with asyncio.timeout(15):
            while reports[-1][0]:
                await asyncio.sleep(0.2)
        assert time.monotonic() - start > 5
    finally:
        await connection.disconnect()


def test_takeover_watch_counts_short_sessions_in_a_row() -> None:
    """A long session resets the streak; a lost link without a session is ignored."""
    watch = TakeoverWatch(short=60, threshold=2)
    assert watch.lost(0x80) is False  # never connected
    watch.connected()
    assert watch.lost(0x80) is False
    watch.connected()
    assert watch.lost(0x80) is True
    assert watch.streak == 2
    watch = TakeoverWatch(short=0, threshold=2)
    watch.connected()
    assert watch.stable()
    assert watch.lost(0x80) is False
    assert watch.streak == 0
    watch.connected()
    assert watch.lost(0x8E) is True  # the reason code alone is enough
    assert not watch.stable()
