"""CloudSyncBroker: the whole API of one configured broker.

REST views, actions, entities, events and diagnostics call only this object, which
resolves the entry's option defaults once, keeps the subscriptions and latest data
(``SubscriptionRegistry``), and talks to the broker through the client's connection and
outbox. Its publishes are in publishing.py, its subscriptions in subscribing.py; here are
its state, start and close, status, the latest data and the listeners.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.util import dt as dt_util

from .apps import SYSTEM, AppOwners, Principal
from .client import (
    BrokerConnection,
    BrokerUrl,
    CloudSyncError,
    Listeners,
    MetricsSnapshot,
    Outbox,
    OutboxStats,
    ReceivedMessage,
    is_wildcard,
    topic_matches,
    validate_filter,
    validate_topic,
)
from .const import (
    CONF_APP_ISOLATION,
    CONF_QOS,
    CONF_RETAIN,
    DEFAULT_QOS,
    DEFAULT_RETAIN,
    signal_outbox,
)
from .hub import MessageHub
from .publishing import PublishMixin
from .registry import (
    LatestData,
    Subscription,
    SubscriptionRegistry,
)
from .subscribing import SubscribeMixin

if TYPE_CHECKING:
    from .mirror import Mirror

type SubscriptionListener = Callable[[Subscription, bool], None]


class CloudSyncBroker(PublishMixin, SubscribeMixin):
    """One broker's publish, subscribe, latest data, listeners and status."""

    def __init__(  # noqa: PLR0913
        self,
        hass: HomeAssistant,
        entry_id: str,
        options: Mapping[str, Any],
        connection: BrokerConnection,
        outbox: Outbox,
        registry: SubscriptionRegistry,
        device_info: DeviceInfo,
        hub: MessageHub,
    ) -> None:
        """Bind the parts; call async_start() before use."""
        self._hass = hass
        self.entry_id = entry_id
        self.options = options
        self.isolated = bool(options.get(CONF_APP_ISOLATION, False))
        self._owners = AppOwners(hass, entry_id)
        self.url: BrokerUrl = connection.config.url
        self.device_info = device_info
        self.default_qos = int(options.get(CONF_QOS, DEFAULT_QOS))
        self.default_retain = bool(options.get(CONF_RETAIN, DEFAULT_RETAIN))
        self._connection = connection
        self._outbox = outbox
        self._registry = registry
        self.mirror: Mirror | None = None  # set up after the link (mirror.py)
        self._hub = hub
        self._lock = asyncio.Lock()
        self._subscribing: str | None = None  # the filter a SUBSCRIBE is out for
        self._messages = Listeners[LatestData](f"messages from {self.url}")
        self._subscription_changes = Listeners[tuple[Subscription, bool]](
            f"subscriptions on {self.url}"
        )
        self._stop_listening: Callable[[], None] | None = None
        # When the client and CA certificates expire (TLS brokers; set at setup).
        self.certificate_expiry: dict[str, datetime] = {}

    # -- status ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Return True while the broker connection is up."""
        return self._connection.connected

    @property
    def last_error(self) -> str | None:
        """Return why the last connection attempt failed (None once connected)."""
        return self._connection.last_error

    @property
    def subscriptions(self) -> Mapping[str, Subscription]:
        """Return the subscriptions by filter."""
        return self._registry.subscriptions

    def metrics(self) -> MetricsSnapshot:
        """Return the connection's counters and last-minute ack latencies."""
        return self._connection.metrics.snapshot()

    @property
    def outbox_stats(self) -> OutboxStats:
        """Return the outbox's counts."""
        return self._outbox.stats

    def diagnostics(self) -> dict[str, Any]:
        """Return the connection, registry and outbox state (no secrets, no payloads)."""
        connection = self._connection
        return {
            "connection": {
                "url": str(self.url),
                "client_id": connection.client_id,
                "connected": connection.connected,
                "last_error": connection.last_error,
                "subscriptions": len(connection.subscriptions),
                "pending_acks": connection.pending_acks,
            },
            "registry": self._registry.counts() | {"app_owners": len(self._owners)},
            "outbox": {
                "path": str(self._outbox.path),
                "limits": asdict(self._outbox.limits),
                "stats": asdict(self._outbox.stats),
            },
        }

    # -- lifecycle ------------------------------------------------------------------

    async def async_start(self) -> None:
        """Restore the subscriptions (tracked for the next CONNACK) and listen."""
        await self._owners.async_load()
        for subscription in await self._registry.async_load():
            self._connection.track(subscription.topic_filter, subscription.qos)
        for topic_filter, qos in self._hub.filters.items():
            self._connection.track(
                topic_filter, max(qos, self._tracked_qos(topic_filter))
            )
        self._hub.bind(self)
        self._stop_listening = self._connection.add_message_listener(self._on_message)

    async def async_close(self) -> None:
        """Stop taking publishes, close the link (in-flight ones get queued), flush."""
        self._hub.bind(None)
        self._outbox.stop_accepting()
        await self._connection.disconnect()
        await self._outbox.close()
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None

    async def async_flush(self) -> None:
        """Write the subscriptions now."""
        await self._registry.async_flush()
        await self._owners.async_flush()

    # -- apps and latest data -------------------------------------------------------

    def check_app(self, principal: Principal, app_id: str) -> None:
        """Refuse another user's app id while app isolation is on (else claim it)."""
        if self.isolated:
            self._owners.check(principal, app_id)

    def latest(
        self, app_id: str, topic: str, principal: Principal = SYSTEM
    ) -> LatestData | None:
        """Return the newest data on ``topic`` for a subscribed app (None before any).

        ``topic`` may be a concrete topic under any filter the app subscribed to, or
        one of its filters itself: then the newest message on any matching topic.
        With app isolation, data that arrived before the app subscribed (and was not
        retained) is not the app's.
        """
        (validate_filter if is_wildcard(topic) else validate_topic)(topic)
        self.check_app(principal, app_id)
        return self._registry.latest_for_app(app_id, topic, isolated=self.isolated)

    def was_evicted(self, topic: str) -> bool:
        """Return True when a topic's data was dropped to keep the cache's caps."""
        return self._registry.was_evicted(topic)

    def filters_matching(self, topic: str) -> list[Subscription]:
        """Return the subscriptions whose filter matches a concrete topic."""
        return list(self._registry.matching(topic))

    # -- listeners ------------------------------------------------------------------

    @callback
    def add_message_listener(
        self, listener: Callable[[LatestData], None]
    ) -> CALLBACK_TYPE:
        """Call ``listener`` for every message; return a function that stops it."""
        return self._messages.add(listener)

    @callback
    def add_subscription_listener(
        self, listener: SubscriptionListener
    ) -> CALLBACK_TYPE:
        """Call ``listener(subscription, added)`` on subscription changes."""
        return self._subscription_changes.add(lambda change: listener(*change))

    @callback
    def add_connection_listener(
        self, listener: Callable[[bool], None]
    ) -> CALLBACK_TYPE:
        """Call ``listener(connected)`` when the link goes up or down."""
        return self._connection.add_connection_listener(listener)

    @callback
    def add_failure_listener(
        self, listener: Callable[[CloudSyncError], None]
    ) -> CALLBACK_TYPE:
        """Call ``listener(error)`` when a background reconnect attempt fails."""
        return self._connection.add_failure_listener(listener)

    @callback
    def add_outbox_listener(self, listener: Callable[[], None]) -> CALLBACK_TYPE:
        """Call ``listener()`` when the outbox counts change (at most once a second)."""
        return async_dispatcher_connect(
            self._hass, signal_outbox(self.entry_id), listener
        )

    @callback
    def _on_message(self, message: ReceivedMessage) -> None:
        """Record a message on an app's filter, tell the listeners and the hub."""
        data = LatestData(
            message.topic,
            message.payload,
            dt_util.utcnow(),
            message.qos,
            message.retain,
        )
        if self._registry.covers(data.topic) or (
            self._subscribing is not None
            and topic_matches(self._subscribing, data.topic)
        ):
            self._registry.record(data)
            self._messages.notify(data)
        if self._hub.active:
            self._hub.dispatch(data)
