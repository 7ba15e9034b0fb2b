"""Entry setup, unload, connectivity sensor and diagnostics against real brokers."""

from __future__ import annotations

import asyncio
import logging

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest

from custom_components.cloudsync.const import DOMAIN
from tests.common import entry_for, setup_entry
from tests.mosquitto import BrokerFactory, Mosquitto, free_port
from tests.pki import Pki

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def _wait_state(hass: HomeAssistant, entity_id: str, state: str) -> None:
    async with asyncio.timeout(20):
        while (current := hass.states.get(entity_id)) is None or current.state != state:
            await asyncio.sleep(0.05)


def _connection_entity(hass: HomeAssistant, entry_id: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{entry_id}_connection"
    )
    assert entity_id is not None
    return entity_id


async def test_setup_and_unload(hass: HomeAssistant, plain_broker: Mosquitto) -> None:
    """A reachable broker loads, gets a device and a connected sensor, and unloads cleanly."""
    entry = await setup_entry(hass, entry_for(plain_broker))
    assert entry.state is ConfigEntryState.LOADED
    device = dr.async_get(hass).async_get_device({(DOMAIN, entry.entry_id)})
    assert device is not None
    assert device.name == entry.title
    entity_id = _connection_entity(hass, entry.entry_id)
    assert (
        entity_id
        == f"binary_sensor.{entry.title.replace('.', '_').replace(':', '_')}_connection"
    )
    assert hass.states.get(entity_id).state == STATE_ON
    connection = entry.runtime_data._connection
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert not connection.connected


async def test_unreachable_broker_loads_offline(hass: HomeAssistant) -> None:
    """Nothing listening: the entry loads, queues publishes and keeps reconnecting."""
    entry = entry_for_port(free_port())
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    assert not entry.runtime_data._connection.connected
    assert hass.states.get(_connection_entity(hass, entry.entry_id)).state == STATE_OFF
    result = await entry.runtime_data.async_publish(
        "app", "t", b"x", qos=1, retain=False, timeout=1
    )
    assert result.queued
    assert await hass.config_entries.async_unload(entry.entry_id)


def entry_for_port(port: int):
    """Return an entry for a port nothing listens on."""
    broker = Mosquitto("plain", port=port)
    entry = entry_for(broker)
    broker.close()
    return entry


async def test_bad_password_starts_reauth(
    hass: HomeAssistant, password_broker: Mosquitto
) -> None:
    """Refused credentials put the entry in error and start a reauth flow."""
    entry = await setup_entry(hass, entry_for(password_broker, password="wrong"))
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    assert "wrong" not in (entry.reason or "")


async def test_mutual_tls_entry_loads(
    hass: HomeAssistant, tls_broker: Mosquitto, pki: Pki
) -> None:
    """Certificates stored as PEM in the entry are used for mutual TLS."""
    entry = await setup_entry(hass, entry_for(tls_broker, pki))
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data._connection.connected


async def test_broken_certificate_is_an_error(
    hass: HomeAssistant, tls_broker: Mosquitto, pki: Pki
) -> None:
    """A stored key that does not match the certificate fails setup with a clear reason."""
    entry = await setup_entry(
        hass, entry_for(tls_broker, pki, client_key=pki.other_client_key_pem)
    )
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert "cannot be loaded" in (entry.reason or "")


async def test_connection_sensor_follows_broker(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """The connectivity sensor goes off (saying why) when the broker stops, on when back."""
    broker = broker_factory()
    entry = await setup_entry(hass, entry_for(broker))
    connection = entry.runtime_data._connection
    connection._reconnector._backoff = (0.1, 0.5)
    entity_id = _connection_entity(hass, entry.entry_id)
    assert hass.states.get(entity_id).attributes["last_error"] is None
    await broker.async_stop()
    await _wait_state(hass, entity_id, STATE_OFF)
    async with asyncio.timeout(20):  # the first reconnect attempt fails
        while not hass.states.get(entity_id).attributes["last_error"]:
            await asyncio.sleep(0.05)
    assert "refused" in hass.states.get(entity_id).attributes["last_error"]
    await broker.async_start()
    await _wait_state(hass, entity_id, STATE_ON)
    assert hass.states.get(entity_id).attributes["last_error"] is None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unload_while_reconnecting(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """Unloading while the broker is down stops the reconnect loop (nothing lingers)."""
    broker = broker_factory()
    entry = await setup_entry(hass, entry_for(broker))
    await broker.async_stop()
    entity_id = _connection_entity(hass, entry.entry_id)
    await _wait_state(hass, entity_id, STATE_OFF)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_diagnostics_redact_secrets(
    hass: HomeAssistant, password_broker: Mosquitto, hass_client
) -> None:
    """Diagnostics show state and configuration without passwords or keys."""
    from pytest_homeassistant_custom_component.components.diagnostics import (
        get_diagnostics_for_config_entry,
    )

    entry = await setup_entry(hass, entry_for(password_broker))
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    text = repr(diagnostics)
    assert password_broker.password not in text
    assert diagnostics["entry"]["data"]["password"] == "**REDACTED**"
    assert diagnostics["connection"]["connected"] is True
    assert diagnostics["connection"]["url"] == password_broker.url


async def test_diagnostics_of_failed_setup(
    hass: HomeAssistant, password_broker: Mosquitto, hass_client
) -> None:
    """An entry whose setup was refused still has diagnostics, without secrets."""
    from pytest_homeassistant_custom_component.components.diagnostics import (
        get_diagnostics_for_config_entry,
    )

    entry = await setup_entry(
        hass, entry_for(password_broker, password="wrong-secret-pw")
    )
    assert entry.state is ConfigEntryState.SETUP_ERROR
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["state"] == "setup_error"
    assert diagnostics["entry"]["data"]["password"] == "**REDACTED**"
    assert "connection" not in diagnostics
    assert "wrong-secret-pw" not in repr(diagnostics)


async def test_credentials_refused_while_running_start_reauth(
    hass: HomeAssistant,
    broker_factory: BrokerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker refusing the password on reconnect starts reauth and warns once."""
    caplog.set_level(logging.DEBUG, "custom_components.cloudsync.client.reconnect")
    broker = broker_factory("password")
    entry = await setup_entry(hass, entry_for(broker))
    assert entry.state is ConfigEntryState.LOADED
    broker.stop()
    broker.change_password("changed-on-the-broker")
    broker.start()
    async with asyncio.timeout(20):
        while not hass.config_entries.flow.async_progress_by_handler(DOMAIN):
            await asyncio.sleep(0.05)
    [flow] = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == SOURCE_REAUTH
    async with asyncio.timeout(20):  # a second refusal: still one warning
        while caplog.text.count(f"Reconnect to {broker.url} failed") < 2:
            await asyncio.sleep(0.05)
    assert caplog.text.count("refused the credentials while reconnecting") == 1
    assert "changed-on-the-broker" not in caplog.text
    state = hass.states.get(_connection_entity(hass, entry.entry_id))
    assert state.state == STATE_OFF
    assert "Not authorized" in state.attributes["last_error"]
    assert entry.data["password"] not in state.attributes["last_error"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_tls_failure_is_not_ready(
    hass: HomeAssistant, tls_broker: Mosquitto
) -> None:
    """A broker that answers but fails the TLS handshake: setup retries later."""
    entry = await setup_entry(hass, entry_for(tls_broker))  # no CA, no client cert
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert "Cannot connect" in (entry.reason or "")
