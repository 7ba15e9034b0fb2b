"""Per-broker registry: apps, subscriptions (filter -> app ids) and the latest data per topic.

These are the original CloudSync's four maps done right: one lock for changes, wildcard
filters matched with a trie (paho's MQTTMatcher), data kept per concrete topic, and the
subscriptions stored so they come back after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
from paho.mqtt.client import topic_matches_sub
from paho.mqtt.matcher import MQTTMatcher

from .client import (
    BrokerConnection,
    Outbox,
    PublishResult,
    ReceivedMessage,
    is_wildcard,
    validate_filter,
    validate_topic,
)
from .const import ACK_TIMEOUT, DOMAIN

STORAGE_VERSION = 1
SAVE_DELAY = 1.0


class RegistryError(Exception):
    """Base class for registry lookups that fail."""


class NotSubscribedError(RegistryError):
    """The app is not subscribed to a filter that matches the topic."""


@dataclass(slots=True, frozen=True)
class LatestData:
    """The newest message seen on one concrete topic."""

    topic: str
    payload: bytes
    received: datetime
    qos: int
    retain: bool


@dataclass(slots=True, frozen=True)
class SensorOptions:
    """How a subscription's sensor shows the payload (like HA's MQTT sensor)."""

    value_template: str | None = None
    unit_of_measurement: str | None = None
    device_class: str | None = None


@dataclass(slots=True)
class Subscription:
    """One filter subscribed at the broker and the apps that asked for it."""

    topic_filter: str
    qos: int
    apps: set[str]
    sensor: SensorOptions = field(default_factory=SensorOptions)


class _StoredSubscription(TypedDict, total=False):
    qos: int
    apps: list[str]
    value_template: str | None
    unit_of_measurement: str | None
    device_class: str | None


class _StoredData(TypedDict):
    subscriptions: dict[str, _StoredSubscription]


class _FilterTrie:
    """Typed face of paho's MQTTMatcher, a trie of topic filters."""

    def __init__(self) -> None:
        self._matcher = MQTTMatcher()  # type: ignore[no-untyped-call]

    def __setitem__(self, topic_filter: str, subscription: Subscription) -> None:
        self._matcher[topic_filter] = subscription

    def __delitem__(self, topic_filter: str) -> None:
        del self._matcher[topic_filter]  # type: ignore[no-untyped-call]

    def iter_match(self, topic: str) -> Iterator[Subscription]:
        """Yield the subscriptions whose filter matches a concrete topic."""
        return self._matcher.iter_match(topic)  # type: ignore[no-any-return,no-untyped-call]


type MessageListener = Callable[[LatestData], None]
type SubscriptionListener = Callable[[Subscription, bool], None]


