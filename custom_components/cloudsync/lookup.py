"""Finding the broker a request names: by config entry ID (actions) or URL (REST)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant

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


def broker_by_url(hass: HomeAssistant, text: str | None) -> CloudSyncBroker:
    """Return the loaded broker a request's ``url`` names: exact URL first, then host.

    ``None`` (the seed's GET form without a host) matches when only one broker exists.
    """
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
    return loaded(candidates[0])


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
