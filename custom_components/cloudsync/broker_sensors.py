"""Diagnostic sensors of a broker: certificate expiry and connection metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory, UnitOfTime

from .client import MetricsSnapshot
from .const import CONF_CA_CERT, CONF_CLIENT_CERT
from .entity import CloudSyncEntity
from .models import CloudSyncConfigEntry

# Metrics sensors are polled: one state write per interval, none per message.
METRICS_INTERVAL: Final = timedelta(seconds=10)


@dataclass(frozen=True, kw_only=True)
class MetricsSensorEntityDescription(SensorEntityDescription):
    """A connection metric and how to read it."""

    value_fn: Callable[[MetricsSnapshot], float | None]


METRICS_SENSORS: tuple[MetricsSensorEntityDescription, ...] = (
    MetricsSensorEntityDescription(
        key="messages_sent",
        translation_key="messages_sent",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda metrics: metrics.sent,
    ),
    MetricsSensorEntityDescription(
        key="messages_received",
        translation_key="messages_received",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda metrics: metrics.received,
    ),
    MetricsSensorEntityDescription(
        key="publish_latency_p50",
        translation_key="publish_latency_p50",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda metrics: metrics.latency_p50,
    ),
    MetricsSensorEntityDescription(
        key="publish_latency_p95",
        translation_key="publish_latency_p95",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda metrics: metrics.latency_p95,
    ),
    MetricsSensorEntityDescription(
        key="reconnects",
        translation_key="reconnects",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda metrics: metrics.reconnects,
    ),
)
CERTIFICATE_SENSORS: tuple[SensorEntityDescription, ...] = (
    SensorEntityDescription(key=CONF_CLIENT_CERT, translation_key="client_cert_expiry"),
    SensorEntityDescription(key=CONF_CA_CERT, translation_key="ca_cert_expiry"),
)


class MetricsSensor(CloudSyncEntity, SensorEntity):
    """A connection metric, polled once per METRICS_INTERVAL (off by default)."""

    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_entity_registry_enabled_default = False
    _attr_should_poll = True
    entity_description: MetricsSensorEntityDescription

    def __init__(
        self, entry: CloudSyncConfigEntry, description: MetricsSensorEntityDescription
    ) -> None:
        """Describe one metric."""
        super().__init__(entry, description.key)
        self.entity_description = description

    async def async_update(self) -> None:
        """Read the metric (the platform writes the state once per interval)."""
        metrics = self.entry.runtime_data.metrics()
        self._attr_native_value = self.entity_description.value_fn(metrics)


class CertificateExpirySensor(CloudSyncEntity, SensorEntity):
    """When the client or CA certificate of a TLS broker expires."""

    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_device_class = SensorDeviceClass.TIMESTAMP

    def __init__(
        self, entry: CloudSyncConfigEntry, description: SensorEntityDescription
    ) -> None:
        """Describe one certificate's expiry."""
        super().__init__(entry, f"{description.key}_expiry")
        self.entity_description = description

    @property
    def native_value(self) -> datetime | None:
        """Return the expiry read at setup."""
        return self.entry.runtime_data.certificate_expiry.get(
            self.entity_description.key
        )


def broker_sensors(entry: CloudSyncConfigEntry) -> list[SensorEntity]:
    """Return the metrics sensors, and an expiry sensor per stored certificate."""
    expiry = entry.runtime_data.certificate_expiry
    return [
        *(MetricsSensor(entry, description) for description in METRICS_SENSORS),
        *(
            CertificateExpirySensor(entry, description)
            for description in CERTIFICATE_SENSORS
            if description.key in expiry
        ),
    ]
