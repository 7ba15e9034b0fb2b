"""Runtime data kept on each cloudsync config entry."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry
from homeassistant.helpers.device_registry import DeviceInfo

from .client import BrokerConnection, BrokerUrl, Outbox
from .registry import SubscriptionRegistry


@dataclass(slots=True)
class CloudSyncData:
    """What a loaded broker entry owns."""

    connection: BrokerConnection
    url: BrokerUrl
    registry: SubscriptionRegistry
    outbox: Outbox
    device_info: DeviceInfo


type CloudSyncConfigEntry = ConfigEntry[CloudSyncData]
