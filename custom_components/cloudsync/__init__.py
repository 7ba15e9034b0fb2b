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
    BrokerTimeoutError,
    BrokerUnreachableError,
    CertificateError,
    CloudSyncError,
    NotConnectedError,
    Outbox,
    build_ssl_context,
)
from .const import (
    CONF_PROTOCOL,
    CONNECT_TIMEOUT,
    DOMAIN,
    ENTRY_MINOR_VERSION,
    ENTRY_VERSION,
    LEGACY_PROTOCOLS,
    LOGGER,
    signal_connection,
)
from .entity import broker_device_info
from .events import async_setup_events
from .http import async_register_views
from .models import CloudSyncConfigEntry, CloudSyncData
from .outbox import async_open_outbox, async_remove_outbox, outbox_limits
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

    try:
        limits = outbox_limits(entry.options)
    except ValueError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="invalid_outbox_options",
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
    outbox = await async_open_outbox(hass, entry, connection, limits)

    async def _async_shutdown(_event: Event | None = None) -> None:
        await _async_close(connection, outbox)

    # Registered first: HA runs it also when the setup fails below.
    entry.async_on_unload(_async_shutdown)
    registry = SubscriptionRegistry(hass, entry.entry_id, connection, outbox)
    await registry.async_load()
    try:
        await connection.connect()
    except BrokerAuthError as err:
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN,
            translation_key="invalid_auth",
            translation_placeholders={**placeholders, "error": str(err)},
        ) from err
    except (BrokerUnreachableError, BrokerTimeoutError, NotConnectedError) as err:
        # Publishes are queued in the outbox until the broker is back.
        LOGGER.warning(
            "Cannot reach %s yet, retrying in the background: %s", config.url, err
        )
        connection.start_reconnecting()
    except CloudSyncError as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={**placeholders, "error": str(err)},
        ) from err

    entry.runtime_data = CloudSyncData(
        connection=connection,
        url=config.url,
        registry=registry,
        outbox=outbox,
        device_info=broker_device_info(entry, config.url),
    )
    entry.async_on_unload(registry.async_flush)
    entry.async_on_unload(async_setup_events(hass, entry))
    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _async_shutdown)
    )
    entry.async_on_unload(entry.add_update_listener(_async_reload))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def _async_close(connection: BrokerConnection, outbox: Outbox) -> None:
    """Stop taking publishes, close the link (in-flight ones get queued), close the file."""
    outbox.stop_accepting()
    await connection.disconnect()
    await outbox.close()


async def async_unload_entry(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> bool:
    """Unload the entities; async_on_unload closes the connection."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def _async_reload(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> None:
    """Reload the entry after its data or options changed."""
    hass.config_entries.async_schedule_reload(entry.entry_id)


async def async_migrate_entry(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> bool:
    """Rewrite the data of an older entry; refuse entries of a newer major version."""
    if entry.version > ENTRY_VERSION:
        return False
    if entry.minor_version < ENTRY_MINOR_VERSION:
        data = dict(entry.data)
        if (protocol := data.get(CONF_PROTOCOL)) in LEGACY_PROTOCOLS:
            data[CONF_PROTOCOL] = LEGACY_PROTOCOLS[protocol]
        hass.config_entries.async_update_entry(
            entry, data=data, minor_version=ENTRY_MINOR_VERSION
        )
    return True


async def async_remove_entry(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> None:
    """Delete the broker's stored subscriptions and its outbox."""
    await Store(hass, STORAGE_VERSION, storage_key(entry.entry_id)).async_remove()
    await async_remove_outbox(hass, entry.entry_id)
