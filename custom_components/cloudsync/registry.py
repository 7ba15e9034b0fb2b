"""Per-broker subscriptions (filter -> app ids), stored, and the latest data per topic.

These are the original CloudSync's maps done right: wildcard filters matched with a trie,
data kept per concrete topic, and the subscriptions stored so they come back after a
restart. Talking to the broker is CloudSyncBroker's job, not this one's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from .cache import CacheLimits, LatestCache
from .client import FilterTrie, is_wildcard, topic_matches
from .const import DOMAIN
from .errors import NotSubscribedError
from .payload import encode_payload

STORAGE_VERSION = 1
SAVE_DELAY = 1.0


# Made per message, so not frozen: a frozen dataclass's __init__ sets each field
# through object.__setattr__, 3-5 times the cost. Nothing changes them.
@dataclass(slots=True)
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
    # When each app joined (restored ones: at load); app isolation hides older data.
    joined: dict[str, datetime] = field(default_factory=dict)


class _StoredSubscription(TypedDict, total=False):
    qos: int
    apps: list[str]
    value_template: str | None
    unit_of_measurement: str | None
    device_class: str | None


class _StoredData(TypedDict):
    subscriptions: dict[str, _StoredSubscription]


class SubscriptionRegistry:
    """Subscriptions, their storage, and the latest data for one broker."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        cache_limits: CacheLimits | None = None,
    ) -> None:
        """Create an empty registry; call async_load() to restore stored subscriptions."""
        self._store: Store[_StoredData] = Store(
            hass, STORAGE_VERSION, storage_key(entry_id)
        )
        self._subscriptions: dict[str, Subscription] = {}
        self._trie = FilterTrie[Subscription]()
        self._latest = LatestCache(cache_limits)

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """Return the subscriptions by filter (do not modify)."""
        return self._subscriptions

    async def async_load(self) -> list[Subscription]:
        """Restore and return the stored subscriptions."""
        stored = await self._store.async_load()
        for topic_filter, item in (stored["subscriptions"] if stored else {}).items():
            sensor = SensorOptions(
                item.get("value_template"),
                item.get("unit_of_measurement"),
                item.get("device_class"),
            )
            apps = set(item["apps"])
            now = dt_util.utcnow()
            self._add(
                Subscription(
                    topic_filter, item["qos"], apps, sensor, dict.fromkeys(apps, now)
                )
            )
        return list(self._subscriptions.values())

    async def async_flush(self) -> None:
        """Write pending changes now (on unload) so no delayed save lingers."""
        await self._store.async_save(self._data_to_save())

    def add_app(
        self, app_id: str, topic_filter: str, qos: int, sensor: SensorOptions | None
    ) -> Subscription:
        """Add an app to a filter (creating it); ``sensor`` replaces its options."""
        if (subscription := self._subscriptions.get(topic_filter)) is None:
            subscription = Subscription(
                topic_filter, qos, {app_id}, sensor or SensorOptions()
            )
            self._add(subscription)
        else:
            subscription.qos = max(subscription.qos, qos)
            subscription.apps.add(app_id)
            subscription.sensor = sensor or subscription.sensor
        subscription.joined.setdefault(app_id, dt_util.utcnow())
        self._save()
        return subscription

    def remove_app(self, app_id: str, topic_filter: str) -> Subscription:
        """Remove an app from a filter; the filter goes with its last app."""
        subscription = self.require(app_id, topic_filter)
        subscription.apps.discard(app_id)
        subscription.joined.pop(app_id, None)
        if not subscription.apps:
            self._remove(subscription)
        self._save()
        return subscription

    def require(self, app_id: str, topic_filter: str) -> Subscription:
        """Return the filter's subscription if the app is in it, else raise."""
        subscription = self._subscriptions.get(topic_filter)
        if subscription is None or app_id not in subscription.apps:
            msg = f"{app_id} is not subscribed to {topic_filter}"
            raise NotSubscribedError(msg)
        return subscription

    def latest_for_app(
        self, app_id: str, topic: str, *, isolated: bool
    ) -> LatestData | None:
        """Return the newest data on a topic, or on any topic under one of its filters.

        The app must be subscribed to a matching filter (to the filter itself when
        ``topic`` has wildcards). ``isolated``: data that arrived before the app joined
        (and was not retained) is not the app's.
        """
        wildcard = is_wildcard(topic)
        subs = (
            [s for s in (self._subscriptions.get(topic),) if s is not None]
            if wildcard
            else list(self.matching(topic))
        )
        joined = [sub.joined[app_id] for sub in subs if app_id in sub.apps]
        if not joined:
            msg = f"the app is not subscribed to a filter matching {topic}"
            raise NotSubscribedError(msg)
        since = min(joined) if isolated else None
        if wildcard:
            return self.latest_for_filter(topic, since)
        data = self.latest(topic)
        return data if visible(data, since) else None

    def matching(self, topic: str) -> Iterator[Subscription]:
        """Yield the subscriptions whose filter matches a concrete topic."""
        return self._trie.iter_match(topic)

    def covers(self, topic: str) -> bool:
        """Return True when some subscribed filter matches a concrete topic."""
        return next(self._trie.iter_match(topic), None) is not None

    def record(self, data: LatestData) -> None:
        """Keep a message as its topic's latest data."""
        self._latest.put(data)

    def latest(self, topic: str) -> LatestData | None:
        """Return the newest data on a concrete topic."""
        return self._latest.get(topic)

    def was_evicted(self, topic: str) -> bool:
        """Return True when the topic's data was dropped to keep the cache's caps."""
        return self._latest.was_evicted(topic)

    def latest_for_filter(
        self, topic_filter: str, since: datetime | None = None
    ) -> LatestData | None:
        """Return the newest message on any topic matching a filter.

        With ``since``, only messages received from then on, or retained, count.
        """
        newest: LatestData | None = None
        for data in self._latest.values():
            if (
                topic_matches(topic_filter, data.topic)
                and visible(data, since)
                and (newest is None or data.received >= newest.received)
            ):
                newest = data
        return newest

    def counts(self) -> dict[str, int]:
        """Return counts for diagnostics (no payloads)."""
        return {
            "subscriptions": len(self._subscriptions),
            "topics_with_data": len(self._latest),
            "cached_bytes": self._latest.bytes,
            "evicted_topics": self._latest.evicted,
        }

    def _add(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.topic_filter] = subscription
        self._trie[subscription.topic_filter] = subscription

    def _remove(self, subscription: Subscription) -> None:
        del self._subscriptions[subscription.topic_filter]
        del self._trie[subscription.topic_filter]
        for topic in self._latest.topics():
            if not self.covers(topic):
                self._latest.discard(topic)

    def _save(self) -> None:
        self._store.async_delay_save(self._data_to_save, SAVE_DELAY)

    def _data_to_save(self) -> _StoredData:
        return {
            "subscriptions": {
                sub.topic_filter: _stored(sub) for sub in self._subscriptions.values()
            }
        }


def visible(data: LatestData | None, since: datetime | None) -> bool:
    """Return True when data counts for an app that joined at ``since`` (None: all)."""
    return data is not None and (since is None or data.retain or data.received >= since)


def latest_reply(
    topic: str, data: LatestData | None, *, evicted: bool = False
) -> dict[str, Any]:
    """Describe the latest data; payloads that are not UTF-8 come back base64.

    ``evicted`` says that data came but was dropped to keep the cache's caps.
    """
    if data is None:
        empty = dict.fromkeys(
            ("payload", "encoding", "received", "qos", "retained"), None
        ) | {"topic": topic}
        return empty | {"evicted": True} if evicted else empty
    payload, encoding = encode_payload(data.payload)
    return {
        "topic": data.topic,
        "payload": payload,
        "encoding": encoding,
        "received": data.received.isoformat(),
        "qos": data.qos,
        "retained": data.retain,
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
