"""Futures waiting for the broker's answer to a packet, by message id.

A publish's timeout is a deadline in one heap with one timer for the connection, not
a timer per publish (a publish costs a heap push; its ack usually pops it again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import heapq
import itertools
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
# The deadline heap is rebuilt from its live entries past this many per waiting packet.
_STALE_PER_LIVE = 4
_STALE_SLACK = 256


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
        # Publish deadlines: (when, order, mid, waiter, topic, timeout); an entry whose
        # waiter is no longer the one waiting for ``mid`` was answered.
        self._deadlines: list[tuple[float, int, int, object, str, float]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """Return how many packets wait for an answer."""
        return len(self._pending) + len(self._calls)

    def expect_call(
        self,
        mid: int,
        callback: AckCallback,
        timeout: float | None = None,
        topic: str = "",
    ) -> None:
        """Call ``callback`` when the broker answers the lane publish ``mid``.

        With ``timeout``, BrokerTimeoutError settles it once that many seconds passed.
        """
        now = time.monotonic()
        self._calls[mid] = entry = (callback, now)
        if timeout is not None:
            self._add_deadline(now + timeout, mid, entry, topic, timeout)

    def expect_publish(
        self, loop: asyncio.AbstractEventLoop, mid: int, timeout: float, topic: str
    ) -> asyncio.Future[Any]:
        """Return a future for paho's publish ``mid``, failed past ``timeout`` s."""
        future = self.expect(loop, mid)
        self._add_deadline(time.monotonic() + timeout, mid, future, topic, timeout)
        return future

    def _add_deadline(
        self, when: float, mid: int, waiter: object, topic: str, timeout: float
    ) -> None:
        deadlines = self._deadlines
        if len(deadlines) > _STALE_PER_LIVE * len(self) + _STALE_SLACK:
            # Answered deadlines behind a live earlier one (a longer timeout than the
            # publishes after it) wait for their turn at the head: not without bound.
            deadlines = self._deadlines = [
                entry for entry in deadlines if self._waiting(entry[2], entry[3])
            ]
            heapq.heapify(deadlines)
        heapq.heappush(
            deadlines, (when, next(self._order), mid, waiter, topic, timeout)
        )
        if deadlines[0][0] == when and (
            (timer := self._timer) is None or when < timer.when()
        ):
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # The loop's clock is time.monotonic(), as the deadlines'.
        self._timer = asyncio.get_running_loop().call_at(when, self._expire)

    def _waiting(self, mid: int, waiter: object) -> bool:
        """Return True while ``waiter`` still waits for the answer to ``mid``."""
        return self._calls.get(mid) is waiter or self._pending.get(mid) is waiter

    def _trim(self) -> None:
        """Drop the answered deadlines at the heap's head (usually the one just acked).

        The timer stays when the heap empties: the next deadlines come later than it,
        and firing with nothing due it is not armed again. (Cancelling it each time
        made and cancelled a TimerHandle about every other REST publish, and the loop
        keeps cancelled ones in its heap until their time.)
        """
        deadlines = self._deadlines
        while deadlines and not self._waiting(deadlines[0][2], deadlines[0][3]):
            heapq.heappop(deadlines)

    def _expire(self) -> None:
        """Fail the publishes whose deadline passed; arm the timer for the next one."""
        self._timer = None
        deadlines, now = self._deadlines, time.monotonic()
        while deadlines and deadlines[0][0] <= now:
            _when, _order, mid, waiter, topic, timeout = heapq.heappop(deadlines)
            if not self._waiting(mid, waiter):
                continue
            error = BrokerTimeoutError(
                f"{self._url} did not acknowledge the publish to {topic} "
                f"within {timeout:g} s"
            )
            if isinstance(waiter, asyncio.Future):
                del self._pending[mid]
                settle_future(waiter, error)
            else:
                del self._calls[mid]
                _call(waiter[0], error)  # type: ignore[index]
        self._trim()
        if deadlines:
            self._arm(deadlines[0][0])

    def forget(self, mid: int) -> None:
        """Stop waiting for packet ``mid`` (its caller gave up)."""
        self._calls.pop(mid, None)
        self._pending.pop(mid, None)
        if self._deadlines:
            self._trim()

    def lane_ack(self, mid: int, reason: int) -> None:
        """Settle a lane publish with its PUBACK's reason code value."""
        if (entry := self._calls.pop(mid, None)) is None:
            return
        callback, sent_at = entry
        if self._deadlines:
            self._trim()
        if reason < _FAILURE:
            self._record(sent_at)
            error = None
        else:
            error = BrokerRefusedError(f"the broker refused it: {_reason_name(reason)}")
        _call(callback, error)

    def lane_written(self, mids: list[int]) -> None:
        """Settle lane QoS 0 publishes: they were written to the socket."""
        calls = self._calls
        for mid in mids:
            if (entry := calls.pop(mid, None)) is not None:
                _call(entry[0], None)
        if self._deadlines:
            self._trim()

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
        if (future := self._pending.pop(mid, None)) is None:
            return
        if self._deadlines:
            self._trim()
        if future.done():
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
        calls, self._calls = self._calls, {}
        self._deadlines = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
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
