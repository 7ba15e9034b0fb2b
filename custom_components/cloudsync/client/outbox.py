"""Store-and-forward for one broker: publish now when possible, else queue on disk.

A publish goes straight to the broker while the link is up, nothing is queued and fewer
than ``window`` publishes wait for their acks. Otherwise (and when a direct publish
loses its link or its ack does not come in time) the message is written to the outbox
file and the caller is told it was queued. Once connected, a drain sends the queue in
order through the same window at a limited rate, at QoS 1 unless the message asked for
0, and the message is deleted only after its PUBACK/PUBCOMP. The file and its group
commits are the OutboxWriter's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
import logging
from pathlib import Path
import secrets
import time
from typing import Final

from .connection import BrokerConnection
from .errors import (
    BrokerRefusedError,
    BrokerTimeoutError,
    CloudSyncError,
    NotConnectedError,
    OutboxClosedError,
    OutboxError,
    OutboxFullError,
    PayloadTooLargeError,
)
from .outbox_batch import BatchAcks, OutgoingMessage, PublishResult
from .outbox_store import (
    DroppedMessage,
    DropReason,
    OutboxLimits,
    OverflowPolicy,
    QueuedMessage,
)
from .outbox_writer import OutboxWriter
from .runtime import TaskFactory, default_task_factory
from .topics import validate_topic

_LOGGER = logging.getLogger(__name__)

WINDOW: Final = 100  # unacknowledged publishes per broker (AWS IoT allows 100)
FETCH_ROWS: Final = 256
FETCH_BYTES: Final = 4 * 1024 * 1024
ACK_WATCHDOG: Final = 30.0
RETRY_DELAY: Final = 1.0
# A message in flight when the link dropped this often is sent alone from then on; one
# that the link drops for that often while alone goes to the dead letters.
SUSPECT_AFTER: Final = 2
MIN_SLEEP: Final = 0.01


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What the outbox holds and has done."""

    queued: int
    queued_bytes: int
    oldest: float | None
    delivered: int
    dropped: int


class RateLimiter:
    """A token bucket: ``rate`` per second on average, bursts of a tenth of a second."""

    def __init__(self, rate: float) -> None:
        """Start with a full bucket."""
        self._rate = rate
        self._burst = max(1.0, rate / 10)
        self._tokens = self._burst
        self._stamp = time.monotonic()

    async def acquire(self) -> None:
        """Take one token, sleeping until there is one."""
        while True:
            now = time.monotonic()
            self._tokens = min(
                self._burst, self._tokens + (now - self._stamp) * self._rate
            )
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep(max((1 - self._tokens) / self._rate, MIN_SLEEP))


