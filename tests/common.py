"""Helpers shared by the Home Assistant tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
import uuid

from homeassistant.auth.const import GROUP_ID_USER
from homeassistant.auth.models import TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, MockUser

from custom_components.cloudsync.const import CONF_CLIENT_ID, CONF_URL, DOMAIN
from tests.mosquitto import Mosquitto
from tests.pki import Pki

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient


def entry_for(
    broker: Mosquitto,
    pki: Pki | None = None,
    *,
    options: dict[str, Any] | None = None,
    **data: Any,
) -> MockConfigEntry:
    """Return a config entry for a test broker with working credentials."""
    base: dict[str, Any] = {
        CONF_URL: broker.url,
        CONF_CLIENT_ID: f"cloudsync-test-{uuid.uuid4().hex[:8]}",
    }
    if broker.kind == "password":
        base |= {"username": broker.username, "password": broker.password}
    if broker.kind == "tls" and pki is not None:
        base |= {
            "ca_cert": pki.ca_pem,
            "client_cert": pki.client_cert_pem,
            "client_key": pki.client_key_pem,
        }
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"{broker.host}:{broker.port}",
        unique_id=broker.url,
        data=base | data,
        options=options or {},
    )


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    """Add an entry to hass and set it up."""
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def outbox_entities(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, Any]:
    """Return the registry entries of a broker's four outbox sensors, by key."""
    registry = er.async_get(hass)
    found: dict[str, Any] = {}
    for key in (
        "outbox_queued",
        "outbox_oldest_age",
        "outbox_dropped",
        "outbox_delivered",
    ):
        entity_id = registry.async_get_entity_id(
            "sensor", DOMAIN, f"{entry.entry_id}_{key}"
        )
        assert entity_id is not None
        found[key] = registry.async_get(entity_id)
    return found


async def user_client(hass: HomeAssistant, hass_client: Any) -> TestClient:
    """Return a client with a long-lived token of a new non-admin user (a service app)."""
    user = MockUser(
        name=f"app {uuid.uuid4().hex[:6]}",
        groups=[await hass.auth.async_get_group(GROUP_ID_USER)],
    ).add_to_hass(hass)
    refresh = await hass.auth.async_create_refresh_token(
        user,
        client_name=f"service app {user.id}",
        token_type=TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN,
    )
    client: TestClient = await hass_client(hass.auth.async_create_access_token(refresh))
    return client
