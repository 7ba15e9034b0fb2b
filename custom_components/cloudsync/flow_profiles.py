"""What a broker profile asks of the config, reconfigure and options flows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .client import PROFILES, Profile, ProfileLimitError, parse_broker_url
from .const import (
    CONF_CA_CERT,
    CONF_CLIENT_CERT,
    CONF_CLIENT_ID,
    CONF_CLIENT_KEY,
    CONF_KEEPALIVE,
    CONF_QOS,
    CONF_URL,
    DEFAULT_KEEPALIVE,
    DEFAULT_QOS,
)
from .entry_data import profile_of

# Profiles whose brokers speak TLS only and identify devices by certificate.
_CERTIFICATE_PROFILES = frozenset({Profile.AWS_IOT_CORE})


def profile_url(user_input: Mapping[str, Any]) -> str:
    """Return the URL text to parse: an AWS endpoint without a scheme is mqtts://."""
    text = str(user_input[CONF_URL]).strip()
    if profile_of(user_input) in _CERTIFICATE_PROFILES and "://" not in text:
        return f"mqtts://{text}"
    return text


def form_url(user_input: Mapping[str, Any], errors: dict[str, str]) -> str | None:
    """Return the normalized broker URL the form was given, or note the error."""
    try:
        url = parse_broker_url(profile_url(user_input))
    except ValueError:
        errors[CONF_URL] = "invalid_url"
        return None
    data = {**user_input, CONF_CLIENT_ID: user_input.get(CONF_CLIENT_ID, "")}
    errors.update(connection_errors(data, tls=url.tls))
    return None if errors else str(url)


def connection_errors(data: Mapping[str, Any], *, tls: bool) -> dict[str, str]:
    """Return the user form's errors the profile finds (URL scheme, client id)."""
    profile = profile_of(data)
    errors: dict[str, str] = {}
    if profile in _CERTIFICATE_PROFILES and not tls:
        errors[CONF_URL] = "profile_needs_tls"
    try:
        PROFILES[profile].check_connection(data[CONF_CLIENT_ID], DEFAULT_KEEPALIVE)
    except ProfileLimitError:
        errors[CONF_CLIENT_ID] = "profile_client_id"
    return errors


def certificate_errors(data: Mapping[str, Any]) -> dict[str, str]:
    """Return the TLS form's error when the profile needs certificates not given."""
    if profile_of(data) in _CERTIFICATE_PROFILES and not all(
        data.get(key) for key in (CONF_CA_CERT, CONF_CLIENT_CERT, CONF_CLIENT_KEY)
    ):
        return {"base": "profile_certificates"}
    return {}


def options_errors(
    entry_data: Mapping[str, Any], options: Mapping[str, Any]
) -> dict[str, str]:
    """Return the options form's errors: keepalive and default QoS the profile refuses."""
    limits = PROFILES[profile_of(entry_data)]
    errors: dict[str, str] = {}
    try:
        limits.check_connection("", int(options.get(CONF_KEEPALIVE, DEFAULT_KEEPALIVE)))
    except ProfileLimitError:
        errors[CONF_KEEPALIVE] = "profile_keepalive"
    if int(options.get(CONF_QOS, DEFAULT_QOS)) > limits.max_qos:
        errors[CONF_QOS] = "profile_qos"
    return errors
