"""Trying a broker configuration once, for the config flow."""

from __future__ import annotations

from dataclasses import replace

from homeassistant.core import HomeAssistant

from .client import (
    BrokerAuthError,
    BrokerConfig,
    BrokerConnection,
    BrokerTLSError,
    CloudSyncError,
)
from .const import CONNECT_TIMEOUT


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
