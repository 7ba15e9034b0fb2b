"""The mirror's subentry flow: adding and changing a broker's mirror in the UI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.cloudsync.const import DOMAIN
from custom_components.cloudsync.mirror_config import SUBENTRY_MIRROR
from tests.common import entry_for, setup_entry
from tests.mosquitto import MqttSubscriber

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.usefixtures("socket_enabled")

VALID = {
    "base_topic": "flat/home",
    "include_globs": ["sensor.*"],
    "payload": "state",
    "topic_template": "{base}/{domain}/{object_id}/state",
    "qos": "1",
    "retain": True,
    "min_interval": 0,
    "latest_only": False,
}


async def _start(hass: HomeAssistant, entry: MockConfigEntry, **context: Any) -> Any:
    return await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_MIRROR), context={"source": SOURCE_USER, **context}
    )


async def _configure(hass: HomeAssistant, flow_id: str, **changes: Any) -> Any:
    return await hass.config_entries.subentries.async_configure(
        flow_id, {**VALID, **changes}
    )


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"include_globs": []}, {"base": "nothing_selected"}),
        ({"base_topic": "home/+"}, {"base_topic": "invalid_base_topic"}),
        ({"base_topic": "home/"}, {"base_topic": "invalid_base_topic"}),
        (
            {"topic_template": "{base}/{room}"},
            {"topic_template": "invalid_topic_template"},
        ),
        (
            {"topic_template": "{base}/all"},
            {"topic_template": "invalid_topic_template"},
        ),
        (
            {"topic_template": "{base}/{object_id"},
            {"topic_template": "invalid_topic_template"},
        ),
        ({"include_domains": ["Sensor!"]}, {"include_domains": "invalid_domain"}),
    ],
)
async def test_form_refuses_what_cannot_work(
    hass: HomeAssistant,
    plain_broker: Mosquitto,
    changes: dict[str, Any],
    errors: dict[str, str],
) -> None:
    """Each mistake is named on its field; nothing is stored."""
    entry = entry_for(plain_broker)
    entry.add_to_hass(hass)
    result = await _start(hass, entry)
    assert result["type"] is FlowResultType.FORM
    result = await _configure(hass, result["flow_id"], **changes)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    # The detail of a field's mistake is shown; the banner says it all for the rest.
    assert bool(result["description_placeholders"]["error"]) == ("base" not in errors)
    assert not entry.subentries
    # Shown again as the user gave it; QoS as the select offers it (text, not 1).
    qos = next(key for key in result["data_schema"].schema if str(key) == "qos")
    assert qos.description["suggested_value"] == "1"


async def test_aws_profile_refuses_qos_2(hass: HomeAssistant) -> None:
    """A hosted broker's limits apply to the mirror too (AWS IoT Core: QoS 0 and 1)."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        data={"url": "mqtts://example.iot.eu-west-1.amazonaws.com:8883"}
        | {"profile": "aws_iot_core", "client_id": "x"},
    )
    entry.add_to_hass(hass)
    result = await _start(hass, entry)
    result = await _configure(hass, result["flow_id"], qos="2")
    assert result["errors"] == {"base": "profile_limit"}
    assert "QoS 0 and 1" in result["description_placeholders"]["error"]


async def test_add_then_change_the_mirror(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """Adding starts mirroring at once; a second mirror is refused; a change applies."""
    hass.states.async_set("sensor.flow_test", "7")
    entry = await setup_entry(hass, entry_for(plain_broker))
    assert entry.runtime_data.mirror is None

    result = await _start(hass, entry)
    domains = result["data_schema"].schema["include_domains"].config["options"]
    assert "sensor" in domains
    async with MqttSubscriber(plain_broker, "flat/home/sensor/flow_test/#") as sub:
        result = await _configure(hass, result["flow_id"])
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["title"] == "Mirror to flat/home"
        await hass.async_block_till_done()
        assert (await sub.message()).payload == b"7"
    (subentry,) = entry.subentries.values()
    assert subentry.data["exclude_attributes"] == []  # emptied in the form
    mirror = entry.runtime_data.mirror
    assert mirror is not None
    assert mirror.config.qos == 1

    again = await _start(hass, entry)
    assert again["type"] is FlowResultType.ABORT
    assert again["reason"] == "mirror_exists"

    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_MIRROR),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
    )
    assert result["type"] is FlowResultType.FORM
    schema = result["data_schema"].schema
    suggested = {
        str(key): key.description["suggested_value"]
        for key in schema
        if key.description and "suggested_value" in key.description
    }
    assert suggested["base_topic"] == "flat/home"
    assert suggested["qos"] == "1"  # as the select offers it
    async with MqttSubscriber(plain_broker, "flat/cloud/#") as sub:
        result = await _configure(
            hass, result["flow_id"], base_topic="flat/cloud", payload="json"
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reconfigure_successful"
        await hass.async_block_till_done()
        got = await sub.messages(2)
    assert got[0].payload == b"online"
    assert got[1].topic == "flat/cloud/sensor/flow_test/state"
    assert got[1].payload.startswith(b'{"state":"7"')
    mirror = entry.runtime_data.mirror
    assert mirror is not None
    assert mirror.config.base_topic == "flat/cloud"
