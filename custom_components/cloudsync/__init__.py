"""CloudSync: sync Home Assistant data with remote MQTT brokers."""

from __future__ import annotations

from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryError,
    ConfigEntryNotReady,
)
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType

from .broker import broker_config
from .client import (
    BrokerAuthError,
    BrokerConnection,
    CertificateError,
    CloudSyncError,
    build_ssl_context,
)
from .const import CONNECT_TIMEOUT, DOMAIN, signal_connection
from .events import async_setup_events
from .http import async_register_views
from .models import CloudSyncConfigEntry, CloudSyncData
from .registry import STORAGE_VERSION, SubscriptionRegistry, storage_key
from .services import async_setup_services

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, _config: ConfigType) -> bool:
    """Register the REST API and the actions once for all brokers."""
    async_register_views(hass)
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> bool:
    """Connect to the broker and set up its entities."""
    config = broker_config(entry.data, entry.options)
    placeholders = {"url": str(config.url)}
    try:
        ssl_context = (
            await hass.async_add_executor_job(build_ssl_context, config)
            if config.tls
            else None
        )
    except CertificateError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="invalid_certificate",
            translation_placeholders={**placeholders, "error": str(err)},
        ) from err

    @callback
    def _connection_changed(connected: bool) -> None:  # noqa: FBT001
        async_dispatcher_send(hass, signal_connection(entry.entry_id), connected)

    connection = BrokerConnection(
        config,
        executor=hass.async_add_executor_job,
        create_task=lambda coro, name: entry.async_create_background_task(
            hass, coro, name
        ),
        ssl_context=ssl_context,
        on_connection_change=_connection_changed,
        connect_timeout=CONNECT_TIMEOUT,
    )
    registry = SubscriptionRegistry(hass, entry.entry_id, connection)
    await registry.async_load()
    try:
        await connection.connect()
    except BrokerAuthError as err:
        await connection.disconnect()
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN,
            translation_key="invalid_auth",
            translation_placeholders={**placeholders, "error": str(err)},
        ) from err
    except CloudSyncError as err:
        await connection.disconnect()
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={**placeholders, "error": str(err)},
        ) from err

    entry.runtime_data = CloudSyncData(
        connection=connection, url=config.url, registry=registry
    )
    entry.async_on_unload(connection.disconnect)
    entry.async_on_unload(registry.async_flush)
    entry.async_on_unload(async_setup_events(hass, entry))

    async def _on_stop(_event: Event) -> None:
        await connection.disconnect()

    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _on_stop)
    )
    entry.async_on_unload(entry.add_update_listener(_async_reload))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> bool:
    """Unload the entities; async_on_unload closes the connection."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def _async_reload(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> None:
    """Reload the entry after its data or options changed."""
    hass.config_entries.async_schedule_reload(entry.entry_id)


async def async_remove_entry(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> None:
    """Delete the broker's stored subscriptions."""
    await Store(hass, STORAGE_VERSION, storage_key(entry.entry_id)).async_remove()
