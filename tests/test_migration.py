"""Config entries stored by older versions keep working after an upgrade."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.cloudsync.client import Protocol
from custom_components.cloudsync.const import CONF_PROFILE, CONF_PROTOCOL, DOMAIN
from tests.common import entry_for, setup_entry
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.mark.parametrize(
    ("stored", "migrated"),
    [("3.1.1", Protocol.MQTTV311), ("5", Protocol.MQTTV5), (None, None)],
)
async def test_entry_1_1_gets_protocol_translation_keys(
    hass: HomeAssistant,
    plain_broker: Mosquitto,
    stored: str | None,
    migrated: Protocol | None,
) -> None:
    """1.1 stored "3.1.1"/"5": the entry is rewritten to 1.2 and connects with it."""
    data = {CONF_PROTOCOL: stored} if stored else {}
    entry = entry_for(plain_broker, **data)
    assert (entry.version, entry.minor_version) == (1, 1)
    await setup_entry(hass, entry)

    assert entry.state is ConfigEntryState.LOADED
    assert (entry.version, entry.minor_version) == (1, 3)
    assert entry.data.get(CONF_PROTOCOL) == migrated
    assert entry.data[CONF_PROFILE] == "generic"
    connection = entry.runtime_data._connection
    assert connection.connected
    assert connection.config.protocol is (migrated or Protocol.MQTTV311)


async def test_entry_of_a_newer_major_version_is_refused(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """A downgrade must not load data written by a future version."""
    stored = entry_for(plain_broker, **{CONF_PROTOCOL: "mqttv5"})
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=stored.unique_id, data=stored.data, version=2
    )
    await setup_entry(hass, entry)

    assert entry.state is ConfigEntryState.MIGRATION_ERROR
    assert entry.data[CONF_PROTOCOL] == "mqttv5"


async def test_entry_1_2_gets_the_generic_profile(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """1.2 had no broker profile: the entry becomes 1.3 with "generic" (no limits)."""
    stored = entry_for(plain_broker, **{CONF_PROTOCOL: "mqttv5"})
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=stored.unique_id,
        data=stored.data,
        version=1,
        minor_version=2,
    )
    await setup_entry(hass, entry)

    assert entry.state is ConfigEntryState.LOADED
    assert entry.minor_version == 3
    assert entry.data[CONF_PROFILE] == "generic"
    assert entry.data[CONF_PROTOCOL] == "mqttv5"
    assert entry.runtime_data._connection.config.profile.name == "MQTT"
