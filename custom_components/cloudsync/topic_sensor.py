"""A sensor per subscribed topic filter holding the latest payload."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
import time
from typing import Any, Self

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorExtraStoredData,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import TemplateError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.template import Template
from homeassistant.util.json import json_loads

from .const import CONF_STATE_INTERVAL, DEFAULT_STATE_INTERVAL, LOGGER
from .entity import CloudSyncEntity
from .models import CloudSyncConfigEntry
from .payload import describe_binary
from .registry import LatestData, Subscription

MAX_STATE_LENGTH = 255


@dataclass
class TopicStoredData(SensorExtraStoredData):
    """What a topic sensor restores after a restart."""

    attributes: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Return the value, unit and attributes as JSON-able data."""
        return {**super().as_dict(), "attributes": self.attributes}

    @classmethod
    def from_dict(cls, restored: dict[str, Any]) -> Self | None:
        """Return the stored data, or None when it cannot be read."""
        base = SensorExtraStoredData.from_dict(restored)
        attributes = restored.get("attributes")
        if base is None or not isinstance(attributes, dict):
            return None
        return cls(base.native_value, base.native_unit_of_measurement, attributes)


class TopicSensors:
    """Keeps one sensor per subscribed filter and routes messages to them."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: CloudSyncConfigEntry,
        async_add_entities: AddConfigEntryEntitiesCallback,
    ) -> None:
        """Bind to the entry's registry."""
        self._hass = hass
        self._entry = entry
        self._broker = entry.runtime_data
        self._add_entities = async_add_entities
        self._sensors: dict[str, TopicSensor] = {}

    @callback
    def async_start(self) -> None:
        """Add sensors for the restored subscriptions and start listening."""
        self._add([*self._broker.subscriptions.values()])
        self._entry.async_on_unload(
            self._broker.add_subscription_listener(self._subscription_changed)
        )
        self._entry.async_on_unload(self._broker.add_message_listener(self._message))

    @callback
    def _add(self, subscriptions: list[Subscription]) -> None:
        sensors = [TopicSensor(self._hass, self._entry, sub) for sub in subscriptions]
        self._sensors.update(
            {sensor.subscription.topic_filter: sensor for sensor in sensors}
        )
        self._add_entities(sensors)

    @callback
    def _subscription_changed(self, subscription: Subscription, added: bool) -> None:  # noqa: FBT001
        sensor = self._sensors.get(subscription.topic_filter)
        if sensor is None and added:
            self._add([subscription])
        elif (
            sensor is not None
            and subscription.topic_filter in self._broker.subscriptions
        ):
            sensor.subscription_updated()
        elif sensor is not None:
            del self._sensors[subscription.topic_filter]
            sensor.async_forget()

    @callback
    def _message(self, data: LatestData) -> None:
        for subscription in self._broker.filters_matching(data.topic):
            if (sensor := self._sensors.get(subscription.topic_filter)) is not None:
                sensor.handle_message(data)


