"""The cloudsync trigger platform against a real broker."""

from __future__ import annotations

import asyncio
from typing import Any

from homeassistant.components import automation
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.cloudsync.const import EVENT_MESSAGE_RECEIVED
from tests.common import entry_for, setup_entry
from tests.mosquitto import Mosquitto, mqtt_publish

pytestmark = pytest.mark.usefixtures("socket_enabled")

FIRED = "cloudsync_test_fired"


async def _wait_for(predicate: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def _automation(hass: HomeAssistant, entry_id: str, **trigger: Any) -> None:
    """Set up one automation whose action fires FIRED with the trigger's data."""
    assert await async_setup_component(
        hass,
        automation.DOMAIN,
        {
            automation.DOMAIN: {
                "alias": "cloud",
                "triggers": {
                    "trigger": "cloudsync",
                    "config_entry_id": entry_id,
                    **trigger,
                },
                "actions": {
                    "event": FIRED,
                    "event_data": {
                        "topic": "{{ trigger.topic }}",
                        "payload": "{{ trigger.payload }}",
                        "json": (
                            "{{ trigger.payload_json.state "
                            "if trigger.payload_json is defined else '' }}"
                        ),
                        "qos": "{{ trigger.qos }}",
                        "platform": "{{ trigger.platform }}",
                    },
                },
            }
        },
    )
    await hass.async_block_till_done()


async def test_trigger_fires_on_matching_payload(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """Messages on the filter run the action when the payload matches, and only then."""
    entry = await setup_entry(hass, entry_for(plain_broker))
    fired = async_capture_events(hass, FIRED)
    received = async_capture_events(hass, EVENT_MESSAGE_RECEIVED)
    await _automation(hass, entry.entry_id, topic="cmd/#", payload="on", qos=1)
    connection = entry.runtime_data._connection
    await _wait_for(lambda: "cmd/#" in connection.subscriptions)
    await mqtt_publish(plain_broker, "cmd/porch", b"off", qos=1)
    await mqtt_publish(plain_broker, "cmd/porch", b"on", qos=1)
    await _wait_for(lambda: fired)
    await asyncio.sleep(0.2)
    assert [e.data for e in fired] == [
        {
            "topic": "cmd/porch",
            "payload": "on",
            "json": "",
            "qos": 1,
            "platform": "cloudsync",
        }
    ]
    # No app subscribed the filter: no per-message bus event, no cached data.
    assert received == []
    assert entry.runtime_data._registry.counts()["topics_with_data"] == 0


async def test_trigger_value_template(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """The value template's result is compared with the wanted payload."""
    entry = await setup_entry(hass, entry_for(plain_broker))
    fired = async_capture_events(hass, FIRED)
    await _automation(
        hass,
        entry.entry_id,
        topic="json/+",
        payload="open",
        value_template="{{ value_json.state }}",
    )
    connection = entry.runtime_data._connection
    await _wait_for(lambda: "json/+" in connection.subscriptions)
    for payload in (b'{"state": "closed"}', b"not json", b'{"state": "open"}'):
        await mqtt_publish(plain_broker, "json/door", payload, qos=1)
    await _wait_for(lambda: fired)
    await asyncio.sleep(0.2)
    assert [e.data["json"] for e in fired] == ["open"]


async def test_trigger_before_entry_loads_and_across_reload(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """An automation set up before its broker loads works once it does, and after a reload."""
    entry = entry_for(plain_broker)
    entry.add_to_hass(hass)
    fired = async_capture_events(hass, FIRED)
    await _automation(hass, entry.entry_id, topic="early/x", qos=1)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await mqtt_publish(plain_broker, "early/x", b"1", qos=1)
    await _wait_for(lambda: len(fired) == 1)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await mqtt_publish(plain_broker, "early/x", b"2", qos=1)
    await _wait_for(lambda: len(fired) == 2)
    assert [e.data["payload"] for e in fired] == [1, 2]  # templates parse numbers


async def test_removed_trigger_unsubscribes_unless_an_app_listens(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """Turning the automation off unsubscribes its filter; an app's filter stays."""
    entry = await setup_entry(hass, entry_for(plain_broker))
    broker = entry.runtime_data
    connection = broker._connection
    await _automation(hass, entry.entry_id, topic="both/#")
    await _wait_for(lambda: "both/#" in connection.subscriptions)
    await broker.async_subscribe("app", "both/#", qos=0)
    await broker.async_unsubscribe("app", "both/#")
    assert "both/#" in connection.subscriptions  # the automation still needs it
    await hass.services.async_call(
        automation.DOMAIN, "turn_off", {"entity_id": "automation.cloud"}, blocking=True
    )
    await _wait_for(lambda: "both/#" not in connection.subscriptions)
    fired = async_capture_events(hass, FIRED)
    await mqtt_publish(plain_broker, "both/a", b"x", qos=1)
    await asyncio.sleep(0.3)
    assert fired == []


async def test_invalid_trigger_config(hass: HomeAssistant) -> None:
    """A filter that is not valid MQTT is refused when the automation is validated."""
    from custom_components.cloudsync import trigger

    with pytest.raises(Exception, match="whole level"):
        trigger.TRIGGER_SCHEMA(
            {"platform": "cloudsync", "config_entry_id": "x", "topic": "a/b#"}
        )


async def test_hub_of_a_removed_entry_is_dropped(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """Removing a broker forgets its hub once no automation listens on it."""
    from custom_components.cloudsync.hub import HUBS

    entry = await setup_entry(hass, entry_for(plain_broker))
    await _automation(hass, entry.entry_id, topic="gone/#")
    assert entry.entry_id in hass.data[HUBS]
    await hass.services.async_call(
        automation.DOMAIN, "turn_off", {"entity_id": "automation.cloud"}, blocking=True
    )
    assert await hass.config_entries.async_remove(entry.entry_id)
    assert entry.entry_id not in hass.data[HUBS]
