"""Diagnostics for cloudsync; secrets are redacted."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.core import HomeAssistant

from .const import CONF_CLIENT_KEY, CONF_KEY_PASSWORD
from .models import CloudSyncConfigEntry

TO_REDACT = {CONF_PASSWORD, CONF_USERNAME, CONF_CLIENT_KEY, CONF_KEY_PASSWORD}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant,  # noqa: ARG001
    entry: CloudSyncConfigEntry,
) -> dict[str, Any]:
    """Return the entry's configuration and, once it is set up, its state."""
    diagnostics: dict[str, Any] = {
        "entry": {
            "state": entry.state.value,
            "reason": entry.reason,
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        }
    }
    if entry.state is ConfigEntryState.LOADED:
        diagnostics |= entry.runtime_data.diagnostics()
        if (mirror := entry.runtime_data.mirror) is not None:
            diagnostics["mirror"] = mirror.as_diagnostics()
    return diagnostics