class Outbox:
    """The durable queue in front of one BrokerConnection."""

    def __init__(  # noqa: PLR0913
        self,
        connection: BrokerConnection,
        path: Path,
        limits: OutboxLimits | None = None,
        *,
        create_task: TaskFactory | None = None,
        on_delivered: Callable[[QueuedMessage], None] | None = None,
        on_dropped: Callable[[DroppedMessage], None] | None = None,
        on_change: Callable[[], None] | None = None,
        window: int = WINDOW,
    ) -> None:
        """Prepare the outbox; open() reads the file."""
        self.path = path
        self.limits = limits or OutboxLimits()
        self._connection = connection
        self._create_task: TaskFactory = create_task or default_task_factory
        self._on_delivered = on_delivered
        self._on_change = on_change
        self._window = window
        self._url = str(connection.config.url)
        self._writer = OutboxWriter(
            path,
            self.limits,
            self._url,
            on_commit=self._committed,
            on_dropped=on_dropped,
        )
        self._limiter = RateLimiter(self.limits.rate)
        self._next_seq = 1
        # Ids are 32 hex digits: 64 random bits per outbox instance and the sequence
        # number (uuid4 read the OS's random source for every message).
        self._id_prefix = secrets.token_hex(8)
        self._closing = False
        self._active = 0  # publish() calls in progress
        self._inflight = 0  # publishes waiting for their ack, direct or drained
        self._sent: dict[int, QueuedMessage] = {}  # drained, waiting for their ack
        self._drain_task: asyncio.Task[None] | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self._failure: CloudSyncError | None = None
        self._cursor = 0
        self._unlisten: Callable[[], None] | None = None
        # seq -> link drops while in flight, while in flight alone (bounded by window).
        self._suspects: dict[int, list[int]] = {}
        self._alone: int | None = None  # the suspect sent with nothing else in flight

    @property
    def queued(self) -> int:
        """Return the messages waiting for the broker."""
        return self._writer.queued

    @property
    def stats(self) -> OutboxStats:
        """Return the counts for sensors and diagnostics."""
        return OutboxStats(
            queued=self._writer.queued,
            queued_bytes=self._writer.queued_bytes,
            oldest=self._writer.state.oldest,
            delivered=self._writer.delivered,
            dropped=self._writer.state.dropped,
        )

    async def open(self) -> tuple[Path | None, str | None]:
        """Read the file and start; return where a corrupt file went and why.

        Raise OutboxError when no outbox can be opened at all.
        """
        aside, error = await self._writer.open()
        self._next_seq = self._writer.state.max_seq + 1
        self._unlisten = self._connection.add_connection_listener(self._link_changed)
        self._housekeeping = self._create_task(
            self._housekeep(), f"cloudsync outbox expiry {self._url}"
        )
        self._ensure_drain()
        return aside, error

    async def publish(  # noqa: PLR0913
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        retain: bool = False,
        timeout: float = 10.0,
        qos_explicit: bool = True,
    ) -> PublishResult:
        """Publish now or queue; a queued message drains at QoS >= 1 unless explicit."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[PublishResult | CloudSyncError] = loop.create_future()
        if self.publish_then(
            topic,
            payload,
            qos,
            partial(_answer, answer),
            retain=retain,
            timeout=timeout,
            qos_explicit=qos_explicit,
        ):
            result = await answer
            if isinstance(result, CloudSyncError):
                raise result
            return result
        self._check_open()
        message = self._new_message(
            topic, payload, qos, retain=retain, qos_explicit=qos_explicit
        )
        self._active += 1
        try:
            if (mid := await self._publish_direct(message, qos, timeout)) is not None:
                return PublishResult(message.id, queued=False, qos=qos, mid=mid)
            await self._enqueue(message)
        finally:
            self._active -= 1
            self._progress.set()
        return PublishResult(message.id, queued=True, qos=message.qos)

    def publish_then(  # noqa: PLR0913
        self,
        topic: str,
        payload: bytes,
        qos: int,
        done: Callable[[PublishResult | CloudSyncError], None],
        *,
        retain: bool = False,
        timeout: float = 10.0,
        qos_explicit: bool = True,
    ) -> bool:
        """Send a publish now and call ``done(result)`` once it is settled.

        Only when it can go now: connected, nothing queued, room in the window, no rate
        cap. Otherwise return False, having sent nothing (publish() then queues it or
        waits for its turn). ``done`` gets what publish() would return or raise: the
        PublishResult once acknowledged, or once queued when the link or the ack is
        lost, or the error that refused it; it is never called before this returns.
        An invalid topic or payload raises here.
        """
        if not self._can_send_now(1):
            return False
        connection = self._connection
        message = self._new_message(
            topic, payload, qos, retain=retain, qos_explicit=qos_explicit
        )
        mid = [0]  # known once sent; the ack comes later
        try:
            mid[0] = connection.send_publish_then(
                topic,
                payload,
                qos,
                partial(self._publish_settled, message, qos, mid, done),
                retain=retain,
                timeout=timeout,
            )
        except NotConnectedError:
            return False  # the link is going down: publish() queues it
        self._inflight += 1
        self._active += 1
        return True

    def _publish_settled(
        self,
        message: QueuedMessage,
        qos: int,
        mid: list[int],
        done: Callable[[PublishResult | CloudSyncError], None],
        error: CloudSyncError | None,
    ) -> None:
        """Answer a publish_then: acknowledged, refused, or queued in a task."""
        self._release()
        if isinstance(error, NotConnectedError | BrokerTimeoutError):
            _LOGGER.debug("Queueing %s for %s: %s", message.id, self._url, error)
            self._create_task(self._queue_then(message, done), "cloudsync outbox")
            return
        self._active -= 1
        done(
            error
            if error is not None
            else PublishResult(message.id, queued=False, qos=qos, mid=mid[0])
        )

    async def _queue_then(
        self,
        message: QueuedMessage,
        done: Callable[[PublishResult | CloudSyncError], None],
    ) -> None:
        result: PublishResult | CloudSyncError
        try:
            await self._enqueue(message)
        except CloudSyncError as err:
            result = err
        except Exception as err:  # noqa: BLE001 - the caller gets the reason
            result = OutboxError(f"could not queue it: {err}")
        else:
            result = PublishResult(message.id, queued=True, qos=message.qos)
        finally:
            self._active -= 1
            self._progress.set()
        done(result)

    async def publish_many(
        self, messages: Sequence[OutgoingMessage], *, timeout: float = 10.0
    ) -> list[PublishResult | CloudSyncError]:
        """Publish a batch in order without a round trip per message.

        Each message goes out as soon as the window has room (waiting for room rather
        than queuing), then all acks are awaited together. What cannot go now, or
        loses its link or ack, is queued in order as publish() does; a message that
        is refused (bad topic, too large, broker's reason code) fails alone.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[PublishResult | CloudSyncError]] = (
            loop.create_future()
        )
        if self.publish_many_then(messages, partial(_answer, answer), timeout=timeout):
            return await answer
        return await self._publish_many_waiting(messages, timeout)

    def publish_many_then(
        self,
        messages: Sequence[OutgoingMessage],
        done: Callable[[list[PublishResult | CloudSyncError]], None],
        *,
        timeout: float = 10.0,
    ) -> bool:
        """Send a whole batch now and call ``done(results)`` once it is settled.

        Only when all of it can go now: connected, nothing queued, room in the window
        for every message, no rate cap. Otherwise return False, having done nothing
        (publish_many then waits for room). The results are publish_many's; ``done``
        is never called before this returns.
        """
        if not self._can_send_now(len(messages)):
            return False
        batch = BatchAcks(
            len(messages), lambda: self._batch_over(batch, messages, done)
        )
        self._active += 1
        for index, item in enumerate(messages):
            if (message := self._batch_message(batch, index, item)) is None:
                continue
            if batch.to_queue:  # the link dropped: the rest keeps its order behind
                batch.to_queue.append((index, message))
            else:
                # Sent together: each message's deadline (the connection's heap of
                # them) is the batch's, without a timer of the batch's own.
                self._batch_send(batch, index, item, message, timeout)
        batch.seal(asyncio.get_running_loop(), None)
        return True

    def _batch_message(
        self, batch: BatchAcks, index: int, item: OutgoingMessage
    ) -> QueuedMessage | None:
        """Return a batch's message, numbered; None (its result is the error) if refused."""
        try:
            return self._new_message(
                item.topic,
                item.payload,
                item.qos,
                retain=item.retain,
                qos_explicit=item.qos_explicit,
            )
        except CloudSyncError as err:
            batch.results[index] = err
            return None

    def _batch_send(
        self,
        batch: BatchAcks,
        index: int,
        item: OutgoingMessage,
        message: QueuedMessage,
        timeout: float | None = None,
    ) -> None:
        """Send one message of a batch: refused alone, queued without a link.

        With ``timeout`` the message's own deadline settles it (BrokerTimeoutError:
        queued); without, the batch's timer does.
        """
        try:
            mid = self._connection.send_publish_then(
                item.topic,
                item.payload,
                item.qos,
                partial(self._batch_acked, batch, batch.next_slot),
                retain=item.retain,
                timeout=timeout,
            )
        except NotConnectedError:
            batch.to_queue.append((index, message))
            return
        except CloudSyncError as err:
            batch.results[index] = err
            return
        self._inflight += 1
        batch.expect(index, message, mid)

    def _batch_over(
        self,
        batch: BatchAcks,
        messages: Sequence[OutgoingMessage],
        done: Callable[[list[PublishResult | CloudSyncError]], None],
    ) -> None:
        """Answer a batch sent whole, after queuing what lost its link or ack."""
        batch.read(messages)
        if batch.to_queue:
            self._create_task(self._queue_rest(batch, done), "cloudsync outbox")
            return
        self._batch_answered(batch, done)

    async def _queue_rest(
        self,
        batch: BatchAcks,
        done: Callable[[list[PublishResult | CloudSyncError]], None],
    ) -> None:
        try:
            await self._enqueue_many(batch.to_queue, batch.results)
        except Exception as err:  # noqa: BLE001 - each message gets the reason
            for index, _message in batch.to_queue:
                if batch.results[index] is None:
                    batch.results[index] = OutboxError(f"could not queue it: {err}")
        self._batch_answered(batch, done)

    def _batch_answered(
        self,
        batch: BatchAcks,
        done: Callable[[list[PublishResult | CloudSyncError]], None],
    ) -> None:
        self._active -= 1
        self._progress.set()
        done(batch.answers())

    async def _publish_many_waiting(
        self, messages: Sequence[OutgoingMessage], timeout: float
    ) -> list[PublishResult | CloudSyncError]:
        """Publish a batch that cannot go whole now: wait for room, queue the rest."""
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        over = loop.create_future()
        batch = BatchAcks(len(messages), partial(_answer, over, None))
        connection = self._connection
        self._active += 1
        try:
            for index, item in enumerate(messages):
                if (message := self._batch_message(batch, index, item)) is None:
                    continue
                if batch.to_queue or not (
                    await self._room(deadline)
                    if self._inflight >= self._window
                    else connection.connected and not self.queued
                ):
                    batch.to_queue.append((index, message))
                    continue
                if connection.throttled:
                    # The profile's outbound budget (AWS IoT: 100/s) holds for batches.
                    await connection.wait_turn(len(item.payload))
                self._batch_send(batch, index, item, message)
            batch.seal(loop, deadline)
            await over
            batch.read(messages)
            if batch.to_queue:
                await self._enqueue_many(batch.to_queue, batch.results)
        finally:
            self._active -= 1
            self._progress.set()
        return batch.answers()

    def _can_send_now(self, count: int) -> bool:
        """Return True when ``count`` publishes can go at once; raise when closed.

        Connected, nothing queued ahead of them, no rate cap, room in the window.
        """
        self._check_open()
        connection = self._connection
        return not (
            self.queued
            or not connection.connected
            or connection.throttled
            or self._inflight + count > self._window
        )

    def _check_open(self) -> None:
        if self._closing or not self._writer.is_open:
            msg = f"the outbox of {self._url} is closed"
            raise OutboxClosedError(msg)

    def _new_message(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        *,
        retain: bool,
        qos_explicit: bool,
    ) -> QueuedMessage:
        """Return a message numbered in publish order (after checking its topic)."""
        validate_topic(topic)
        message = QueuedMessage(
            seq=self._next_seq,
            id=f"{self._id_prefix}{self._next_seq:016x}",
            topic=topic,
            payload=payload,
            qos=qos if qos_explicit else max(qos, 1),
            retain=retain,
            created=time.time(),
        )
        self._next_seq += 1
        return message

    async def _room(self, deadline: float) -> bool:
        """Wait until the window has room; False when the message must be queued."""
        loop = asyncio.get_running_loop()
        while self._inflight >= self._window and self._connection.connected:
            if self._closing or (remaining := deadline - loop.time()) <= 0:
                return False
            self._progress.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._progress.wait()
            except TimeoutError:
                return False
        return self._connection.connected and not self.queued

    async def _enqueue_many(
        self,
        messages: list[tuple[int, QueuedMessage]],
        results: list[PublishResult | CloudSyncError | None],
    ) -> None:
        """Queue messages in order, in one commit; each that does not fit fails alone."""
        outcomes = await asyncio.gather(
            *(self._enqueue(message) for _index, message in messages),
            return_exceptions=True,
        )
        for (index, message), outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, CloudSyncError):
                results[index] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results[index] = PublishResult(message.id, queued=True, qos=message.qos)

    def _batch_acked(
        self, acks: BatchAcks, slot: int, error: CloudSyncError | None
    ) -> None:
        """Free a batch message's window slot once its ack settled (or failed)."""
        self._release()
        acks.settle(slot, error)

    def stop_accepting(self) -> None:
        """Refuse new publishes (before the connection is closed on shutdown)."""
        self._closing = True

    async def close(self) -> None:
        """Write what is pending and close the file; disconnect the connection first.

        Publishes still waiting for an ack then fail over to the outbox, which stays
        open until they are written.
        """
        if not self._writer.is_open:
            return
        self._closing = True
        self._progress.set()
        for task in (self._housekeeping, self._drain_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        while self._active:
            self._progress.clear()
            await self._progress.wait()
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        await self._writer.close()

    # -- publishing -----------------------------------------------------------------

    async def _publish_direct(
        self, message: QueuedMessage, qos: int, timeout: float
    ) -> int | None:
        """Send now if nothing is queued and the window has room; None to queue it."""
        if self.queued or not self._connection.connected:
            return None
        if self._inflight >= self._window:
            return None
        self._inflight += 1
        try:
            return await self._connection.publish(
                message.topic,
                message.payload,
                qos,
                retain=message.retain,
                timeout=timeout,
            )
        except (NotConnectedError, BrokerTimeoutError) as err:
            _LOGGER.debug("Queueing %s for %s: %s", message.id, self._url, err)
            return None
        finally:
            self._release()

    async def _enqueue(self, message: QueuedMessage) -> None:
        """Write a message to the outbox, within its caps; return once on disk."""
        size = message.size
        limits = self.limits
        if size > limits.max_bytes:
            msg = (
                f"a message of {size} bytes does not fit in the outbox of "
                f"{limits.max_bytes} bytes"
            )
            raise PayloadTooLargeError(msg)
        queued, queued_bytes = self._writer.queued, self._writer.queued_bytes
        if limits.overflow is OverflowPolicy.REFUSE and (
            queued + 1 > limits.max_messages or queued_bytes + size > limits.max_bytes
        ):
            msg = (
                f"the outbox of {self._url} is full ({queued} of "
                f"{limits.max_messages} messages, {queued_bytes} of "
                f"{limits.max_bytes} bytes)"
            )
            raise OutboxFullError(msg)
        await self._writer.insert(message)

    def _committed(
        self, inserted: list[QueuedMessage], dropped: list[DroppedMessage]
    ) -> None:
        """Follow a commit: drain requeued publishes next, forget dropped ones."""
        for message in inserted:
            self._cursor = min(self._cursor, message.seq - 1)
        for drop in dropped:
            self._sent.pop(drop.seq, None)
            self._suspects.pop(drop.seq, None)
        self._progress.set()
        self._changed()
        self._ensure_drain()

    # -- draining -------------------------------------------------------------------

    def _link_changed(self, connected: bool) -> None:  # noqa: FBT001
        self._progress.set()
        if connected:
            self._ensure_drain()
        self._changed()

    def _ensure_drain(self) -> None:
        if (
            self._drain_task is None
            and not self._closing
            and self._writer.is_open
            and self._connection.connected
            and self.queued
        ):
            self._drain_task = self._create_task(
                self._drain(), f"cloudsync outbox drain {self._url}"
            )

    async def _drain(self) -> None:
        """Drain round after round until the queue is empty or the link is gone."""
        try:
            while self._connection.connected and not self._closing and self.queued:
                if await self._drain_round():
                    continue
                if self._connection.connected and not isinstance(
                    self._failure, NotConnectedError
                ):
                    await asyncio.sleep(RETRY_DELAY)
        finally:
            self._drain_task = None

    async def _drain_round(self) -> bool:
        """Send everything from the head, in order; False when the round failed."""
        self._cursor = 0
        self._failure = None
        while self._round_ok():
            fetched = await self._writer.fetch(self._cursor, FETCH_ROWS, FETCH_BYTES)
            if fetched:
                self._cursor = max(self._cursor, fetched[-1].seq)
            fresh = [m for m in fetched if self._sendable(m)]
            if not fresh and len(fetched) < FETCH_ROWS:
                if not self.queued:
                    return True
                await self._wait_progress()
            for message in fresh:
                alone = self._is_suspect(message)
                while self._round_ok() and (
                    self._inflight >= self._window or (alone and self._inflight)
                ):
                    await self._wait_progress()
                await self._limiter.acquire()
                await self._connection.wait_turn(len(message.payload))
                if not self._round_ok():
                    break
                if self._sendable(message):
                    self._alone = message.seq if alone else None
                    self._send(message)
                while alone and message.seq in self._sent and self._round_ok():
                    await self._wait_progress()  # nothing else goes with a suspect
        return False

    def _is_suspect(self, message: QueuedMessage) -> bool:
        """Return True for a message the link dropped under too often to send in company."""
        return self._suspects.get(message.seq, [0, 0])[0] >= SUSPECT_AFTER

    def _link_dropped_under(self, message: QueuedMessage) -> None:
        """Count a link drop against a message in flight; dead-letter a proven culprit."""
        counts = self._suspects.setdefault(message.seq, [0, 0])
        counts[0] += 1
        if self._alone == message.seq:
            counts[1] += 1
        if counts[1] >= SUSPECT_AFTER:
            del self._suspects[message.seq]
            _LOGGER.warning(
                "The connection to %s dropped %d times while message %s to %s was in "
                "flight, %d times alone: moved to the dead letters",
                self._url,
                counts[0],
                message.id,
                message.topic,
                counts[1],
            )
            self._writer.drop(message, DropReason.DEAD_LETTER)

    def _sendable(self, message: QueuedMessage) -> bool:
        """Return False for a message in flight, acknowledged or dropped."""
        return message.seq not in self._sent and not self._writer.is_leaving(
            message.seq
        )

    def _round_ok(self) -> bool:
        return (
            self._failure is None
            and self._connection.connected
            and not self._closing
            and self._writer.is_open
        )

    async def _wait_progress(self) -> None:
        """Wait for an ack, a commit or a link change; reconnect if acks stop."""
        self._progress.clear()
        try:
            async with asyncio.timeout(ACK_WATCHDOG if self._sent else None):
                await self._progress.wait()
        except TimeoutError:
            self._connection.reconnect(
                f"{len(self._sent)} queued messages not acknowledged in {ACK_WATCHDOG:g} s"
            )

    def _send(self, message: QueuedMessage) -> None:
        try:
            self._connection.send_publish_then(
                message.topic,
                message.payload,
                message.qos,
                partial(self._on_ack, message),
                retain=message.retain,
            )
        except PayloadTooLargeError:
            self._writer.drop(message, DropReason.TOO_LARGE)
            return
        except CloudSyncError as err:
            self._failure = err
            return
        self._sent[message.seq] = message
        self._inflight += 1

    def _on_ack(self, message: QueuedMessage, error: CloudSyncError | None) -> None:
        self._release()
        if self._sent.pop(message.seq, None) is None:
            return  # dropped while in flight
        if error is None:
            self._suspects.pop(message.seq, None)
            self._writer.delivered_message(message)
            if self._on_delivered is not None:
                self._on_delivered(message)
            self._changed()
        elif isinstance(error, BrokerRefusedError):
            self._writer.drop(message, DropReason.REFUSED)
        else:
            self._cursor = min(self._cursor, message.seq - 1)
            if isinstance(error, NotConnectedError):
                self._link_dropped_under(message)
            self._failure = error

    def _release(self) -> None:
        self._inflight -= 1
        self._progress.set()

    # -- housekeeping ---------------------------------------------------------------

    async def _housekeep(self) -> None:
        """Drop expired messages now and then, connected or not."""
        interval = min(60.0, max(0.1, self.limits.max_age / 10))
        while True:
            await asyncio.sleep(interval)
            self._writer.expire()
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


def _answer[T](future: asyncio.Future[T], result: T) -> None:
    """Settle ``future`` unless its waiter gave up (cancelled)."""
    if not future.done():
        future.set_result(result)
