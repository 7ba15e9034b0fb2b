"""Connectivity binary sensor per broker."""

from __future__ import annotations

from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .client import CloudSyncError
from .entity import CloudSyncEntity
from .models import CloudSyncConfigEntry

PARALLEL_UPDATES = 0
ATTR_LAST_ERROR = "last_error"


async def async_setup_entry(
    hass: HomeAssistant,  # noqa: ARG001
    entry: CloudSyncConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the broker's connectivity sensor."""
    async_add_entities([CloudSyncConnectionSensor(entry)])


class CloudSyncConnectionSensor(CloudSyncEntity, BinarySensorEntity):
    """On while the broker connection is up; says why it is not."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_translation_key = "connection"

    def __init__(self, entry: CloudSyncConfigEntry) -> None:
        """Track the entry's connection."""
        super().__init__(entry, "connection")
        self._shown_error: str | None = None

    @property
    def is_on(self) -> bool:
        """Return whether the broker is connected."""
        return self.entry.runtime_data.connected

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return why the last connection attempt failed (none while connected)."""
        broker = self.entry.runtime_data
        self._shown_error = None if broker.connected else broker.last_error
        return {ATTR_LAST_ERROR: self._shown_error}

    async def async_added_to_hass(self) -> None:
        """Write the state when the connection changes or fails another way."""
        broker = self.entry.runtime_data
        self.async_on_remove(broker.add_connection_listener(self._changed))
        self.async_on_remove(broker.add_failure_listener(self._failed))

    @callback
    def _changed(self, _connected: bool) -> None:  # noqa: FBT001
        self.async_write_ha_state()

    @callback
    def _failed(self, err: CloudSyncError) -> None:
        if str(err) != self._shown_error:
            self.async_write_ha_state()
