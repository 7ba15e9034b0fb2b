"""BrokerConnection and Outbox against RabbitMQ's MQTT plugin (a second real broker)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from custom_components.cloudsync.client import Outbox
from tests.rabbitmq import RabbitMQ

from .helpers import Recorder, config_for


async def _connected(broker: RabbitMQ, recorder: Recorder | None = None):
    connection = (recorder or Recorder()).connection(config_for(broker))  # type: ignore[arg-type]
    await connection.connect()
    return connection


def test_rabbitmq_starts_fast_enough(rabbitmq_broker: RabbitMQ) -> None:
    """The session node's MQTT listener opened well within the CI budget."""
    assert rabbitmq_broker.start_seconds is not None
    assert rabbitmq_broker.start_seconds < 60


@pytest.mark.parametrize("qos", [0, 1])
async def test_publish_subscribe(rabbitmq_broker: RabbitMQ, qos: int) -> None:
    """QoS 0 and 1 round trips through RabbitMQ."""
    recorder = Recorder()
    connection = await _connected(rabbitmq_broker, recorder)
    try:
        assert await connection.subscribe(f"rmq/q{qos}/#", qos) == qos
        await connection.publish(f"rmq/q{qos}/a", b"\x00payload", qos)
        message = await recorder.next_message()
    finally:
        await connection.disconnect()
    assert (message.topic, message.payload, message.qos) == (
        f"rmq/q{qos}/a",
        b"\x00payload",
        qos,
    )


async def test_qos2_is_downgraded_to_qos1(rabbitmq_broker: RabbitMQ) -> None:
    """RabbitMQ grants QoS 1 for a QoS 2 subscription and delivers a QoS 2 publish at 1."""
    recorder = Recorder()
    connection = await _connected(rabbitmq_broker, recorder)
    try:
        assert await connection.subscribe("rmq/two", 2) == 1
        await connection.publish("rmq/two", b"2", 2)  # acknowledged (PUBCOMP)
        message = await recorder.next_message()
    finally:
        await connection.disconnect()
    assert message.qos == 1


async def test_slash_and_dot_are_the_same_separator(rabbitmq_broker: RabbitMQ) -> None:
    """RabbitMQ maps / to . (AMQP routing keys): x.y and x/y are one topic."""
    recorder = Recorder()
    connection = await _connected(rabbitmq_broker, recorder)
    try:
        await connection.subscribe("rmq.dot", 1)
        await connection.publish("rmq.dot", b"dot", 1)
        await connection.publish("rmq/dot", b"slash", 1)
        first = await recorder.next_message()
        second = await recorder.next_message()
    finally:
        await connection.disconnect()
    assert {first.payload, second.payload} == {b"dot", b"slash"}
    assert first.topic == second.topic == "rmq/dot"


async def test_retained_only_for_exact_topics(rabbitmq_broker: RabbitMQ) -> None:
    """A retained message reaches a later exact subscription, not a wildcard one."""
    publisher = await _connected(rabbitmq_broker)
    await publisher.publish("rmq/kept/t", b"kept", 1, retain=True)
    await publisher.disconnect()
    recorder = Recorder()
    connection = await _connected(rabbitmq_broker, recorder)
    try:
        await connection.subscribe("rmq/kept/#", 1)
        with pytest.raises(TimeoutError):
            await recorder.next_message(timeout=1)
        await connection.subscribe("rmq/kept/t", 1)
        message = await recorder.next_message()
    finally:
        await connection.disconnect()
    assert (message.payload, message.retain) == (b"kept", True)


async def test_reconnect_resubscribes(rabbitmq_broker: RabbitMQ) -> None:
    """After a dropped link the filter is subscribed again and messages flow."""
    recorder = Recorder()
    connection = await _connected(rabbitmq_broker, recorder)
    publisher = await _connected(rabbitmq_broker)
    try:
        await connection.subscribe("rmq/again", 1)
        connection.reconnect("test: drop the link")
        await recorder.wait_state(False)
        await recorder.wait_state(True)
        await publisher.publish("rmq/again", b"after", 1)
        message = await recorder.next_message()
    finally:
        await connection.disconnect()
        await publisher.disconnect()
    assert message.payload == b"after"
    assert connection.metrics.reconnects == 1


async def test_outbox_drains_into_rabbitmq(
    rabbitmq_broker: RabbitMQ, tmp_path: Path
) -> None:
    """Messages queued while offline drain in order once connected."""
    recorder = Recorder()
    subscriber = await _connected(rabbitmq_broker, recorder)
    await subscriber.subscribe("rmq/outbox/#", 1)
    connection = Recorder().connection(config_for(rabbitmq_broker))  # type: ignore[arg-type]
    outbox = Outbox(connection, tmp_path / "outbox.db")
    try:
        await outbox.open()
        for index in range(20):
            assert (await outbox.publish(f"rmq/outbox/{index}", b"q", 1)).queued
        await connection.connect()
        topics = [(await recorder.next_message()).topic for _ in range(20)]
        async with asyncio.timeout(5):
            while outbox.stats.queued:
                await asyncio.sleep(0.05)
    finally:
        await connection.disconnect()
        await outbox.close()
        await subscriber.disconnect()
    assert topics == [f"rmq/outbox/{index}" for index in range(20)]
