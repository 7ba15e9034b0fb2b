"""One publish_many in flight: its messages, their acks, its deadline.

A batch that can go whole at once (connected, nothing queued, room in the window, no
rate cap) is sent without waiting and finishes from its last ack's callback, so a
caller that answers from a callback (the websocket API) needs no task per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import BrokerTimeoutError, CloudSyncError, NotConnectedError
from .outbox_store import QueuedMessage


# Made per message (per request), so not frozen: a frozen dataclass's __init__ sets
# each field through object.__setattr__, 3-5 times the cost. Nothing changes them.
@dataclass(slots=True)
class PublishResult:
    """How a publish was taken: sent and acknowledged, or queued in the outbox."""

    id: str
    queued: bool
    qos: int
    mid: int | None = None


@dataclass(slots=True)
class OutgoingMessage:
    """One message of a batch; a QoS that was only a default drains at QoS 1."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    qos_explicit: bool = True


type BatchResults = list[PublishResult | CloudSyncError | None]
# Never raised: the answer of a slot until its ack settles it.
_UNANSWERED = BrokerTimeoutError("no acknowledgement in time")


class BatchAcks:
    """One batch: its results so far, what was sent, what is to be queued, the acks.

    ``finished`` is called once: when the batch is sealed and every ack settled, or
    at the deadline. A late ack (after that) still frees its window slot in the
    outbox; the batch has read its slots by then and queued the unanswered ones.
    """

    __slots__ = (
        "_errors",
        "_finished",
        "_left",
        "_sealed",
        "_timer",
        "results",
        "sent",
        "to_queue",
    )

    def __init__(self, size: int, finished: Callable[[], None]) -> None:
        """Hold a batch of ``size`` messages; call ``finished`` once it is over."""
        self.results: BatchResults = [None] * size
        self.sent: list[tuple[int, QueuedMessage, int]] = []  # (index, message, mid)
        self.to_queue: list[tuple[int, QueuedMessage]] = []  # (index, message)
        self._finished: Callable[[], None] | None = finished
        self._left = 0
        self._sealed = False
        self._timer: asyncio.TimerHandle | None = None
        self._errors: list[CloudSyncError | None] = []

    @property
    def next_slot(self) -> int:
        """Return the slot the next publish sent gets."""
        return len(self._errors)

    def expect(self, index: int, message: QueuedMessage, mid: int) -> None:
        """Record message ``index`` as sent, with its mid, waiting for its ack."""
        self.sent.append((index, message, mid))
        self._errors.append(_UNANSWERED)
        self._left += 1

    def seal(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        """Say that nothing more is sent; finish by ``deadline`` (loop time).

        None: every message sent has a deadline of its own that settles it.
        """
        self._sealed = True
        if not self._left:
            loop.call_soon(self._finish)  # never from inside the caller
        elif deadline is not None:
            self._timer = loop.call_at(deadline, self._finish)

    def settle(self, slot: int, error: CloudSyncError | None) -> None:
        """Record the answer of ``slot``."""
        self._errors[slot] = error
        self._left -= 1
        if not self._left and self._sealed:
            self._finish()

    def _finish(self) -> None:
        if (finished := self._finished) is None:
            return
        self._finished = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        finished()

    def read(self, messages: Sequence[OutgoingMessage]) -> None:
        """Fill in the results of what was sent; queue what lost its link or ack."""
        results = self.results
        for slot, (index, message, mid) in enumerate(self.sent):
            error = self._errors[slot]
            if error is None:
                results[index] = PublishResult(
                    message.id, queued=False, qos=messages[index].qos, mid=mid
                )
            elif isinstance(error, (NotConnectedError, BrokerTimeoutError)):
                self.to_queue.append((index, message))  # also one still unanswered
            else:
                results[index] = error
        self.to_queue.sort()

    def answers(self) -> list[PublishResult | CloudSyncError]:
        """Return the results in order (each message has one once it is read)."""
        return [result for result in self.results if result is not None]
