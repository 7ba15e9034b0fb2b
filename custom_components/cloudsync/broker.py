"""Build broker configurations from config entries and probe brokers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.core import HomeAssistant

from .client import (
    BrokerAuthError,
    BrokerConfig,
    BrokerConnection,
    BrokerTLSError,
    CloudSyncError,
    Protocol,
    parse_broker_url,
)
from .const import (
    CONF_CA_CERT,
    CONF_CLIENT_CERT,
    CONF_CLIENT_ID,
    CONF_CLIENT_KEY,
    CONF_KEEPALIVE,
    CONF_KEY_PASSWORD,
    CONF_PROTOCOL,
    CONF_URL,
    CONF_VERIFY_HOSTNAME,
    CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE,
    DOMAIN,
)
from .models import CloudSyncConfigEntry


def broker_config(
    data: Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> BrokerConfig:
    """Return the BrokerConfig a config entry's data and options describe."""
    url = parse_broker_url(data[CONF_URL])
    return BrokerConfig(
        host=url.host,
        port=url.port,
        tls=url.tls,
        ca_cert=data.get(CONF_CA_CERT) or None,
        client_cert=data.get(CONF_CLIENT_CERT) or None,
        client_key=data.get(CONF_CLIENT_KEY) or None,
        key_password=data.get(CONF_KEY_PASSWORD) or None,
        verify_hostname=data.get(CONF_VERIFY_HOSTNAME, True),
        username=data.get(CONF_USERNAME) or None,
        password=data.get(CONF_PASSWORD) or None,
        client_id=data.get(CONF_CLIENT_ID, ""),
        keepalive=(options or {}).get(CONF_KEEPALIVE, DEFAULT_KEEPALIVE),
        protocol=Protocol(data.get(CONF_PROTOCOL, Protocol.MQTTV311)),
    )


async def async_probe_broker(hass: HomeAssistant, config: BrokerConfig) -> None:
    """Connect once for real and disconnect; raise the client's typed error on failure."""
    # A client id of its own, so the probe never kicks out the entry's live session.
    connection = BrokerConnection(
        replace(config, client_id=""),
        executor=hass.async_add_executor_job,
        connect_timeout=CONNECT_TIMEOUT,
    )
    try:
        await connection.connect()
    finally:
        await connection.disconnect()


def form_error(err: CloudSyncError) -> str:
    """Map a connection error to a config-flow form error key."""
    if isinstance(err, BrokerAuthError):
        return "invalid_auth"
    if isinstance(err, BrokerTLSError):
        return "tls_error"
    return "cannot_connect"


class BrokerLookupError(Exception):
    """A request named a broker that cannot be used."""


class UnknownBrokerError(BrokerLookupError):
    """No configured broker matches the request."""


class AmbiguousBrokerError(BrokerLookupError):
    """More than one configured broker matches the request."""


class BrokerNotLoadedError(BrokerLookupError):
    """The broker is configured but not set up (e.g. unreachable at start)."""


def resolve_broker(hass: HomeAssistant, text: str | None) -> CloudSyncConfigEntry:
    """Find the entry a request's ``url`` names: exact URL first, then host.

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


def loaded(entry: CloudSyncConfigEntry) -> CloudSyncConfigEntry:
    """Return the entry if it is set up, else raise BrokerNotLoadedError."""
    if entry.state is not ConfigEntryState.LOADED:
        msg = (
            f"the broker {entry.data[CONF_URL]} is not connected ({entry.state.value})"
        )
        raise BrokerNotLoadedError(msg)
    return entry


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
