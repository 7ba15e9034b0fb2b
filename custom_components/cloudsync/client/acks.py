"""Futures waiting for the broker's answer to a packet, by message id."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .errors import BrokerRefusedError, BrokerTimeoutError, CloudSyncError
from .runtime import wait_with_timeout

_LOGGER = logging.getLogger(__name__)

# Called once with None (acknowledged) or the error that settles the publish.
type AckCallback = Callable[[CloudSyncError | None], None]
_FAILURE = 0x80  # reason codes from here on are failures


class AckTracker:
    """PUBACK/PUBCOMP/SUBACK/UNSUBACK futures of one connection."""

    def __init__(self, url: str, record: Callable[[float], None]) -> None:
        """Track acks from the broker at ``url`` (named in timeout errors).

        ``record(sent_at)`` is told when each acknowledged lane publish was sent.
        """
        self._url = url
        self._record = record
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # The fast lane's QoS 1 publishes: a callback and when the publish was sent.
        self._calls: dict[int, tuple[AckCallback, float]] = {}

    def __len__(self) -> int:
        """Return how many packets wait for an answer."""
        return len(self._pending) + len(self._calls)

    def expect_call(self, mid: int, callback: AckCallback) -> None:
        """Call ``callback`` when the broker answers the lane publish ``mid``."""
        self._calls[mid] = (callback, time.monotonic())

    def forget(self, mid: int) -> None:
        """Stop waiting for the lane publish ``mid`` (its caller gave up)."""
        self._calls.pop(mid, None)

    def lane_ack(self, mid: int, reason: int) -> None:
        """Settle a lane publish with its PUBACK's reason code value."""
        if (entry := self._calls.pop(mid, None)) is None:
            return
        callback, sent_at = entry
        if reason < _FAILURE:
            self._record(sent_at)
            error = None
        else:
            error = BrokerRefusedError(f"the broker refused it: {_reason_name(reason)}")
        _call(callback, error)

    def expect(self, loop: asyncio.AbstractEventLoop, mid: int) -> asyncio.Future[Any]:
        """Return a future that the broker's answer to packet ``mid`` resolves."""
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[mid] = future
        return future

    async def wait(
        self, mid: int, future: asyncio.Future[Any], timeout: float, what: str
    ) -> Any:
        """Wait for the answer to packet ``mid``; BrokerTimeoutError past ``timeout``."""
        try:
            return await wait_with_timeout(
                future,
                timeout,
                lambda: BrokerTimeoutError(
                    f"{self._url} did not acknowledge the {what} within {timeout:g} s"
                ),
            )
        finally:
            if self._pending.get(mid) is future:
                del self._pending[mid]
            elif future.cancelled() or not future.done():
                self.forget(mid)  # a lane publish's future (settle_future), unanswered

    def resolve(self, mid: int, reason: ReasonCode | list[ReasonCode]) -> None:
        """Settle packet ``mid``: a failure reason code fails it."""
        if (future := self._pending.pop(mid, None)) is None or future.done():
            return
        first = reason[0] if isinstance(reason, list) and reason else reason
        if isinstance(first, ReasonCode) and first.is_failure:
            future.set_exception(BrokerRefusedError(f"the broker refused it: {first}"))
        else:
            future.set_result(reason)

    def on_ack(
        self,
        _mqttc: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason: ReasonCode | list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        """Settle a PUBACK/PUBCOMP/UNSUBACK or a QoS 0 write (paho's on_publish)."""
        self.resolve(mid, reason)

    def answer(self, mid: int, reasons: list[ReasonCode]) -> None:
        """Settle a subscribe with its SUBACK's codes; the caller judges failures."""
        if (future := self._pending.pop(mid, None)) is not None and not future.done():
            future.set_result(reasons)

    def fail_all(self, error: CloudSyncError) -> None:
        """Fail every future still waiting (the connection is gone)."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        calls, self._calls = self._calls, {}
        for callback, _sent_at in calls.values():
            _call(callback, error)


def settle_future(future: asyncio.Future[Any], error: CloudSyncError | None) -> None:
    """Settle ``future`` as an AckCallback would be called."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _reason_name(value: int) -> str:
    """Return paho's name of a PUBACK reason code (its number when paho has none)."""
    try:
        return str(ReasonCode(PacketTypes.PUBACK, identifier=value))
    except (KeyError, ValueError):
        return f"reason code 0x{value:02X}"


def _call(callback: AckCallback, error: CloudSyncError | None) -> None:
    """Call an ack callback; one that raises is logged (it runs inside paho's read)."""
    try:
        callback(error)
    except Exception:
        _LOGGER.exception("Error in a publish's ack callback")
