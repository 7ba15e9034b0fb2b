"""Base entity for cloudsync: one device per broker."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity

from .client import BrokerUrl
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
        # One dict shared by all of a broker's entities (there may be thousands).
        self._attr_device_info = entry.runtime_data.device_info


def broker_device_info(entry: CloudSyncConfigEntry, url: BrokerUrl) -> DeviceInfo:
    """Return the device that stands for a broker."""
    return DeviceInfo(
        identifiers={(DOMAIN, entry.entry_id)},
        name=entry.title,
        manufacturer="CloudSync",
        model="MQTT broker",
        model_id=str(url),
        entry_type=DeviceEntryType.SERVICE,
    )
