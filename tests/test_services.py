"""Tests for the cloudsync actions, against real mosquitto brokers."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from string import Formatter
from typing import TYPE_CHECKING, Any
from unittest.mock import patch
import uuid

from homeassistant.config_entries import ConfigEntryState
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import selector
from homeassistant.helpers.service import async_get_all_descriptions
from homeassistant.util.yaml import load_yaml_dict
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import voluptuous as vol

from custom_components.cloudsync import errors, publishing, services
from custom_components.cloudsync.const import (
    CONF_PROTOCOL,
    CONF_QOS,
    CONF_RETAIN,
    CONF_URL,
    DOMAIN,
)
from tests.common import entry_for, setup_entry
from tests.mosquitto import MqttSubscriber, mqtt_publish

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from homeassistant.core import HomeAssistant

    from tests.mosquitto import BrokerFactory, Mosquitto

pytestmark = pytest.mark.usefixtures("socket_enabled")

BINARY = b"\x00\x01\xffbinary\x89PNG\r\n"
INTEGRATION_DIR = Path(services.__file__).parent


async def _async_setup_entry(
    hass: HomeAssistant,
    broker: Mosquitto,
    *,
    options: dict[str, Any] | None = None,
    **data: Any,
) -> MockConfigEntry:
    """Set up a real broker entry connected to ``broker``."""
    entry = await setup_entry(hass, entry_for(broker, options=options, **data))
    assert entry.state is ConfigEntryState.LOADED
    return entry


@pytest.fixture
async def entry(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> AsyncGenerator[MockConfigEntry]:
    """Return a loaded entry on the session's plain broker."""
    entry = await _async_setup_entry(hass, plain_broker)
    yield entry
    await hass.config_entries.async_unload(entry.entry_id)


@pytest.fixture
def prefix() -> str:
    """Return a topic prefix no other test uses (the plain broker is shared)."""
    return f"svc/{uuid.uuid4().hex[:8]}"


async def _call(
    hass: HomeAssistant,
    service: str,
    entry: MockConfigEntry | str,
    *,
    response: bool = False,
    **data: Any,
) -> Any:
    """Call a cloudsync action on an entry and return its response."""
    entry_id = entry if isinstance(entry, str) else entry.entry_id
    return await hass.services.async_call(
        DOMAIN,
        service,
        {"config_entry_id": entry_id, **data},
        blocking=True,
        return_response=response,
    )


async def _wait_for_data(
    hass: HomeAssistant, entry: MockConfigEntry, topic: str, **data: Any
) -> dict[str, Any]:
    """Call get_data until a payload has arrived."""
    async with asyncio.timeout(5):
        while True:
            result = await _call(
                hass, "get_data", entry, response=True, topic=topic, **data
            )
            if result["payload"] is not None:
                return result  # type: ignore[no-any-return]
            await asyncio.sleep(0.02)


