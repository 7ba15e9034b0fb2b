"""The runtime data kept on each cloudsync config entry: its broker."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant

from .broker import CloudSyncBroker
from .client import TaskFactory

type CloudSyncConfigEntry = ConfigEntry[CloudSyncBroker]


def entry_task_factory(hass: HomeAssistant, entry: ConfigEntry[Any]) -> TaskFactory:
    """Return the client's task factory: background tasks the entry ends on unload."""
    return lambda coro, name: entry.async_create_background_task(hass, coro, name)
