"""Sensors: the outbox counts, and a sensor per subscribed topic filter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import time

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory, UnitOfTime
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .broker_sensors import METRICS_INTERVAL, broker_sensors
from .client import OutboxStats
from .const import (
    CONF_TOPIC_SENSORS,
    DEFAULT_TOPIC_SENSORS,
)
from .entity import CloudSyncEntity
from .models import CloudSyncConfigEntry
from .topic_sensor import TopicSensors

PARALLEL_UPDATES = 0
SCAN_INTERVAL = METRICS_INTERVAL  # only the metrics sensors are polled


async def async_setup_entry(
    hass: HomeAssistant,
    entry: CloudSyncConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the outbox sensors, and a sensor per subscription (now and when added)."""
    async_add_entities(
        OutboxSensor(entry, description) for description in OUTBOX_SENSORS
    )
    async_add_entities(broker_sensors(entry), update_before_add=True)
    if entry.options.get(CONF_TOPIC_SENSORS, DEFAULT_TOPIC_SENSORS):
        TopicSensors(hass, entry, async_add_entities).async_start()


def _oldest_age(stats: OutboxStats) -> int | None:
    """Return the age of the oldest queued message in seconds (unknown when none)."""
    return max(0, round(time.time() - stats.oldest)) if stats.oldest else None


@dataclass(frozen=True, kw_only=True)
class OutboxSensorEntityDescription(SensorEntityDescription):
    """An outbox count and how to read it."""

    value_fn: Callable[[OutboxStats], int | None]


OUTBOX_SENSORS: tuple[OutboxSensorEntityDescription, ...] = (
    OutboxSensorEntityDescription(
        key="outbox_queued",
        translation_key="outbox_queued",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda stats: stats.queued,
    ),
    OutboxSensorEntityDescription(
        key="outbox_oldest_age",
        translation_key="outbox_oldest_age",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=_oldest_age,
    ),
    OutboxSensorEntityDescription(
        key="outbox_dropped",
        translation_key="outbox_dropped",
        entity_registry_enabled_default=False,
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda stats: stats.dropped,
    ),
    OutboxSensorEntityDescription(
        key="outbox_delivered",
        translation_key="outbox_delivered",
        entity_registry_enabled_default=False,
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda stats: stats.delivered,
    ),
)


class OutboxSensor(CloudSyncEntity, SensorEntity):
    """One count of the broker's outbox, updated at most once a second."""

    _attr_entity_category = EntityCategory.DIAGNOSTIC
    entity_description: OutboxSensorEntityDescription

    def __init__(
        self, entry: CloudSyncConfigEntry, description: OutboxSensorEntityDescription
    ) -> None:
        """Describe one outbox sensor."""
        super().__init__(entry, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> int | None:
        """Return the current count or age."""
        return self.entity_description.value_fn(self.entry.runtime_data.outbox_stats)

    async def async_added_to_hass(self) -> None:
        """Write the state when the outbox changes."""
        self.async_on_remove(
            self.entry.runtime_data.add_outbox_listener(self.async_write_ha_state)
        )
