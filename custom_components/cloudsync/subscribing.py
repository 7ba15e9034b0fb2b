"""CloudSyncBroker's subscriptions: apps subscribe, filters reach the broker once.

The broker hears of a filter when it is new or wanted at a higher QoS, and loses it with
its last app (or automation listening through the MessageHub). With the broker down a
subscription is recorded and sent with the resubscription on the next CONNACK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from .apps import SYSTEM, Principal
from .client import BrokerConnection, Listeners, NotConnectedError, validate_filter
from .const import ACK_TIMEOUT, MAX_SUBSCRIPTIONS
from .errors import LimitReachedError
from .hub import MessageHub
from .registry import SensorOptions, Subscription, SubscriptionRegistry


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A subscription made: whether the filter was new at the broker, at which QoS."""

    topic_filter: str
    qos: int
    new_at_broker: bool
    pending: bool = False  # the broker was down: it is sent when the link is back
    granted: int | None = None  # the SUBACK's QoS when this call sent a SUBSCRIBE


class SubscribeMixin:
    """The subscribe half of CloudSyncBroker (broker.py), which sets these attributes."""

    default_qos: int
    check_app: Callable[[Principal, str], None]
    _connection: BrokerConnection
    _registry: SubscriptionRegistry
    _hub: MessageHub
    _lock: asyncio.Lock
    _subscribing: str | None  # the filter a SUBSCRIBE is out for
    _subscription_changes: Listeners[tuple[Subscription, bool]]

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
        granted: int | None = None
        async with self._lock:
            existing = self._registry.subscriptions.get(topic_filter)
            if (
                existing is None
                and len(self._registry.subscriptions) >= MAX_SUBSCRIPTIONS
            ):
                msg = f"this broker already has {MAX_SUBSCRIPTIONS} subscriptions"
                raise LimitReachedError(msg)
            if existing is None or qos > existing.qos:
                # Retained messages may come right behind the SUBACK, before this
                # coroutine resumes: _on_message keeps them for the filter meanwhile.
                self._subscribing = topic_filter
                try:
                    granted = await self._connection.subscribe(
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
            topic_filter,
            qos,
            new_at_broker=existing is None,
            pending=pending,
            granted=granted,
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
