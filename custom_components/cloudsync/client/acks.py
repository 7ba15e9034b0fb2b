"""Futures waiting for the broker's answer to a packet, by message id."""

from __future__ import annotations

import asyncio
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .errors import BrokerRefusedError, BrokerTimeoutError, CloudSyncError
from .runtime import wait_with_timeout


class AckTracker:
    """PUBACK/PUBCOMP/SUBACK/UNSUBACK futures of one connection."""

    def __init__(self, url: str) -> None:
        """Track acks from the broker at ``url`` (named in timeout errors)."""
        self._url = url
        self._pending: dict[int, asyncio.Future[Any]] = {}

    def __len__(self) -> int:
        """Return how many packets wait for an answer."""
        return len(self._pending)

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
