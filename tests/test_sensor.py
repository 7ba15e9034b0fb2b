"""Topic sensors and the message event against a real broker."""

from __future__ import annotations

import asyncio
from typing import Any

from homeassistant.const import EVENT_STATE_CHANGED, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events
from syrupy.assertion import SnapshotAssertion

from custom_components.cloudsync.const import DOMAIN, EVENT_MESSAGE_RECEIVED
from custom_components.cloudsync.registry import SensorOptions
from tests.common import entry_for, outbox_entities, setup_entry
from tests.mosquitto import BrokerFactory, Mosquitto, mqtt_publish

pytestmark = pytest.mark.usefixtures("socket_enabled")


def _sensor_id(hass: HomeAssistant, entry_id: str, topic_filter: str) -> str | None:
    return er.async_get(hass).async_get_entity_id(
        "sensor", DOMAIN, f"{entry_id}_topic_{topic_filter}"
    )


async def _wait_for(predicate: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def _subscribed_sensor(
    hass: HomeAssistant, entry: Any, topic_filter: str, **kwargs: Any
) -> str:
    broker = entry.runtime_data
    await broker.async_subscribe("app1", topic_filter, qos=1, **kwargs)
    await hass.async_block_till_done()
    entity_id = _sensor_id(hass, entry.entry_id, topic_filter)
    assert entity_id is not None
    return entity_id


async def _publish_and_wait(
    hass: HomeAssistant, broker: Mosquitto, entity_id: str, topic: str, payload: bytes
) -> Any:
    before = hass.states.get(entity_id)
    await mqtt_publish(broker, topic, payload, qos=1)
    await _wait_for(lambda: hass.states.get(entity_id) != before)
    return hass.states.get(entity_id)


async def test_sensor_created_updated_and_removed(
    hass: HomeAssistant, plain_broker: Mosquitto, snapshot: SnapshotAssertion
) -> None:
    """Subscribing creates a sensor on the broker's device; messages update it."""
    entry = await setup_entry(
        hass, entry_for(plain_broker, options={"state_interval": 0})
    )
    entity_id = await _subscribed_sensor(hass, entry, "sensors/+/temp")
    assert entity_id == f"sensor.127_0_0_1_{plain_broker.port}_topic_sensors_any_temp"
    entity = er.async_get(hass).async_get(entity_id)
    assert entity is not None
    assert entity.device_id is not None
    state = await _publish_and_wait(
        hass, plain_broker, entity_id, "sensors/kitchen/temp", b"21.5"
    )
    assert state.state == "21.5"
    attributes = dict(state.attributes)
    assert attributes.pop("received")
    name = attributes["friendly_name"].replace(str(plain_broker.port), "<port>")
    attributes["friendly_name"] = name
    assert {"state": state.state, "attributes": attributes} == snapshot

    await entry.runtime_data.async_unsubscribe("app1", "sensors/+/temp")
    await hass.async_block_till_done()
    assert hass.states.get(entity_id) is None
    assert _sensor_id(hass, entry.entry_id, "sensors/+/temp") is None


async def test_wildcards_keep_entity_ids_apart(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """`demo`, `demo/#` and `demo/+` get their own entity ids; names keep the filter."""
    entry = await setup_entry(hass, entry_for(plain_broker))
    ids = {
        topic_filter: await _subscribed_sensor(hass, entry, topic_filter)
        for topic_filter in ("demo", "demo/#", "demo/+")
    }
    prefix = f"sensor.127_0_0_1_{plain_broker.port}_topic_demo"
    assert ids == {"demo": prefix, "demo/#": f"{prefix}_all", "demo/+": f"{prefix}_any"}
    name = hass.states.get(ids["demo/#"]).attributes["friendly_name"]
    assert name == f"127.0.0.1:{plain_broker.port} Topic demo/#"


async def test_long_payload_truncated(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """A payload over 255 characters is cut and flagged."""
    entry = await setup_entry(
        hass, entry_for(plain_broker, options={"state_interval": 0})
    )
    entity_id = await _subscribed_sensor(hass, entry, "long/text")
    text = "é" + "x" * 400
    state = await _publish_and_wait(
        hass, plain_broker, entity_id, "long/text", text.encode()
    )
    assert state.state == text[:255]
    assert state.attributes["truncated"] is True
    assert state.attributes["payload_length"] == len(text.encode())


async def test_binary_payload_described(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """Binary payloads show size and media type instead of bytes."""
    entry = await setup_entry(
        hass, entry_for(plain_broker, options={"state_interval": 0})
    )
    entity_id = await _subscribed_sensor(hass, entry, "camera/snapshot")
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    state = await _publish_and_wait(
        hass, plain_broker, entity_id, "camera/snapshot", image
    )
    assert state.state == f"binary, {len(image)} bytes"
    assert state.attributes["payload_type"] == "image/png"


async def test_value_template_unit_and_device_class(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """A value template extracts a number from JSON; unit and device class apply."""
    entry = await setup_entry(
        hass, entry_for(plain_broker, options={"state_interval": 0})
    )
    options = SensorOptions("{{ value_json.temp }}", "°C", "temperature")
    entity_id = await _subscribed_sensor(hass, entry, "json/room", sensor=options)
    state = await _publish_and_wait(
        hass, plain_broker, entity_id, "json/room", b'{"temp": 19.25, "hum": 40}'
    )
    assert float(state.state) == 19.25
    assert state.attributes["unit_of_measurement"] == "°C"
    assert state.attributes["device_class"] == "temperature"
    state = await _publish_and_wait(
        hass, plain_broker, entity_id, "json/room", b'{"hum": 41}'
    )
    assert state.state == "unknown"
    assert "not a number" in state.attributes["value_error"]


async def test_burst_is_coalesced(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """5,000 messages in a burst make a bounded number of state writes; the last wins."""
    # mosquitto drops QoS 1 messages beyond 1,000 queued for a subscriber that lags
    # a C publisher; this test is about Home Assistant's side, so lift that cap.
    broker = broker_factory(extra_config=["max_queued_messages 0"])
    entry = await setup_entry(
        hass,
        entry_for(broker, options={"state_interval": 0.5, "message_events": True}),
    )
    entity_id = await _subscribed_sensor(hass, entry, "burst/topic")
    received = async_capture_events(hass, EVENT_MESSAGE_RECEIVED)
    changes = async_capture_events(hass, EVENT_STATE_CHANGED)
    lines = "\n".join(str(i) for i in range(5000)) + "\n"
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub",
        *broker.cli_args(),
        "-t",
        "burst/topic",
        "-q",
        "1",
        "-l",
        stdin=asyncio.subprocess.PIPE,
    )
    await proc.communicate(lines.encode())
    assert proc.returncode == 0
    await _wait_for(lambda: len(received) == 5000, timeout=30)
    await _wait_for(lambda: hass.states.get(entity_id).state == "4999", timeout=5)
    writes = [e for e in changes if e.data["entity_id"] == entity_id]
    elapsed = (writes[-1].time_fired - writes[0].time_fired).total_seconds()
    assert len(writes) <= 2 + elapsed / 0.5  # at most one per interval
    assert len(writes) < 50
    assert entry.runtime_data.latest("app1", "burst/topic").payload == b"4999"
    assert [e.data["payload"] for e in received[-3:]] == ["4997", "4998", "4999"]


async def test_event_fields(hass: HomeAssistant, plain_broker: Mosquitto) -> None:
    """With the option on, each message fires cloudsync_message_received."""
    entry = await setup_entry(
        hass, entry_for(plain_broker, options={"message_events": True})
    )
    await entry.runtime_data.async_subscribe("app1", "events/#", qos=1)
    events = async_capture_events(hass, EVENT_MESSAGE_RECEIVED)
    await mqtt_publish(plain_broker, "events/a", b"\xff\x00", qos=1)
    await mqtt_publish(plain_broker, "events/b", b"text", qos=1)
    await _wait_for(lambda: len(events) == 2)
    assert events[0].data == {
        "entry_id": entry.entry_id,
        "broker": plain_broker.url,
        "topic": "events/a",
        "payload": "/wA=",
        "encoding": "base64",
        "qos": 1,
        "retained": False,
    }
    assert events[1].data["payload"] == "text"
    assert events[1].data["encoding"] == "utf-8"


async def test_unavailable_while_disconnected_and_restored(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """The sensor is unavailable while the broker is down and restored after a restart."""
    broker = broker_factory()
    entry = await setup_entry(hass, entry_for(broker, options={"state_interval": 0}))
    connection = entry.runtime_data._connection
    connection._reconnector._backoff = (0.1, 0.3)
    entity_id = await _subscribed_sensor(hass, entry, "restore/me")
    await _publish_and_wait(hass, broker, entity_id, "restore/me", b"kept value")

    await broker.async_stop()
    await _wait_for(lambda: hass.states.get(entity_id).state == STATE_UNAVAILABLE)

    assert await hass.config_entries.async_unload(entry.entry_id)
    await broker.async_start()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state.state == "kept value"
    assert state.attributes["topic"] == "restore/me"
    assert state.attributes["apps"] == ["app1"]
    await _publish_and_wait(hass, broker, entity_id, "restore/me", b"new value")
    assert hass.states.get(entity_id).state == "new value"


async def test_topic_sensors_can_be_turned_off(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """With topic sensors off, subscriptions and events work but no sensor is made."""
    entry = await setup_entry(
        hass,
        entry_for(
            plain_broker, options={"topic_sensors": False, "message_events": True}
        ),
    )
    events = async_capture_events(hass, EVENT_MESSAGE_RECEIVED)
    await entry.runtime_data.async_subscribe("app1", "nosensor/#", qos=1)
    await hass.async_block_till_done()
    assert _sensor_id(hass, entry.entry_id, "nosensor/#") is None
    await mqtt_publish(plain_broker, "nosensor/a", b"v", qos=1)
    await _wait_for(lambda: len(events) == 1)
    assert entry.runtime_data.latest("app1", "nosensor/a").payload == b"v"


async def test_outbox_counters_disabled_by_default(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """Queued and oldest age are on; the dropped and delivered totals start disabled."""
    entry = await setup_entry(hass, entry_for(plain_broker))
    disabled_by = {}
    for key, entity in outbox_entities(hass, entry).items():
        disabled_by[key] = entity.disabled_by
        state = hass.states.get(entity.entity_id)
        assert (state is None) is (entity.disabled_by is not None)
    assert disabled_by == {
        "outbox_queued": None,
        "outbox_oldest_age": None,
        "outbox_dropped": er.RegistryEntryDisabler.INTEGRATION,
        "outbox_delivered": er.RegistryEntryDisabler.INTEGRATION,
    }
