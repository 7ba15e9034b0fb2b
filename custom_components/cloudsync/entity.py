"""Base entity for cloudsync: one device per broker."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity

from .const import DOMAIN
from .models import CloudSyncConfigEntry


class CloudSyncEntity(Entity):
    """An entity that belongs to a broker's device."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, entry: CloudSyncConfigEntry, key: str) -> None:
        """Attach the entity to the broker's device."""
        self.entry = entry
        self._attr_unique_id = f"{entry.entry_id}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name=entry.title,
            manufacturer="CloudSync",
            model="MQTT broker",
            model_id=str(entry.runtime_data.url),
            entry_type=DeviceEntryType.SERVICE,
        )
