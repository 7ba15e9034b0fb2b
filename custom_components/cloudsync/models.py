"""The runtime data kept on each cloudsync config entry: its broker."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry

from .broker import CloudSyncBroker

type CloudSyncConfigEntry = ConfigEntry[CloudSyncBroker]
