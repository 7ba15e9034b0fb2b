"""One websocket client's live stream of a filter, with a bounded buffer.

Messages are gathered and sent as one event per event-loop turn (``{"messages":
[...]}``), so a burst costs one websocket frame, not one per message. Home Assistant
queues what a connection has not written yet and closes a connection past 4096 queued
frames; frames can be large, so a stream also holds back while more than
``MAX_BACKLOG`` of the connection's frames wait, and cuts itself off with
``client_too_slow`` once its own buffer passes ``MAX_BUFFERED_MESSAGES`` or
``MAX_BUFFERED_BYTES``. Memory per stream stays below those caps plus ``MAX_BACKLOG``
frames of at most ``MAX_FRAME_BYTES`` (or one message).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.websocket_api.connection import ActiveConnection
from homeassistant.components.websocket_api.messages import event_message
from homeassistant.core import CALLBACK_TYPE, callback
from homeassistant.helpers.json import json_bytes

from .const import LOGGER, MIB
from .errors import ClientTooSlowError, error_code
from .payload import encode_payload

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from .registry import LatestData

MAX_BACKLOG: Final = 16  # the connection's unwritten frames before a stream waits
MAX_BUFFERED_MESSAGES: Final = 10_000
MAX_BUFFERED_BYTES: Final = 8 * MIB
MAX_FRAME_MESSAGES: Final = 1000
MAX_FRAME_BYTES: Final = 256 * 1024
RETRY: Final = 0.02  # seconds between looks at a backed-up connection


def connection_backlog(connection: ActiveConnection) -> int | None:
    """Return how many frames the connection has not written (None: unknown).

    Home Assistant keeps them in its handler's ``_message_queue``; when that is not
    there (another HA version), only the stream's own caps and HA's apply.
    """
    handler = getattr(connection.send_message, "__self__", None)
    queue = getattr(handler, "_message_queue", None)
    return len(queue) if isinstance(queue, deque) else None


class MessageStream:
    """Pushes a hub's messages to one websocket subscription."""

    def __init__(self, connection: ActiveConnection, msg_id: int) -> None:
        """Stream to ``msg_id`` on ``connection``; start() once the result went out."""
        self._connection = connection
        self._msg_id = msg_id
        self._prefix = json_bytes({"id": msg_id, "type": "event"})[:-1]
        self._buffer: deque[bytes] = deque()
        self._bytes = 0
        self._started = False
        self._closed = False
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self._unlisten: list[CALLBACK_TYPE] = []
        self._guard: Callable[[], Exception | None] | None = None
        self.sent = 0

    @property
    def buffered(self) -> tuple[int, int]:
        """Return the messages and bytes waiting in this stream."""
        return len(self._buffer), self._bytes

    def attach(self, unlisten: CALLBACK_TYPE) -> None:
        """Remember how to stop listening (one more source the stream hears from)."""
        self._unlisten.append(unlisten)

    def guard(self, check: Callable[[], Exception | None]) -> None:
        """Have ``check()`` asked before each frame; an error it returns ends the stream."""
        self._guard = check

    @callback
    def start(self) -> None:
        """Begin sending (messages that came before the result are sent now)."""
        self._started = True
        if self._buffer:
            self._schedule(0)

    @callback
    def close(self) -> None:
        """Stop listening and drop what is buffered; safe to call twice."""
        self._closed = True
        unlisten, self._unlisten = self._unlisten, []
        for stop in unlisten:
            stop()
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self._buffer.clear()
        self._bytes = 0

    @callback
    def push(self, data: LatestData) -> None:
        """Buffer one message for the next frame; cut the client off past the caps."""
        if self._closed:
            return
        text, encoding = encode_payload(data.payload)
        item = json_bytes(
            {
                "topic": data.topic,
                "payload": text,
                "encoding": encoding,
                "qos": data.qos,
                "retain": data.retain,
                "received": data.received.timestamp(),
            }
        )
        self._buffer.append(item)
        self._bytes += len(item)
        if (
            len(self._buffer) > MAX_BUFFERED_MESSAGES
            or self._bytes > MAX_BUFFERED_BYTES
        ):
            self._cut_off()
        elif self._started and self._scheduled is None:
            self._schedule(0)

    def _schedule(self, delay: float) -> None:
        loop = self._connection.hass.loop
        self._scheduled = (
            loop.call_later(delay, self._flush)
            if delay
            else loop.call_soon(self._flush)
        )

    @callback
    def _flush(self) -> None:
        """Send what is buffered, a frame at a time, while the connection keeps up."""
        self._scheduled = None
        if self._guard is not None and (err := self._guard()) is not None:
            self.end(err)
            return
        buffer = self._buffer
        while buffer and not self._closed:
            backlog = connection_backlog(self._connection)
            if backlog is not None and backlog >= MAX_BACKLOG:
                self._schedule(RETRY)
                return
            items: list[bytes] = []
            size = 0
            while buffer and len(items) < MAX_FRAME_MESSAGES and size < MAX_FRAME_BYTES:
                item = buffer.popleft()
                items.append(item)
                size += len(item)
            self._bytes -= size
            self.sent += len(items)
            self._connection.send_message(
                b"".join(
                    (self._prefix, b',"event":{"messages":[', b",".join(items), b"]}}")
                )
            )

    def _cut_off(self) -> None:
        """End the subscription with ``client_too_slow``; free the buffer."""
        waiting, size = self.buffered
        err = ClientTooSlowError(
            f"{waiting} messages ({size} bytes) waited for the client; "
            "the subscription was ended"
        )
        LOGGER.warning(
            "Websocket stream %s of %s: %s", self._msg_id, self._connection.user, err
        )
        self.end(err)

    @callback
    def end(self, err: Exception) -> None:
        """End the subscription with an error event carrying ``err``'s code."""
        if self._closed:
            return
        self._connection.subscriptions.pop(self._msg_id, None)
        self.close()
        event: dict[str, Any] = {
            "error": {"code": error_code(err), "message": str(err)}
        }
        self._connection.send_message(event_message(self._msg_id, event))
