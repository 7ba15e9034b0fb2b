"""Noticing that another client uses our client id.

A broker lets one session per client id live: when a second client connects with the
same id, it closes the first (MQTT 5 says so with DISCONNECT reason 0x8E "Session taken
over"; under 3.1.1 mosquitto just closes the socket). Two clients that both reconnect then
take turns kicking each other out. The sign is a link that drops right after every
connect; the answer is a longer backoff each time and a word to the host.
"""

from __future__ import annotations

import time

SESSION_TAKEN_OVER = 0x8E
SHORT_SESSION = 5.0  # seconds: a link lost sooner than this after CONNACK was short
SHORT_SESSIONS = 3  # this many short sessions in a row look like a takeover


class TakeoverWatch:
    """Counts sessions that end right after they started."""

    def __init__(
        self, short: float = SHORT_SESSION, threshold: int = SHORT_SESSIONS
    ) -> None:
        """Call a session short below ``short`` s; suspect after ``threshold``."""
        self._short = short
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
        if time.monotonic() - started >= self._short:
            self.streak = 0
            return reason == SESSION_TAKEN_OVER
        self.streak += 1
        return reason == SESSION_TAKEN_OVER or self.streak >= self._threshold

    def stable(self) -> bool:
        """Return True once the current session outlived a short one (resets the streak)."""
        if (
            self._started is not None
            and time.monotonic() - self._started >= self._short
        ):
            self.streak = 0
            return True
        return False
