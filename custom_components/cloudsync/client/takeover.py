"""Noticing that another client uses our client id.

A broker lets one session per client id live: when a second client connects with the
same id, it closes the first (MQTT 5 says so with DISCONNECT reason 0x8E "Session taken
over"; under 3.1.1 mosquitto just closes the socket). Two clients that both reconnect then
take turns kicking each other out. The sign is a link that drops right after every
connect; the answer is a longer backoff each time and a word to the host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
import time

from .runtime import Listeners

_LOGGER = logging.getLogger(__name__)

SESSION_TAKEN_OVER = 0x8E
SHORT_SESSION = 5.0  # seconds: a link lost sooner than this after CONNACK was short
SHORT_SESSIONS = 3  # this many short sessions in a row look like a takeover


class TakeoverWatch:
    """Counts sessions that end right after they started."""

    def __init__(
        self, short: float = SHORT_SESSION, threshold: int = SHORT_SESSIONS
    ) -> None:
        """Call a session short below ``short`` s; suspect after ``threshold``."""
        self.short = short
        self._threshold = threshold
        self._started: float | None = None
        self.streak = 0

    def connected(self) -> None:
        """Note the start of a session (CONNACK accepted)."""
        self._started = time.monotonic()

    def lost(self, reason: int) -> bool:
        """Note the end of a session; return True when it looks like a takeover."""
        started, self._started = self._started, None
        if started is None:
            return False
        if time.monotonic() - started >= self.short:
            self.streak = 0
            return reason == SESSION_TAKEN_OVER
        self.streak += 1
        return reason == SESSION_TAKEN_OVER or self.streak >= self._threshold

    def stable(self) -> bool:
        """Return True once the current session outlived a short one (resets the streak)."""
        if self._started is not None and time.monotonic() - self._started >= self.short:
            self.streak = 0
            return True
        return False


class TakeoverReporter:
    """Tells listeners when a takeover is suspected (True) and when it is over (False)."""

    def __init__(self, url: str, client_id: str) -> None:
        """Watch the sessions of ``client_id`` at the broker ``url``."""
        self._url = url
        self._client_id = client_id
        self.watch = TakeoverWatch()
        self._listeners = Listeners[bool](f"client id takeovers at {url}")
        self._suspected = False
        self._timer: asyncio.TimerHandle | None = None

    def add_listener(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``listener(suspected)`` on every change."""
        return self._listeners.add(listener)

    def connected(self, loop: asyncio.AbstractEventLoop) -> None:
        """Note a session start; look again once it would no longer be short."""
        self.watch.connected()
        self._timer = loop.call_later(self.watch.short, self._check_stable)

    def lost(self, reason: object, code: int) -> None:
        """Note a session end; report a takeover when it looks like one."""
        self.stop()
        if not self.watch.lost(code):
            return
        if not self._suspected:
            _LOGGER.warning(
                "%s closes every session right after it starts (%s): another client "
                "probably uses the client id %s; backing off",
                self._url,
                reason,
                self._client_id,
            )
        self._suspected = True
        self._listeners.notify(True)  # noqa: FBT003

    def stop(self) -> None:
        """Cancel the pending look (the link is gone)."""
        if (timer := self._timer) is not None:
            self._timer = None
            timer.cancel()

    def _check_stable(self) -> None:
        self._timer = None
        if self.watch.stable() and self._suspected:
            self._suspected = False
            self._listeners.notify(False)  # noqa: FBT003
