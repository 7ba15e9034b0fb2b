"""Delivered and dropped notices for queued messages: one bus event per batch.

The recorder stores every bus event, and a drain or an expiry can settle 100,000 messages
in a second. So the first message settled after a quiet spell is announced at once (a
caller waiting for it need not wait), and the ones after it are gathered and announced
together at most once per interval: ``count``, the first ``MAX_IDS`` ids in order, and
for drops the count per reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later

MAX_IDS: Final = 1000
INTERVAL: Final = 1.0


class ReceiptBatcher:
    """Gathers settled message ids and fires them as one event per interval."""

    def __init__(
        self, hass: HomeAssistant, event_type: str, base: dict[str, Any]
    ) -> None:
        """Fire ``event_type`` with ``base`` plus the batch."""
        self._hass = hass
        self._event_type = event_type
        self._base = base
        self._ids: list[str] = []
        self._count = 0
        self._reasons: Counter[str] = Counter()
        self._cancel: CALLBACK_TYPE | None = None

    @callback
    def add(self, message_id: str, reason: str | None = None) -> None:
        """Take one settled message; fire now after a quiet spell, else batch it."""
        self._count += 1
        if len(self._ids) < MAX_IDS:
            self._ids.append(message_id)
        if reason is not None:
            self._reasons[reason] += 1
        if self._cancel is None:
            self._fire()
            self._cancel = async_call_later(
                self._hass, INTERVAL, HassJob(self._tick, cancel_on_shutdown=True)
            )

    @callback
    def flush(self) -> None:
        """Fire what is gathered and stop the timer (on unload)."""
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        self._fire()

    @callback
    def _tick(self, _now: Any) -> None:
        self._cancel = None
        if self._count:
            self._fire()
            self._cancel = async_call_later(
                self._hass, INTERVAL, HassJob(self._tick, cancel_on_shutdown=True)
            )

    def _fire(self) -> None:
        if not self._count:
            return
        data: dict[str, Any] = {
            **self._base,
            "count": self._count,
            "ids": self._ids,
            "ids_truncated": self._count > len(self._ids),
        }
        if self._reasons:
            data["reasons"] = dict(self._reasons)
        self._hass.bus.async_fire(self._event_type, data)
        self._ids = []
        self._count = 0
        self._reasons = Counter()