class SubscriptionRegistry:
    """Subscriptions and latest data for one broker."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        connection: BrokerConnection,
        outbox: Outbox,
    ) -> None:
        """Create an empty registry; call async_load() to restore stored subscriptions."""
        self._hass = hass
        self._connection = connection
        self._outbox = outbox
        self._store: Store[_StoredData] = Store(
            hass, STORAGE_VERSION, storage_key(entry_id)
        )
        self._lock = asyncio.Lock()
        self._subscriptions: dict[str, Subscription] = {}
        self._matcher = _FilterTrie()
        self._latest: dict[str, LatestData] = {}
        self._apps: set[str] = set()
        self._message_listeners: list[MessageListener] = []
        self._subscription_listeners: list[SubscriptionListener] = []
        connection.on_message = self.handle_message

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """Return the subscriptions by filter (do not modify)."""
        return self._subscriptions

    @property
    def apps(self) -> set[str]:
        """Return the app ids that published or subscribed on this broker."""
        return self._apps

    @property
    def topic_count(self) -> int:
        """Return how many concrete topics have data."""
        return len(self._latest)

    async def async_load(self) -> None:
        """Restore stored subscriptions and have the connection subscribe them."""
        stored = await self._store.async_load()
        for topic_filter, item in (stored["subscriptions"] if stored else {}).items():
            sensor = SensorOptions(
                item.get("value_template"),
                item.get("unit_of_measurement"),
                item.get("device_class"),
            )
            self._add(
                Subscription(topic_filter, item["qos"], set(item["apps"]), sensor)
            )
            self._connection.track(topic_filter, item["qos"])

    async def async_flush(self) -> None:
        """Write pending changes now (on unload) so no delayed save lingers."""
        await self._store.async_save(self._data_to_save())

    async def async_subscribe(
        self,
        app_id: str,
        topic_filter: str,
        qos: int,
        *,
        sensor: SensorOptions | None = None,
        timeout: float = ACK_TIMEOUT,
    ) -> bool:
        """Subscribe an app; return True when the filter was new at the broker.

        ``sensor`` replaces the filter's sensor options when given.
        """
        validate_filter(topic_filter)
        async with self._lock:
            existing = self._subscriptions.get(topic_filter)
            if existing is None or qos > existing.qos:
                await self._connection.subscribe(topic_filter, qos, timeout=timeout)
            self._apps.add(app_id)
            if existing is None:
                self._add(
                    Subscription(topic_filter, qos, {app_id}, sensor or SensorOptions())
                )
            else:
                existing.qos = max(existing.qos, qos)
                existing.apps.add(app_id)
                existing.sensor = sensor or existing.sensor
            self._store.async_delay_save(self._data_to_save, SAVE_DELAY)
        self._notify_subscription(self._subscriptions[topic_filter], added=True)
        return existing is None

    async def async_unsubscribe(
        self, app_id: str, topic_filter: str, *, timeout: float = ACK_TIMEOUT
    ) -> bool:
        """Remove an app; return True when the filter was unsubscribed at the broker."""
        async with self._lock:
            subscription = self._subscriptions.get(topic_filter)
            if subscription is None or app_id not in subscription.apps:
                msg = f"{app_id} is not subscribed to {topic_filter}"
                raise NotSubscribedError(msg)
            if len(subscription.apps) == 1:
                await self._connection.unsubscribe(topic_filter, timeout=timeout)
                self._remove(subscription)
            subscription.apps.discard(app_id)
            self._store.async_delay_save(self._data_to_save, SAVE_DELAY)
        gone = topic_filter not in self._subscriptions
        self._notify_subscription(subscription, added=False)
        return gone

    async def async_publish(  # noqa: PLR0913
        self,
        app_id: str,
        topic: str,
        payload: bytes,
        qos: int,
        *,
        retain: bool,
        timeout: float,
        qos_explicit: bool = True,
    ) -> PublishResult:
        """Publish for an app now, or queue it in the outbox when that cannot be done.

        ``qos_explicit`` False means ``qos`` is only the default: queued, it goes at 1.
        """
        result = await self._outbox.publish(
            topic,
            payload,
            qos,
            retain=retain,
            timeout=timeout,
            qos_explicit=qos_explicit,
        )
        self._apps.add(app_id)
        return result

    def get(self, app_id: str, topic: str) -> LatestData | None:
        """Return the newest data on ``topic`` for a subscribed app (None before any).

        ``topic`` may be a concrete topic under any filter the app subscribed to, or
        one of its filters itself: then the newest message on any matching topic.
        """
        if is_wildcard(topic):
            validate_filter(topic)
            subscription = self._subscriptions.get(topic)
            if subscription is None or app_id not in subscription.apps:
                raise NotSubscribedError(_not_subscribed(topic))
            return self.latest_for_filter(topic)
        validate_topic(topic)
        if not any(app_id in sub.apps for sub in self._matcher.iter_match(topic)):
            raise NotSubscribedError(_not_subscribed(topic))
        return self._latest.get(topic)

    def latest_for_filter(self, topic_filter: str) -> LatestData | None:
        """Return the newest message on any topic matching a filter."""
        newest: LatestData | None = None
        for data in self._latest.values():
            if topic_matches_sub(topic_filter, data.topic) and (
                newest is None or data.received >= newest.received
            ):
                newest = data
        return newest

    @callback
    def handle_message(self, message: ReceivedMessage) -> None:
        """Record a message from the broker and tell the listeners."""
        data = LatestData(
            message.topic,
            message.payload,
            dt_util.utcnow(),
            message.qos,
            message.retain,
        )
        self._latest[message.topic] = data
        for listener in self._message_listeners:
            listener(data)

    @callback
    def add_message_listener(self, listener: MessageListener) -> CALLBACK_TYPE:
        """Call ``listener`` for every message; return a function that stops it."""
        self._message_listeners.append(listener)
        return lambda: self._message_listeners.remove(listener)

    @callback
    def add_subscription_listener(
        self, listener: SubscriptionListener
    ) -> CALLBACK_TYPE:
        """Call ``listener(subscription, added)`` on subscription changes."""
        self._subscription_listeners.append(listener)
        return lambda: self._subscription_listeners.remove(listener)

    def filters_matching(self, topic: str) -> Iterator[Subscription]:
        """Yield the subscriptions whose filter matches a concrete topic."""
        return self._matcher.iter_match(topic)

    def _add(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.topic_filter] = subscription
        self._matcher[subscription.topic_filter] = subscription
        self._apps.update(subscription.apps)

    def _remove(self, subscription: Subscription) -> None:
        del self._subscriptions[subscription.topic_filter]
        del self._matcher[subscription.topic_filter]
        for topic in [t for t in self._latest if not any(self._matcher.iter_match(t))]:
            del self._latest[topic]

    def _notify_subscription(self, subscription: Subscription, *, added: bool) -> None:
        for listener in self._subscription_listeners:
            listener(subscription, added)

    def _data_to_save(self) -> _StoredData:
        return {
            "subscriptions": {
                sub.topic_filter: _stored(sub) for sub in self._subscriptions.values()
            }
        }

    def as_diagnostics(self) -> dict[str, Any]:
        """Return counts for diagnostics (no payloads)."""
        return {
            "apps": len(self._apps),
            "subscriptions": len(self._subscriptions),
            "topics_with_data": len(self._latest),
        }


def _stored(subscription: Subscription) -> _StoredSubscription:
    stored: _StoredSubscription = {
        "qos": subscription.qos,
        "apps": sorted(subscription.apps),
    }
    options = subscription.sensor
    if options.value_template is not None:
        stored["value_template"] = options.value_template
    if options.unit_of_measurement is not None:
        stored["unit_of_measurement"] = options.unit_of_measurement
    if options.device_class is not None:
        stored["device_class"] = options.device_class
    return stored


def storage_key(entry_id: str) -> str:
    """Return the HA storage key of an entry's subscriptions."""
    return f"{DOMAIN}.{entry_id}.subscriptions"


def _not_subscribed(topic: str) -> str:
    return f"the app is not subscribed to a filter matching {topic}"
