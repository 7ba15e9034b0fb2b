"""CloudSync: sync Home Assistant data with remote MQTT brokers."""

from __future__ import annotations

from dataclasses import replace

from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType

from .broker import CloudSyncBroker
from .cache import cache_limits
from .client import (
    BrokerAuthError,
    BrokerConfig,
    BrokerConnection,
    BrokerTimeoutError,
    BrokerUnreachableError,
    CertificateError,
    CloudSyncError,
    NotConnectedError,
    Profile,
    build_ssl_context,
)
from .const import (
    CONF_MESSAGE_EVENTS,
    CONF_PROFILE,
    CONF_PROTOCOL,
    CONNECT_TIMEOUT,
    DEFAULT_MESSAGE_EVENTS,
    DOMAIN,
    ENTRY_MINOR_VERSION,
    ENTRY_VERSION,
    LEGACY_PROTOCOLS,
    LOGGER,
)
from .entity import broker_device_info
from .entry_data import broker_config
from .errors import as_setup_error
from .events import async_setup_events
from .http import async_register_views
from .hub import async_drop_hub, async_get_hub
from .lifecycle import (
    async_certificate_expiry,
    async_watch_certificates,
    async_watch_takeover,
)
from .lookup import async_setup_lookup
from .mirror import Mirror
from .mirror_config import MirrorConfig, MirrorConfigError, mirror_config, mirror_data
from .models import CloudSyncConfigEntry, entry_task_factory
from .outbox import async_open_outbox, async_remove_outbox, outbox_limits
from .registry import STORAGE_VERSION, SubscriptionRegistry, storage_key
from .services import async_setup_services
from .websocket import async_setup_websocket

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, _config: ConfigType) -> bool:
    """Register the REST API, the actions and the websocket commands once."""
    async_setup_lookup(hass)
    async_register_views(hass)
    async_setup_services(hass)
    async_setup_websocket(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> bool:
    """Connect to the broker and set up its entities."""
    config = broker_config(entry.data, entry.options)
    url = str(config.url)
    if (mirror_settings := _mirror_settings(entry, config)) is not None:
        # The broker says "offline" on the mirror's status topic if the link is lost.
        config = replace(config, will=mirror_settings.will)
    try:
        ssl_context = (
            await hass.async_add_executor_job(build_ssl_context, config)
            if config.tls
            else None
        )
    except CertificateError as err:
        raise as_setup_error(err, url) from err
    try:
        limits = outbox_limits(entry.options)
    except ValueError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="invalid_outbox_options",
            translation_placeholders={"url": url, "error": str(err)},
        ) from err

    connection = BrokerConnection(
        config,
        executor=hass.async_add_executor_job,
        create_task=entry_task_factory(hass, entry),
        ssl_context=ssl_context,
        connect_timeout=CONNECT_TIMEOUT,
    )
    outbox = await async_open_outbox(hass, entry, connection, limits)
    broker = CloudSyncBroker(
        hass,
        entry.entry_id,
        entry.options,
        connection,
        outbox,
        SubscriptionRegistry(hass, entry.entry_id, cache_limits(entry.options)),
        broker_device_info(entry, config.url),
        async_get_hub(hass, entry.entry_id),
    )

    async def _async_shutdown(_event: Event | None = None) -> None:
        if broker.mirror is not None:
            await broker.mirror.async_stop()  # its last states and "offline" first
        await broker.async_close()

    # Registered first: HA runs it also when the setup fails below.
    entry.async_on_unload(_async_shutdown)
    if config.tls:
        # Before connecting: a broker refusing an expired certificate still tells why.
        broker.certificate_expiry = await async_certificate_expiry(hass, entry.data)
        entry.async_on_unload(
            async_watch_certificates(hass, entry, broker.certificate_expiry)
        )
    entry.async_on_unload(async_watch_takeover(hass, entry, connection))
    await broker.async_start()
    try:
        await connection.connect()
    except (BrokerUnreachableError, BrokerTimeoutError, NotConnectedError) as err:
        # Publishes are queued in the outbox until the broker is back.
        LOGGER.warning(
            "Cannot reach %s yet, retrying in the background: %s", config.url, err
        )
        connection.start_reconnecting()
    except CloudSyncError as err:
        raise as_setup_error(err, url) from err

    entry.runtime_data = broker
    entry.async_on_unload(_async_reauth_on_refusal(hass, entry, connection))
    entry.async_on_unload(broker.async_flush)
    if entry.options.get(CONF_MESSAGE_EVENTS, DEFAULT_MESSAGE_EVENTS):
        entry.async_on_unload(async_setup_events(hass, entry))
    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _async_shutdown)
    )
    entry.async_on_unload(entry.add_update_listener(_async_reload))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    if mirror_settings is not None:
        broker.mirror = Mirror(
            hass,
            broker,
            mirror_settings,
            lambda coro, name: entry.async_create_task(
                hass, coro, name, eager_start=False
            ),
        )
        broker.mirror.async_start()
    return True


def _mirror_settings(
    entry: CloudSyncConfigEntry, config: BrokerConfig
) -> MirrorConfig | None:
    """Return the entry's checked mirror, None without one; refuse a broken one."""
    if (data := mirror_data(entry.subentries)) is None:
        return None
    try:
        return mirror_config(data, config.profile)
    except MirrorConfigError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="invalid_mirror",
            translation_placeholders={"url": str(config.url), "error": str(err)},
        ) from err


@callback
def _async_reauth_on_refusal(
    hass: HomeAssistant, entry: CloudSyncConfigEntry, connection: BrokerConnection
) -> CALLBACK_TYPE:
    """Start re-authentication when the broker refuses the credentials on reconnect."""
    warned = False

    @callback
    def _failed(err: CloudSyncError) -> None:
        nonlocal warned
        if not isinstance(err, BrokerAuthError):
            return
        if not warned:
            warned = True
            LOGGER.warning(
                "%s refused the credentials while reconnecting (%s); "
                "re-authentication started",
                connection.config.url,
                err,
            )
        entry.async_start_reauth(hass)

    return connection.add_failure_listener(_failed)


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
        data.setdefault(CONF_PROFILE, Profile.GENERIC.value)
        hass.config_entries.async_update_entry(
            entry, data=data, minor_version=ENTRY_MINOR_VERSION
        )
    return True


async def async_remove_entry(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> None:
    """Delete the broker's stored subscriptions and its outbox."""
    await Store(hass, STORAGE_VERSION, storage_key(entry.entry_id)).async_remove()
    await async_remove_outbox(hass, entry.entry_id)
    async_drop_hub(hass, entry.entry_id)
