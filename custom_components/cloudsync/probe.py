"""Trying a broker configuration once, for the config flow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from homeassistant.core import HomeAssistant

from .client import (
    BrokerAuthError,
    BrokerConfig,
    BrokerConnection,
    BrokerTLSError,
    CertificateError,
    CloudSyncError,
    build_ssl_context,
)
from .const import CONNECT_TIMEOUT, LOGGER
from .entry_data import broker_config


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


# Client error codes with a form error of their own; the rest say "cannot connect".
_FORM_ERRORS = {
    "connection_refused": "connection_refused",
    "unknown_host": "unknown_host",
    "connect_timeout": "timeout_connect",
    "timeout": "timeout_connect",
}


def form_error(err: CloudSyncError) -> str:
    """Map a connection error to a config-flow form error key."""
    if isinstance(err, BrokerAuthError):
        return "invalid_auth"
    if isinstance(err, BrokerTLSError):
        return "tls_error"
    return _FORM_ERRORS.get(err.code, "cannot_connect")


async def async_validate(hass: HomeAssistant, data: Mapping[str, Any]) -> str | None:
    """Connect to the broker the entry data describes; return a form error or None."""
    config = broker_config(data)
    if config.tls:
        try:
            await hass.async_add_executor_job(build_ssl_context, config)
        except CertificateError:
            # Every file was parsed already: what is left is a key that is not the cert's.
            return "client_key_mismatch"
    try:
        await async_probe_broker(hass, config)
    except CloudSyncError as err:
        return form_error(err)
    except Exception:  # noqa: BLE001 - any failure must end up as a form error
        LOGGER.exception("Unexpected error while connecting to %s", config.url)
        return "unknown"
    return None
