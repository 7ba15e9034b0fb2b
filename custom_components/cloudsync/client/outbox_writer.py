"""The outbox file seen from the event loop: group commits and the counts around them.

All file work runs on one worker thread of the writer's own, which also serializes it.
Inserts, the deletes of acknowledged messages, drops and expiry wait in memory until the
writer task commits them together, one transaction per round: callers of ``insert``
wait for theirs, so a queued message is on disk before its publish is answered. Deletes
alone are delayed a moment so that they batch too. Drops come only out of commits, and
are reported there: one callback per message, one log line per burst.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
import logging
from pathlib import Path
import sqlite3
import time
from typing import Any, Final, TypeVar

from .errors import OutboxError
from .outbox_store import (
    CommitResult,
    DroppedMessage,
    DropReason,
    OutboxLimits,
    OutboxStore,
    QueuedMessage,
    StoreState,
)

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

DELETE_BATCH: Final = 200
DELETE_DELAY: Final = 0.05
DROP_LOG_WINDOW: Final = 60.0

type CommitListener = Callable[[list[QueuedMessage], list[DroppedMessage]], None]


class DropLog:
    """Logs dropped messages once per burst: the first drop, then one summary a window."""

    def __init__(self, url: str) -> None:
        """Log for one broker."""
        self._url = url
        self._counts: Counter[DropReason] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def record(self, reason: DropReason, count: int, limits: OutboxLimits) -> None:
        """Count drops; log now if no burst is running."""
        if self._timer is not None:
            self._counts[reason] += count
            return
        _LOGGER.warning(
            "Outbox of %s dropped %d message(s): %s; further drops within %g s are "
            "summarised",
            self._url,
            count,
            _explain(reason, limits),
            DROP_LOG_WINDOW,
        )
        self._timer = asyncio.get_running_loop().call_later(
            DROP_LOG_WINDOW, self._summarise
        )

    def _summarise(self) -> None:
        """Log what the burst dropped since; keep the burst open while drops go on."""
        self._timer = None
        if self._log_summary():
            self._timer = asyncio.get_running_loop().call_later(
                DROP_LOG_WINDOW, self._summarise
            )

    def _log_summary(self) -> bool:
        if not self._counts:
            return False
        _LOGGER.warning(
            "Outbox of %s dropped %d more message(s) since the last report (%s)",
            self._url,
            self._counts.total(),
            ", ".join(f"{reason}: {n}" for reason, n in self._counts.items()),
        )
        self._counts.clear()
        return True

    def close(self) -> None:
        """Log what is left of the burst and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._log_summary()


def _explain(reason: DropReason, limits: OutboxLimits) -> str:
    if reason is DropReason.OVERFLOW:
        return (
            f"the outbox is full (at most {limits.max_messages} messages and "
            f"{limits.max_bytes} bytes; policy {limits.overflow})"
        )
    if reason is DropReason.EXPIRED:
        return f"older than the maximum age of {limits.max_age:g} s"
    if reason is DropReason.REFUSED:
        return "the broker refused it"
    return "larger than the broker accepts"


