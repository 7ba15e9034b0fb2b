"""CloudSyncBroker: the whole API of one configured broker.

REST views, actions, entities, events and diagnostics call only this object, which
resolves the entry's option defaults once, keeps the subscriptions and latest data
(``SubscriptionRegistry``), and talks to the broker through the client's connection and
outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
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
    NotConnectedError,
    Outbox,
    OutboxStats,
    OutgoingMessage,
    ReceivedMessage,
    is_wildcard,
    topic_matches,
    validate_filter,
    validate_topic,
)
from .const import (
    ACK_TIMEOUT,
    CONF_APP_ISOLATION,
    CONF_QOS,
    CONF_RETAIN,
    DEFAULT_QOS,
    DEFAULT_RETAIN,
    MAX_SUBSCRIPTIONS,
    signal_outbox,
)
from .errors import HANDLED, LimitReachedError
from .hub import MessageHub
from .registry import (
    LatestData,
    SensorOptions,
    Subscription,
    SubscriptionRegistry,
)

if TYPE_CHECKING:
    from .mirror import Mirror

type SubscriptionListener = Callable[[Subscription, bool], None]


@dataclass(frozen=True, slots=True)
class Published:
    """How a publish was taken: sent and acknowledged, or queued (with its id)."""

    topic: str
    id: str
    queued: bool
    qos: int
    retain: bool
    mid: int | None


@dataclass(frozen=True, slots=True)
class BatchMessage:
    """One message of a batch publish; None takes the entry's option."""

    app_id: str
    topic: str
    payload: bytes
    qos: int | None = None
    retain: bool | None = None


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A subscription made: whether the filter was new at the broker, at which QoS."""

    topic_filter: str
    qos: int
    new_at_broker: bool
    pending: bool = False  # the broker was down: it is sent when the link is back


class CloudSyncBroker:
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

    # -- publish --------------------------------------------------------------------

    async def async_publish(  # noqa: PLR0913
        self,
        app_id: str,
        topic: str,
        payload: bytes,
        *,
        qos: int | None = None,
        retain: bool | None = None,
        timeout: float | None = None,
        principal: Principal = SYSTEM,
    ) -> Published:
        """Publish now, or queue durably when that cannot be done.

        ``qos`` and ``retain`` default to the entry's options; a queued message whose
        QoS was only the default goes at QoS 1.
        """
        qos_sent = self.default_qos if qos is None else qos
        # The topic and the broker profile's limits, before anything is queued.
        self._connection.check_publish(topic, payload, qos_sent)
        self.check_app(principal, app_id)
        retain = self.default_retain if retain is None else retain
        result = await self._outbox.publish(
            topic,
            payload,
            qos_sent,
            retain=retain,
            timeout=timeout or ACK_TIMEOUT,
            qos_explicit=qos is not None,
        )
        return Published(
            topic, result.id, result.queued, result.qos, retain, result.mid
        )

    async def async_publish_many(
        self,
        messages: Sequence[BatchMessage],
        *,
        timeout: float | None = None,
        principal: Principal = SYSTEM,
    ) -> list[Published | Exception]:
        """Publish a batch in order, acks gathered once; a refused message fails alone."""
        results: list[Published | Exception | None] = [None] * len(messages)
        outgoing: list[OutgoingMessage] = []
        places: list[int] = []
        for index, message in enumerate(messages):
            qos = self.default_qos if message.qos is None else message.qos
            try:
                self._connection.check_publish(message.topic, message.payload, qos)
                self.check_app(principal, message.app_id)
            except HANDLED as err:
                results[index] = err
                continue
            outgoing.append(
                OutgoingMessage(
                    message.topic,
                    message.payload,
                    qos,
                    self.default_retain if message.retain is None else message.retain,
                    qos_explicit=message.qos is not None,
                )
            )
            places.append(index)
        sent = await self._outbox.publish_many(outgoing, timeout=timeout or ACK_TIMEOUT)
        for index, item, result in zip(places, outgoing, sent, strict=True):
            results[index] = (
                result
                if isinstance(result, Exception)
                else Published(
                    item.topic,
                    result.id,
                    result.queued,
                    result.qos,
                    item.retain,
                    result.mid,
                )
            )
        return [result for result in results if result is not None]

    # -- subscriptions --------------------------------------------------------------

    async def async_subscribe(  # noqa: PLR0913
        self,
        app_id: str,
        topic_filter: str,
        *,
        qos: int | None = None,
        sensor: SensorOptions | None = None,
        timeout: float | None = None,
        principal: Principal = SYSTEM,
    ) -> Subscribed:
        """Subscribe an app; the broker hears of it when the filter is new or higher QoS.

        ``sensor`` replaces the filter's sensor options when given.
        """
        qos = self.default_qos if qos is None else qos
        self._connection.check_subscribe(topic_filter, qos)
        self.check_app(principal, app_id)
        pending = False
        async with self._lock:
            existing = self._registry.subscriptions.get(topic_filter)
            if existing is None and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
                msg = f"this broker already has {MAX_SUBSCRIPTIONS} subscriptions"
                raise LimitReachedError(msg)
            if existing is None or qos > existing.qos:
                # Retained messages may come right behind the SUBACK, before this
                # coroutine resumes: _on_message keeps them for the filter meanwhile.
                self._subscribing = topic_filter
                try:
                    await self._connection.subscribe(
                        topic_filter, qos, timeout=timeout or ACK_TIMEOUT
                    )
                except NotConnectedError:
                    # Recorded now, sent with the resubscription on the next CONNACK.
                    self._connection.track(topic_filter, qos)
                    pending = True
                finally:
                    self._subscribing = None
            subscription = self._registry.add_app(app_id, topic_filter, qos, sensor)
        self._subscription_changes.notify((subscription, True))
        return Subscribed(
            topic_filter, qos, new_at_broker=existing is None, pending=pending
        )

    async def async_unsubscribe(
        self,
        app_id: str,
        topic_filter: str,
        *,
        timeout: float | None = None,
        principal: Principal = SYSTEM,
    ) -> bool:
        """Remove an app; return True when the filter was unsubscribed at the broker."""
        validate_filter(topic_filter)
        self.check_app(principal, app_id)
        async with self._lock:
            subscription = self._registry.require(app_id, topic_filter)
            if subscription.apps == {app_id} and topic_filter not in self._hub.filters:
                await self._connection.unsubscribe(
                    topic_filter, timeout=timeout or ACK_TIMEOUT
                )
            self._registry.remove_app(app_id, topic_filter)
        self._subscription_changes.notify((subscription, False))
        return topic_filter not in self._registry.subscriptions

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

    async def async_listen(self, topic_filter: str, qos: int) -> None:
        """Have the broker send a filter an automation listens to (see MessageHub)."""
        async with self._lock:
            if qos <= self._tracked_qos(topic_filter):
                return
            try:
                await self._connection.subscribe(topic_filter, qos, timeout=ACK_TIMEOUT)
            except NotConnectedError:
                self._connection.track(topic_filter, qos)  # sent on the next CONNACK

    async def async_stop_listening(self, topic_filter: str) -> None:
        """Unsubscribe a filter no automation listens to any more, unless an app does."""
        async with self._lock:
            if topic_filter not in self._registry.subscriptions:
                await self._connection.unsubscribe(topic_filter, timeout=ACK_TIMEOUT)

    def _tracked_qos(self, topic_filter: str) -> int:
        """Return the QoS the broker sends a filter at (-1 when it is not subscribed)."""
        return self._connection.subscriptions.get(topic_filter, -1)

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