class TopicSensor(CloudSyncEntity, RestoreSensor):
    """The latest payload on one subscribed filter; state writes are coalesced."""

    _attr_translation_key = "topic"
    # They change with every message: the recorder would store a new attributes row
    # for each state write.
    _unrecorded_attributes = frozenset(
        {
            "topic",
            "received",
            "qos",
            "retained",
            "payload_length",
            "payload_type",
            "truncated",
            "value_error",
        }
    )

    def __init__(
        self,
        hass: HomeAssistant,
        entry: CloudSyncConfigEntry,
        subscription: Subscription,
    ) -> None:
        """Describe the sensor of one subscription."""
        super().__init__(entry, f"topic_{subscription.topic_filter}")
        self._hass = hass
        self.subscription = subscription
        self._attr_translation_placeholders = {"topic": subscription.topic_filter}
        self._interval = float(
            entry.options.get(CONF_STATE_INTERVAL, DEFAULT_STATE_INTERVAL)
        )
        self._pending: LatestData | None = None
        self._last_write = 0.0
        self._cancel_flush: CALLBACK_TYPE | None = None
        self._template: Template | None = None
        self._attr_extra_state_attributes: dict[str, Any] = {}
        self._apply_options()

    @property
    def suggested_object_id(self) -> str | None:
        """Spell wildcards out, so `demo/#` is not `demo` (`..._topic_demo_all`)."""
        name = super().suggested_object_id
        return name and name.replace("#", "all").replace("+", "any")

    @property
    def available(self) -> bool:
        """Return False while the broker is disconnected."""
        return self.entry.runtime_data.connected

    async def async_added_to_hass(self) -> None:
        """Restore the last state and follow the broker connection."""
        await super().async_added_to_hass()
        if (extra := await self.async_get_last_extra_data()) is not None and (
            last := TopicStoredData.from_dict(extra.as_dict())
        ) is not None:
            self._attr_native_value = last.native_value
            self._attr_extra_state_attributes = last.attributes
        self._attr_extra_state_attributes["apps"] = sorted(self.subscription.apps)
        self.async_on_remove(
            self.entry.runtime_data.add_connection_listener(self._connection_changed)
        )
        self.async_on_remove(self._cancel_pending)

    @property
    def extra_restore_state_data(self) -> TopicStoredData:
        """Keep value and attributes: HA drops attributes while unavailable."""
        return TopicStoredData(
            self._attr_native_value,
            self._attr_native_unit_of_measurement,
            dict(self._attr_extra_state_attributes),
        )

    @callback
    def handle_message(self, data: LatestData) -> None:
        """Take a new message; write at most once per interval, the last one wins."""
        self._pending = data
        if self._cancel_flush is not None or self.hass is None:
            return
        delay = self._last_write + self._interval - time.monotonic()
        if delay <= 0:
            self._flush()
        else:
            self._cancel_flush = async_call_later(self.hass, delay, self._flush_later)

    @callback
    def subscription_updated(self) -> None:
        """Apply changed sensor options or app ids."""
        self._apply_options()
        self._attr_extra_state_attributes["apps"] = sorted(self.subscription.apps)
        if self.hass is not None:
            self.async_write_ha_state()

    @callback
    def async_forget(self) -> None:
        """Remove the sensor and its registry entry (the filter was unsubscribed)."""
        self._cancel_pending()
        if self.registry_entry is not None:
            er.async_get(self._hass).async_remove(self.entity_id)

    @callback
    def _flush_later(self, _now: datetime) -> None:
        self._cancel_flush = None
        self._flush()

    @callback
    def _flush(self) -> None:
        if (data := self._pending) is None:
            return
        self._pending = None
        self._last_write = time.monotonic()
        self._show(data)
        self.async_write_ha_state()

    @callback
    def _cancel_pending(self) -> None:
        if self._cancel_flush is not None:
            self._cancel_flush()
            self._cancel_flush = None

    @callback
    def _connection_changed(self, _connected: bool) -> None:  # noqa: FBT001
        self.async_write_ha_state()

    def _apply_options(self) -> None:
        options = self.subscription.sensor
        self._template = (
            Template(options.value_template, self._hass)
            if options.value_template
            else None
        )
        self._attr_native_unit_of_measurement = options.unit_of_measurement
        self._attr_device_class = (
            SensorDeviceClass(options.device_class) if options.device_class else None
        )

    def _show(self, data: LatestData) -> None:
        """Turn a message into the state and attributes."""
        attributes: dict[str, Any] = {
            "topic": data.topic,
            "received": data.received.isoformat(),
            "qos": data.qos,
            "retained": data.retain,
            "apps": sorted(self.subscription.apps),
            "payload_length": len(data.payload),
        }
        try:
            text = data.payload.decode("utf-8")
        except UnicodeDecodeError:
            attributes.update(describe_binary(data.payload))
            self._attr_native_value = f"binary, {len(data.payload)} bytes"
            self._attr_extra_state_attributes = attributes
            return
        value, error = self._value(text)
        if error:
            attributes["value_error"] = error
        if isinstance(value, str) and len(value) > MAX_STATE_LENGTH:
            value = value[:MAX_STATE_LENGTH]
            attributes["truncated"] = True
        self._attr_native_value = value
        self._attr_extra_state_attributes = attributes

    def _value(self, text: str) -> tuple[str | float | None, str | None]:
        """Apply the value template and the numeric conversion a unit needs."""
        value: Any = text
        if self._template is not None:
            variables: dict[str, Any] = {"value": text}
            with contextlib.suppress(ValueError):
                variables["value_json"] = json_loads(text)
            try:
                value = self._template.async_render(variables, parse_result=False)
            except TemplateError as err:
                LOGGER.warning("Value template of %s failed: %s", self.entity_id, err)
                return None, f"template error: {err}"
        if self._attr_native_unit_of_measurement or self._attr_device_class:
            try:
                return float(value), None
            except (TypeError, ValueError):
                return None, f"not a number: {str(value)[:50]}"
        return str(value), None
