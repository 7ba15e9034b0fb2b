"""Finding the broker a request names: by config entry ID (actions) or URL (REST)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.util.hass_dict import HassKey

from .client import parse_broker_url
from .const import CONF_URL, DOMAIN
from .errors import (
    AmbiguousBrokerError,
    BrokerNotLoadedError,
    EntryNotFoundError,
    ForeignEntryError,
    UnknownBrokerError,
)

if TYPE_CHECKING:
    from .broker import CloudSyncBroker
    from .models import CloudSyncConfigEntry


def broker_by_entry_id(hass: HomeAssistant, entry_id: str) -> CloudSyncBroker:
    """Return the loaded broker of a config entry ID (the actions' field)."""
    if (entry := hass.config_entries.async_get_entry(entry_id)) is None:
        raise EntryNotFoundError(entry_id)
    if entry.domain != DOMAIN:
        msg = f"it belongs to the {entry.domain} integration"
        raise ForeignEntryError(msg)
    return loaded(entry)


# Every REST request names its broker, mostly in the same few words: the entry each
# text named, until a CloudSync entry is added, removed, changed, set up or unloaded.
NAMED: HassKey[dict[str | None, CloudSyncConfigEntry]] = HassKey(f"{DOMAIN}_named")
NAMED_MAX = 256


@callback
def async_setup_lookup(hass: HomeAssistant) -> None:
    """Remember what URLs named, forgetting it when a CloudSync entry changes."""
    named: dict[str | None, CloudSyncConfigEntry] = {}
    hass.data[NAMED] = named

    @callback
    def changed(_change: ConfigEntryChange, entry: ConfigEntry) -> None:
        if entry.domain == DOMAIN:
            named.clear()

    async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, changed)


def broker_by_url(hass: HomeAssistant, text: str | None) -> CloudSyncBroker:
    """Return the loaded broker a request's ``url`` names: exact URL first, then host.

    ``None`` (the seed's GET form without a host) matches when only one broker exists.
    """
    named = hass.data[NAMED]
    if (entry := named.get(text)) is None:
        entry = _entry_by_url(hass, text)
        if len(named) >= NAMED_MAX:
            named.clear()
        named[text] = entry
    return loaded(entry)


def _entry_by_url(hass: HomeAssistant, text: str | None) -> CloudSyncConfigEntry:
    """Return the one entry ``text`` names, loaded or not."""
    entries: list[CloudSyncConfigEntry] = hass.config_entries.async_entries(DOMAIN)
    if text is None:
        candidates = entries
    else:
        try:
            url = _parse_cached(text)
        except ValueError as err:
            raise UnknownBrokerError(str(err)) from err
        candidates = [e for e in entries if e.unique_id == str(url)]
        if not candidates and _is_bare_host(text):
            # The seed's clients send a bare host or IP: match it on any port/scheme.
            candidates = [
                e for e in entries if _parse_cached(e.data[CONF_URL]).host == url.host
            ]
    if not candidates:
        msg = (
            f"no broker {text!r} is configured in CloudSync"
            if text
            else "no broker is configured"
        )
        raise UnknownBrokerError(msg)
    if len(candidates) > 1:
        urls = ", ".join(sorted(e.data[CONF_URL] for e in candidates))
        msg = f"{text or 'the request'} matches several brokers ({urls}): name one by its URL"
        raise AmbiguousBrokerError(msg)
    return candidates[0]


def loaded(entry: CloudSyncConfigEntry) -> CloudSyncBroker:
    """Return the entry's broker if it is set up, else raise BrokerNotLoadedError."""
    if entry.state is not ConfigEntryState.LOADED:
        msg = (
            f"the broker {entry.data[CONF_URL]} is not connected ({entry.state.value})"
        )
        raise BrokerNotLoadedError(msg)
    return entry.runtime_data


# Every REST request names its broker; parsing the same few strings again is waste.
_parse_cached = lru_cache(maxsize=256)(parse_broker_url)


def _is_bare_host(text: str) -> bool:
    """Return True for ``host`` or ``[v6]`` without scheme or port."""
    text = text.strip()
    if "://" in text:
        return False
    if text.startswith("["):
        return text.endswith("]")
    return text.count(":") != 1
