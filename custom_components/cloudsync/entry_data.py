"""Config entry data: the BrokerConfig it describes, and what the user form makes of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.const import CONF_PASSWORD, CONF_USERNAME

from .client import (
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    PROFILES,
    BrokerConfig,
    Profile,
    Protocol,
    new_client_id,
    parse_broker_url,
)
from .const import (
    CONF_CA_CERT,
    CONF_CLIENT_CERT,
    CONF_CLIENT_ID,
    CONF_CLIENT_KEY,
    CONF_KEEPALIVE,
    CONF_KEY_PASSWORD,
    CONF_PROFILE,
    CONF_PROTOCOL,
    CONF_URL,
    CONF_VERIFY_HOSTNAME,
    DEFAULT_KEEPALIVE,
)


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
        profile=PROFILES[profile_of(data)],
    )


def profile_of(data: Mapping[str, Any]) -> Profile:
    """Return the broker profile of an entry's data (generic when unknown)."""
    try:
        return Profile(data.get(CONF_PROFILE, Profile.GENERIC))
    except ValueError:
        return Profile.GENERIC


def default_title(url: str) -> str:
    """Return a new entry's title: the host, and the port unless it is the usual one."""
    parsed = parse_broker_url(url)
    if parsed.port == (DEFAULT_TLS_PORT if parsed.tls else DEFAULT_PORT):
        return parsed.host
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{host}:{parsed.port}"


def reconfigured_title(title: str, old_url: str, new_url: str) -> str:
    """Return the title after a URL change: a name the user chose stays."""
    defaults = {default_title(old_url), old_url.partition("://")[2]}  # and the old form
    return default_title(new_url) if title in defaults else title


def credentials(user_input: Mapping[str, Any]) -> dict[str, str]:
    """Return the username and password the form was given, leaving out empty ones."""
    return {
        key: user_input[key]
        for key in (CONF_USERNAME, CONF_PASSWORD)
        if user_input.get(key)
    }


def connection_data(url: str, user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the entry data of the user form; generate a client id when none is given."""
    client_id = user_input.get(CONF_CLIENT_ID, "").strip()
    return {
        CONF_URL: url,
        CONF_CLIENT_ID: client_id or new_client_id(),
        CONF_PROTOCOL: user_input[CONF_PROTOCOL],
        CONF_PROFILE: profile_of(user_input).value,
        **credentials(user_input),
    }


def keep_password(data: dict[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the stored password when the form left it empty for the same user."""
    same_user = data.get(CONF_USERNAME) == stored.get(CONF_USERNAME)
    if same_user and CONF_PASSWORD not in data and CONF_PASSWORD in stored:
        data[CONF_PASSWORD] = stored[CONF_PASSWORD]
    return data