async def test_publish_text(
    hass: HomeAssistant, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """A text payload reaches a real subscriber; the response has the message id."""
    topic = f"{prefix}/temperature"
    async with MqttSubscriber(plain_broker, topic, qos=1) as sub:
        result = await _call(
            hass, "publish", entry, response=True, topic=topic, payload="21.5 °C", qos=1
        )
        message = await sub.message()
    assert message.payload == "21.5 °C".encode()
    assert message.qos == 1
    assert isinstance(result["mid"], int)
    assert result["mid"] > 0
    assert result == {
        "queued": False,
        "id": result["id"],
        "mid": result["mid"],
        "topic": topic,
        "qos": 1,
        "retain": False,
    }


async def test_publish_base64_binary(
    hass: HomeAssistant, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """A base64 payload (even wrapped over lines) is sent as the decoded bytes."""
    topic = f"{prefix}/image"
    encoded = base64.b64encode(BINARY).decode()
    async with MqttSubscriber(plain_broker, topic) as sub:
        result = await _call(
            hass,
            "publish",
            entry,
            topic=topic,
            payload=f"{encoded[:8]}\n{encoded[8:]}",
            encoding="base64",
        )
        assert (await sub.message()).payload == BINARY
    assert result is None


async def test_publish_defaults_from_options(
    hass: HomeAssistant, plain_broker: Mosquitto, prefix: str
) -> None:
    """QoS and retain default to the entry's options; an empty payload clears it."""
    entry = await _async_setup_entry(
        hass, plain_broker, options={CONF_QOS: 1, CONF_RETAIN: True}
    )
    topic = f"{prefix}/retained"
    result = await _call(
        hass, "publish", entry, response=True, topic=topic, payload="kept", app_id="app"
    )
    assert result["qos"] == 1
    assert result["retain"] is True
    async with MqttSubscriber(plain_broker, topic) as sub:
        message = await sub.message()
        assert (message.payload, message.retain) == (b"kept", True)
    await _call(hass, "publish", entry, topic=topic)
    async with MqttSubscriber(plain_broker, topic) as sub:
        await sub.assert_no_message(0.2)
    await hass.config_entries.async_unload(entry.entry_id)


async def test_subscribe_and_get_data(
    hass: HomeAssistant, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """A message from a real publisher comes back from get_data."""
    topic = f"{prefix}/state"
    await _call(hass, "subscribe", entry, topic=topic, qos=1)
    empty = await _call(hass, "get_data", entry, response=True, topic=topic)
    assert empty == {
        "topic": topic,
        "payload": None,
        "encoding": None,
        "received": None,
        "qos": None,
        "retained": None,
    }
    await mqtt_publish(plain_broker, topic, "on", qos=1)
    result = await _wait_for_data(hass, entry, topic)
    assert result["received"] is not None
    assert result == {
        "topic": topic,
        "payload": "on",
        "encoding": "utf-8",
        "received": result["received"],
        "qos": 1,
        "retained": False,
    }


async def test_get_data_binary_retained(
    hass: HomeAssistant, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """A retained binary message comes back base64 with its retained flag."""
    topic = f"{prefix}/blob"
    await mqtt_publish(plain_broker, topic, BINARY, qos=1, retain=True)
    try:
        await _call(hass, "subscribe", entry, topic=topic, app_id="camera")
        result = await _wait_for_data(hass, entry, topic, app_id="camera")
    finally:
        await mqtt_publish(plain_broker, topic, b"", retain=True)
    assert result["encoding"] == "base64"
    assert base64.b64decode(result["payload"]) == BINARY
    assert result["retained"] is True


async def test_wildcard_subscription(
    hass: HomeAssistant, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """Topics under a wildcard filter are readable, and the filter gives the newest."""
    await _call(hass, "subscribe", entry, topic=f"{prefix}/+/temp")
    await mqtt_publish(plain_broker, f"{prefix}/kitchen/temp", "20")
    kitchen = await _wait_for_data(hass, entry, f"{prefix}/kitchen/temp")
    assert (kitchen["topic"], kitchen["payload"]) == (f"{prefix}/kitchen/temp", "20")
    await mqtt_publish(plain_broker, f"{prefix}/hall/temp", "18")
    hall = await _wait_for_data(hass, entry, f"{prefix}/hall/temp")
    assert hall["payload"] == "18"
    newest = await _call(
        hass, "get_data", entry, response=True, topic=f"{prefix}/+/temp"
    )
    assert (newest["topic"], newest["payload"]) == (f"{prefix}/hall/temp", "18")


async def test_unsubscribe(
    hass: HomeAssistant, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """After unsubscribing the app can no longer read the topic."""
    topic = f"{prefix}/door"
    await _call(hass, "subscribe", entry, topic=topic, app_id="door")
    await mqtt_publish(plain_broker, topic, "open")
    await _wait_for_data(hass, entry, topic, app_id="door")
    await _call(hass, "unsubscribe", entry, topic=topic, app_id="door")
    assert topic not in entry.runtime_data._connection.subscriptions
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "get_data", entry, response=True, topic=topic, app_id="door")
    assert err.value.translation_key == "not_subscribed"


async def test_apps_are_separate(
    hass: HomeAssistant, entry: MockConfigEntry, prefix: str
) -> None:
    """An app cannot read a topic only another app subscribed to."""
    topic = f"{prefix}/private"
    await _call(hass, "subscribe", entry, topic=topic, app_id="a")
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "get_data", entry, response=True, topic=topic, app_id="b")
    assert err.value.translation_key == "not_subscribed"
    assert err.value.translation_placeholders["app_id"] == "b"


@pytest.mark.parametrize(
    ("service", "data", "key"),
    [
        ("publish", {"topic": "a/+/b"}, "invalid_topic"),
        ("publish", {"topic": ""}, "invalid_topic"),
        ("publish", {"topic": "a/#"}, "invalid_topic"),
        ("subscribe", {"topic": "a/#/b"}, "invalid_topic"),
        ("subscribe", {"topic": "a/b+"}, "invalid_topic"),
        ("get_data", {"topic": "a/b#"}, "invalid_topic"),
        (
            "publish",
            {"topic": "a", "payload": "no base64!", "encoding": "base64"},
            "invalid_payload",
        ),
        (
            "publish",
            {"topic": "a", "payload": "abc", "encoding": "base64"},
            "invalid_payload",
        ),
        (
            "publish",
            {"topic": "a", "payload": "é", "encoding": "base64"},
            "invalid_payload",
        ),
        ("get_data", {"topic": "never/subscribed"}, "not_subscribed"),
        ("get_data", {"topic": "never/+"}, "not_subscribed"),
        ("unsubscribe", {"topic": "never/subscribed"}, "not_subscribed"),
    ],
)
async def test_invalid_input(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    service: str,
    data: dict[str, Any],
    key: str,
) -> None:
    """Bad input raises a translated ServiceValidationError."""
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, service, entry, response=service == "get_data", **data)
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == key
    assert err.value.translation_placeholders["error"]


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("publish", {"topic": "a", "qos": 3}),
        ("publish", {"topic": "a", "encoding": "latin-1"}),
        ("subscribe", {"topic": "a", "app_id": ""}),
        ("unsubscribe", {}),
    ],
)
async def test_schema_errors(
    hass: HomeAssistant, entry: MockConfigEntry, service: str, data: dict[str, Any]
) -> None:
    """Fields of the wrong type or range fail the schema."""
    with pytest.raises(vol.Invalid):
        await _call(hass, service, entry, **data)


async def test_unusable_entries(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Unknown, foreign and not loaded entries raise translated validation errors."""
    foreign = MockConfigEntry(domain="mqtt")
    foreign.add_to_hass(hass)
    idle = MockConfigEntry(domain=DOMAIN, data={CONF_URL: "mqtt://192.0.2.1:1883"})
    idle.add_to_hass(hass)
    cases = {
        "no-such-entry": "entry_not_found",
        foreign.entry_id: "entry_not_cloudsync",
        idle.entry_id: "entry_not_loaded",
    }
    for entry_id, key in cases.items():
        for service in ("publish", "subscribe", "unsubscribe", "get_data"):
            with pytest.raises(ServiceValidationError) as err:
                await _call(
                    hass, service, entry_id, response=service == "get_data", topic="a"
                )
            assert err.value.translation_key == key
            assert err.value.translation_placeholders["config_entry_id"] == entry_id


async def test_broker_stopped(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """With the broker down a publish is queued and a subscription recorded."""
    broker = broker_factory()
    entry = await _async_setup_entry(hass, broker)
    await broker.async_stop()
    async with asyncio.timeout(5):
        while entry.runtime_data._connection.connected:
            await asyncio.sleep(0.02)
    result = await _call(hass, "publish", entry, response=True, topic="down")
    assert result == {
        "queued": True,
        "id": result["id"],
        "mid": None,
        "topic": "down",
        "qos": 1,
        "retain": False,
    }
    assert await _call(hass, "publish", entry, topic="down", qos=0) is None
    assert entry.runtime_data.outbox_stats.queued == 2
    assert await _call(hass, "subscribe", entry, topic="down") is None
    assert entry.runtime_data._connection.subscriptions["down"] == 0
    await hass.config_entries.async_unload(entry.entry_id)


async def test_publish_timeout_is_queued(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """A frozen broker never acks a QoS 1 publish: it is queued and sent later."""
    broker = broker_factory()
    entry = await _async_setup_entry(hass, broker)
    async with MqttSubscriber(broker, "frozen", qos=1) as sub:
        broker.pause()
        try:
            with patch.object(publishing, "ACK_TIMEOUT", 0.3):
                result = await _call(
                    hass, "publish", entry, response=True, topic="frozen", qos=1
                )
        finally:
            broker.resume()
        assert result["queued"] is True
        assert (await sub.message()).topic == "frozen"
    await hass.config_entries.async_unload(entry.entry_id)


async def test_payload_too_large(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """A payload over an MQTT 5 broker's packet limit: payload_too_large."""
    broker = broker_factory(extra_config=["max_packet_size 1000"])
    entry = await _async_setup_entry(hass, broker, **{CONF_PROTOCOL: "mqttv5"})
    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "publish", entry, topic="big", payload="x" * 2000)
    assert err.value.translation_key == "payload_too_large"
    await hass.config_entries.async_unload(entry.entry_id)


async def test_descriptions_and_translations(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """services.yaml loads, and every field and error key has a string."""
    descriptions = (await async_get_all_descriptions(hass))[DOMAIN]
    strings = json.loads((INTEGRATION_DIR / "strings.json").read_text(encoding="utf-8"))
    english = json.loads(
        (INTEGRATION_DIR / "translations" / "en.json").read_text(encoding="utf-8")
    )
    assert english == strings
    assert set(descriptions) == set(strings["services"])
    yaml = load_yaml_dict(str(INTEGRATION_DIR / "services.yaml"))
    for service, description in yaml.items():
        fields = description["fields"]
        assert set(fields) == set(strings["services"][service]["fields"])
        for field in fields.values():
            selector.validate_selector(field["selector"])
    provided = {*services._PLACEHOLDER_FIELDS, "error"}
    for key in {kind.translation_key for kind in errors.ERRORS.values()}:
        message = strings["exceptions"][key]["message"]
        assert {
            name for _, name, _, _ in Formatter().parse(message) if name
        } <= provided


async def test_subscribe_with_sensor_options(
    hass: HomeAssistant, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """The subscribe action's value template, unit and device class shape the sensor."""
    topic = f"{prefix}/climate"
    await _call(
        hass,
        "subscribe",
        entry,
        topic=topic,
        value_template="{{ value_json.t | round(1) }}",
        unit_of_measurement="°C",
        device_class="temperature",
    )
    await hass.async_block_till_done()
    entity_id = next(
        state.entity_id
        for state in hass.states.async_all("sensor")
        if state.attributes.get("friendly_name", "").endswith(topic)
    )
    await mqtt_publish(plain_broker, topic, '{"t": 21.456}', qos=1)
    async with asyncio.timeout(10):
        while hass.states.get(entity_id).state != "21.5":
            await asyncio.sleep(0.02)
    state = hass.states.get(entity_id)
    assert state.attributes["unit_of_measurement"] == "°C"
    assert state.attributes["device_class"] == "temperature"
    stored = entry.runtime_data.subscriptions[topic].sensor
    assert stored.value_template == "{{ value_json.t | round(1) }}"


@pytest.mark.parametrize(
    "bad",
    [{"value_template": "{{ value_json.t "}, {"device_class": "no_such_class"}],
)
async def test_subscribe_rejects_bad_sensor_options(
    hass: HomeAssistant, entry: MockConfigEntry, prefix: str, bad: dict[str, str]
) -> None:
    """A broken template or an unknown device class is refused before subscribing."""
    with pytest.raises(vol.Invalid):
        await _call(hass, "subscribe", entry, topic=f"{prefix}/bad", **bad)
    assert f"{prefix}/bad" not in entry.runtime_data.subscriptions


async def test_retained_burst_right_behind_suback(
    hass: HomeAssistant, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """Retained messages the broker sends with the SUBACK are all kept for the app."""
    topics = [f"{prefix}/ret/{i}" for i in range(50)]
    for topic in topics:
        await mqtt_publish(plain_broker, topic, topic, qos=1, retain=True)
    try:
        await _call(hass, "subscribe", entry, topic=f"{prefix}/ret/#", app_id="late")
        got = [
            (await _wait_for_data(hass, entry, topic, app_id="late"))["payload"]
            for topic in topics
        ]
    finally:
        for topic in topics:
            await mqtt_publish(plain_broker, topic, b"", retain=True)
    assert got == topics


async def test_device_class_choices_are_numeric_and_named(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """The subscribe action offers only classes of numbers, each with a label."""
    services_yaml = await hass.async_add_executor_job(
        load_yaml_dict, str(INTEGRATION_DIR / "services.yaml")
    )
    select = services_yaml["subscribe"]["fields"]["device_class"]["selector"]["select"]
    strings = json.loads((INTEGRATION_DIR / "strings.json").read_text(encoding="utf-8"))
    labels = strings["selector"][select["translation_key"]]["options"]
    assert select["sort"] is True
    assert not {"date", "enum", "timestamp"} & set(select["options"])
    assert set(select["options"]) == set(labels)
    assert "temperature" in labels
    with pytest.raises(vol.Invalid):
        await _call(hass, "subscribe", entry, topic="t", device_class="timestamp")
