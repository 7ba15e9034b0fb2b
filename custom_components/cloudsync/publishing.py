"""CloudSyncBroker's publishes: the entry's option defaults, app checks, the outbox.

A publish goes out now or is queued durably (``Published.queued``); a batch is sent in
order with its acks gathered once, and a message the broker's profile or app isolation
refuses fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .apps import SYSTEM, Principal
from .client import (
    BrokerConnection,
    CloudSyncError,
    Outbox,
    OutgoingMessage,
    PublishResult,
)
from .const import ACK_TIMEOUT
from .errors import HANDLED


# Made per message (per request), so not frozen: a frozen dataclass's __init__ sets
# each field through object.__setattr__, 3-5 times the cost. Nothing changes them.
@dataclass(slots=True)
class Published:
    """How a publish was taken: sent and acknowledged, or queued (with its id)."""

    topic: str
    id: str
    queued: bool
    qos: int
    retain: bool
    mid: int | None


@dataclass(slots=True)
class BatchMessage:
    """One message of a batch publish; None takes the entry's option."""

    app_id: str
    topic: str
    payload: bytes
    qos: int | None = None
    retain: bool | None = None


class PublishMixin:
    """The publish half of CloudSyncBroker (broker.py), which sets these attributes."""

    default_qos: int
    default_retain: bool
    check_app: Callable[[Principal, str], None]
    _connection: BrokerConnection
    _outbox: Outbox

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
        results, outgoing, places = self._outgoing(messages, principal)
        sent = await self._outbox.publish_many(outgoing, timeout=timeout or ACK_TIMEOUT)
        return _published(results, outgoing, places, sent)

    def publish_many_then(
        self,
        messages: Sequence[BatchMessage],
        done: Callable[[list[Published | Exception]], None],
        *,
        timeout: float | None = None,
        principal: Principal = SYSTEM,
    ) -> bool:
        """Publish a batch that can go whole now; ``done(results)`` once settled.

        Return False, having sent nothing, when it cannot all go now (see
        Outbox.publish_many_then): async_publish_many then waits for room.
        """
        results, outgoing, places = self._outgoing(messages, principal)
        return self._outbox.publish_many_then(
            outgoing,
            lambda sent: done(_published(results, outgoing, places, sent)),
            timeout=timeout or ACK_TIMEOUT,
        )

    def _outgoing(
        self, messages: Sequence[BatchMessage], principal: Principal
    ) -> tuple[list[Published | Exception | None], list[OutgoingMessage], list[int]]:
        """Check each message and resolve its defaults; a refused one fails alone.

        Return the results so far (the refusals), the messages to send and where
        each of those goes in the results.
        """
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
        return results, outgoing, places

    async def async_publish_own(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[PublishResult | CloudSyncError]:
        """Publish the integration's own messages (the mirror's) in order.

        No app and no option defaults: each message says its QoS and retain flag. The
        broker's profile still refuses what it would refuse, message by message.
        """
        profile = self._connection.config.profile
        results: list[PublishResult | CloudSyncError | None] = [None] * len(messages)
        outgoing: list[OutgoingMessage] = []
        places: list[int] = []
        for index, message in enumerate(messages):
            try:
                profile.check_publish(message.topic, message.payload, message.qos)
            except CloudSyncError as err:
                results[index] = err
                continue
            outgoing.append(message)
            places.append(index)
        sent = await self._outbox.publish_many(outgoing, timeout=ACK_TIMEOUT)
        for index, result in zip(places, sent, strict=True):
            results[index] = result
        return [result for result in results if result is not None]


def _published(
    results: list[Published | Exception | None],
    outgoing: list[OutgoingMessage],
    places: list[int],
    sent: Sequence[PublishResult | CloudSyncError],
) -> list[Published | Exception]:
    """Put the outbox's answers for ``outgoing`` in their places."""
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