class OutboxWriter:
    """Commits the outbox's changes in groups and keeps its counts."""

    def __init__(
        self,
        path: Path,
        limits: OutboxLimits,
        url: str,
        *,
        on_commit: CommitListener,
        on_dropped: Callable[[DroppedMessage], None] | None = None,
    ) -> None:
        """Prepare; open() reads the file."""
        self.path = path
        self.limits = limits
        self._url = url
        self._on_commit = on_commit
        self._on_dropped = on_dropped
        self._drop_log = DropLog(url)
        self._executor: ThreadPoolExecutor | None = None
        self._store: OutboxStore | None = None
        self.state = StoreState(0, 0, None, 0, 0, 0)
        # Waiting for the next commit: inserts with their callers' futures, acks, drops.
        self._inserts: list[tuple[QueuedMessage, asyncio.Future[None]]] = []
        self._acked: list[int] = []
        self._drops: list[DroppedMessage] = []
        self._expire_due = True
        # Counted until their commit is applied (also while it runs).
        self._unsaved_inserts = 0
        self._unsaved_bytes = 0
        self._unsaved_acks = 0
        # Rows still in the file but no longer queued (acked or dropped): seq -> size.
        self._leaving: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._delete_timer: asyncio.TimerHandle | None = None

    @property
    def is_open(self) -> bool:
        """Return True between open() and close()."""
        return self._store is not None

    @property
    def queued(self) -> int:
        """Return the messages waiting (committed or being committed, not yet gone)."""
        return self.state.count + self._unsaved_inserts - len(self._leaving)

    @property
    def queued_bytes(self) -> int:
        """Return the bytes the queued messages count against the cap."""
        return self.state.bytes + self._unsaved_bytes - sum(self._leaving.values())

    @property
    def delivered(self) -> int:
        """Return how many queued messages the broker acknowledged, ever."""
        return self.state.delivered + self._unsaved_acks

    def is_leaving(self, seq: int) -> bool:
        """Return True for a message acknowledged or dropped but not yet deleted."""
        return seq in self._leaving

    async def open(self) -> tuple[Path | None, str | None]:
        """Open the file; return where a corrupt one went and why (OutboxError if none)."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cloudsync-outbox")
        try:
            store, aside, error = await self._run(OutboxStore.open, self.path)
            self.state = await self._run(store.state)
        except (sqlite3.Error, OSError) as err:
            self._executor.shutdown()
            self._executor = None
            msg = f"cannot open the outbox {self.path}: {err}"
            raise OutboxError(msg) from err
        self._store = store
        self._kick()  # expire what aged while Home Assistant was down
        return aside, error

    async def insert(self, message: QueuedMessage) -> None:
        """Add a message to the next commit and wait until it is on disk."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inserts.append((message, future))
        self._unsaved_inserts += 1
        self._unsaved_bytes += message.size
        self._kick()
        await future

    def delivered_message(self, message: QueuedMessage) -> None:
        """Delete an acknowledged message (batched with others)."""
        self._leaving[message.seq] = message.size
        self._acked.append(message.seq)
        self._unsaved_acks += 1
        if len(self._acked) >= DELETE_BATCH:
            self._kick()
        elif self._delete_timer is None and self._task is None:
            self._delete_timer = asyncio.get_running_loop().call_later(
                DELETE_DELAY, self._kick
            )

    def drop(self, message: QueuedMessage, reason: DropReason) -> None:
        """Give a message up; it is reported once the drop is committed."""
        self._leaving[message.seq] = message.size
        self._drops.append(
            DroppedMessage(message.seq, message.id, message.topic, reason)
        )
        self._kick()

    def expire(self) -> None:
        """Drop messages older than the maximum age in the next commit."""
        self._expire_due = True
        self._kick()

    async def fetch(
        self, after: int, max_rows: int, max_bytes: int
    ) -> list[QueuedMessage]:
        """Read the next messages after ``seq`` from the file."""
        assert self._store is not None  # noqa: S101
        return await self._run(self._store.fetch, after, max_rows, max_bytes)

    async def close(self) -> None:
        """Commit what is pending, close the file and stop the thread."""
        if self._store is None:
            return
        while self._task is not None or self._has_work():
            self._kick()
            if (task := self._task) is None:
                break
            await task
        if self._delete_timer is not None:
            self._delete_timer.cancel()
            self._delete_timer = None
        self._drop_log.close()
        store, self._store = self._store, None
        await self._run(store.close)
        if self._executor is not None:
            self._executor.shutdown()  # its only thread is idle: this join is instant
            self._executor = None

    # -- committing -----------------------------------------------------------------

    def _has_work(self) -> bool:
        return bool(self._inserts or self._acked or self._drops or self._expire_due)

    def _kick(self) -> None:
        """Start the writer task if there is something to commit."""
        if self._delete_timer is not None:
            self._delete_timer.cancel()
            self._delete_timer = None
        if self._task is None and self._store is not None and self._has_work():
            # Not an entry background task: Home Assistant cancels those on unload,
            # and callers wait for this one's commits. close() waits for it.
            self._task = asyncio.get_running_loop().create_task(
                self._write(), name=f"cloudsync outbox writer {self._url}"
            )

    async def _write(self) -> None:
        """Commit groups until nothing is left."""
        try:
            while self._has_work() and self._store is not None:
                await self._commit_group(self._store)
        finally:
            self._task = None

    async def _commit_group(self, store: OutboxStore) -> None:
        inserts, self._inserts = self._inserts, []
        acked, self._acked = self._acked, []
        drops, self._drops = self._drops, []
        expire_before = time.time() - self.limits.max_age if self._expire_due else None
        self._expire_due = False
        try:
            result = await self._run(
                store.commit,
                [message for message, _ in inserts],
                acked,
                drops,
                self.limits,
                expire_before,
            )
        except (sqlite3.Error, OSError) as err:
            _LOGGER.error("Cannot write the outbox %s: %s", self.path, err)  # noqa: TRY400
            self._forget(inserts, acked, drops)
            error = OutboxError(f"cannot write the outbox {self.path}: {err}")
            for _, future in inserts:
                if not future.done():
                    future.set_exception(error)
            return
        self._forget(inserts, acked, drops)
        self._apply(result, inserts)

    def _forget(
        self,
        inserts: list[tuple[QueuedMessage, asyncio.Future[None]]],
        acked: list[int],
        drops: list[DroppedMessage],
    ) -> None:
        """Take a committed (or failed) group out of the pending counts."""
        self._unsaved_inserts -= len(inserts)
        self._unsaved_bytes -= sum(message.size for message, _ in inserts)
        self._unsaved_acks -= len(acked)
        for seq in acked:
            self._leaving.pop(seq, None)
        for drop in drops:
            self._leaving.pop(drop.seq, None)

    def _apply(
        self,
        result: CommitResult,
        inserts: list[tuple[QueuedMessage, asyncio.Future[None]]],
    ) -> None:
        """Take the new totals, resolve the callers and report drops."""
        self.state = result.state
        for _, future in inserts:
            if not future.done():
                future.set_result(None)
        reasons: Counter[DropReason] = Counter()
        for drop in result.dropped:
            reasons[drop.reason] += 1
            if self._on_dropped is not None:
                self._on_dropped(drop)
        for reason, count in reasons.items():
            self._drop_log.record(reason, count, self.limits)
        self._on_commit([message for message, _ in inserts], result.dropped)

    async def _run(self, func: Callable[..., _T], *args: Any) -> _T:
        assert self._executor is not None  # noqa: S101
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, func, *args
        )
