"""The outbound budget of one connection: publishes and bytes per second.

The live publishes and the outbox drain take from the same budget, so together they stay
under a hosted broker's per-connection limit (AWS IoT Core: 100 publishes/s, 512 KB/s).
"""

from __future__ import annotations

import asyncio
import time

MIN_SLEEP = 0.001


class Throttle:
    """Two token buckets (messages, bytes) holding a cap in every one-second window.

    Each bucket holds a tenth of the cap and refills at nine tenths of it per second,
    so no second sees more than the cap (a plain bucket at the full rate would let
    a burst on top of it through). A message larger than the byte bucket goes once the
    bucket is full and leaves it in debt: never refused here, only delayed.
    """

    def __init__(self, rate: float | None, byte_rate: float | None = None) -> None:
        """Allow ``rate`` messages and ``byte_rate`` bytes per second (None: no cap)."""
        self._burst = max(1.0, rate / 10) if rate else 0.0
        self._rate = rate - self._burst if rate else None
        self._byte_burst = byte_rate / 10 if byte_rate else 0.0
        self._byte_rate = byte_rate - self._byte_burst if byte_rate else None
        self._tokens = self._burst
        self._bytes = self._byte_burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        """Return True when there is a cap to hold."""
        return bool(self._rate or self._byte_rate)

    async def acquire(self, size: int) -> None:
        """Wait until one message of ``size`` bytes may go, in the order asked."""
        if not self.active:
            return
        async with self._lock:
            while (wait := self._take(size)) > 0:  # noqa: ASYNC110 - time, not an event
                await asyncio.sleep(max(wait, MIN_SLEEP))

    def _take(self, size: int) -> float:
        """Take the tokens and return 0, or return how long to wait for them."""
        now = time.monotonic()
        elapsed = now - self._stamp
        self._stamp = now
        wait = 0.0
        if self._rate:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            if self._tokens < 1:
                wait = (1 - self._tokens) / self._rate
        if self._byte_rate:
            self._bytes = min(self._byte_burst, self._bytes + elapsed * self._byte_rate)
            if self._bytes < min(size, self._byte_burst):
                wait = max(
                    wait, (min(size, self._byte_burst) - self._bytes) / self._byte_rate
                )
        if wait:
            return wait
        self._tokens -= 1
        self._bytes -= size
        return 0.0
