"""Connectivity binary sensor per broker."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import CloudSyncEntity
from .models import CloudSyncConfigEntry

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,  # noqa: ARG001
    entry: CloudSyncConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the broker's connectivity sensor."""
    async_add_entities([CloudSyncConnectionSensor(entry)])


class CloudSyncConnectionSensor(CloudSyncEntity, BinarySensorEntity):
    """On while the broker connection is up."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_translation_key = "connection"

    def __init__(self, entry: CloudSyncConfigEntry) -> None:
        """Track the entry's connection."""
        super().__init__(entry, "connection")

    @property
    def is_on(self) -> bool:
        """Return whether the broker is connected."""
        return self.entry.runtime_data.connected

    async def async_added_to_hass(self) -> None:
        """Write the state whenever the connection changes."""
        self.async_on_remove(
            self.entry.runtime_data.add_connection_listener(self._changed)
        )

    @callback
    def _changed(self, _connected: bool) -> None:  # noqa: FBT001
        self.async_write_ha_state()
