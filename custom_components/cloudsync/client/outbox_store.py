"""The outbox file: messages waiting for a broker, in one SQLite database per broker.

Blocking code: every method runs on the outbox's own single worker thread, which also
serializes access (the connection is opened with ``check_same_thread=False`` for that
thread). WAL journal with ``synchronous=FULL``: a committed transaction survives a
crash of the process and of the machine. Each ``commit`` is one transaction holding a
whole group of inserts, the deletes of acknowledged messages and the drops the caps
ask for, so the caller can batch many publishes into one fsync.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
import sqlite3
from typing import Final

SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters VALUES ('delivered', 0), ('dropped', 0);
"""
_COLUMNS: Final = ("seq", "id", "topic", "payload", "qos", "retain", "created", "size")
_SELECT: Final = "SELECT seq, id, topic, payload, qos, retain, created FROM messages"
JOURNAL_SIZE_LIMIT: Final = 8 * 1024 * 1024
_CHUNK: Final = 500  # bound variables per DELETE
DEAD_LETTERS_KEPT: Final = 100  # the newest dead letters stay in the file, for a look
# Added after format 1 shipped, so created when missing: the messages' columns + when.
_DEAD_LETTERS: Final = (
    "CREATE TABLE IF NOT EXISTS dead_letters AS "
    "SELECT *, 0.0 AS moved FROM messages WHERE 0"
)


class OverflowPolicy(StrEnum):
    """What a full outbox does with a new message."""

    DROP_OLDEST = "drop_oldest"
    REFUSE = "refuse"


class DropReason(StrEnum):
    """Why a queued message was given up."""

    OVERFLOW = "overflow"
    EXPIRED = "expired"
    REFUSED = "refused"
    TOO_LARGE = "too_large"
    DEAD_LETTER = "dead_letter"  # the broker dropped the link for it, again and again


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """The caps of one outbox."""

    max_messages: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_age: float = 7 * 24 * 3600.0
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    rate: float = 1000.0

    def __post_init__(self) -> None:
        """Reject caps that cannot work."""
        for name in ("max_messages", "max_bytes", "max_age", "rate"):
            if not getattr(self, name) > 0:
                msg = f"outbox {name} must be above 0, not {getattr(self, name)!r}"
                raise ValueError(msg)


# Made per message (per request), so not frozen: a frozen dataclass's __init__ sets
# each field through object.__setattr__, 3-5 times the cost. Nothing changes them.
@dataclass(slots=True)
class QueuedMessage:
    """One message in the outbox; ``seq`` orders the queue, ``id`` names it to users."""

    seq: int
    id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float

    @property
    def size(self) -> int:
        """Return the bytes the message counts against the byte cap."""
        return len(self.payload) + len(self.topic.encode())


@dataclass(frozen=True, slots=True)
class DroppedMessage:
    """A message the outbox gave up, and why."""

    seq: int
    id: str
    topic: str
    reason: DropReason


@dataclass(frozen=True, slots=True)
class StoreState:
    """Totals after a transaction."""

    count: int
    bytes: int
    oldest: float | None
    delivered: int
    dropped: int
    max_seq: int


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one commit did."""

    state: StoreState
    dropped: list[DroppedMessage]


class OutboxStore:
    """The SQLite file behind one broker's outbox."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the file and check it; sqlite3.DatabaseError if unusable."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._prepare()
            count, size = self._db.execute(
                "SELECT COUNT(*), TOTAL(size) FROM messages"
            ).fetchone()
        except BaseException:
            self._db.close()
            raise
        # Kept here rather than counted per commit: COUNT(*) reads the whole table.
        self._count: int = count
        self._bytes = int(size)

    @classmethod
    def open(cls, path: Path) -> tuple[OutboxStore, Path | None, str | None]:
        """Open the file; a corrupt or unreadable one is renamed and replaced.

        Return the store, where the old file went and what was wrong with it.
        """
        try:
            return cls(path), None, None
        except sqlite3.DatabaseError as err:
            aside = set_aside(path)
            return cls(path), aside, str(err)

    def _prepare(self) -> None:
        db = self._db
        if (check := db.execute("PRAGMA quick_check").fetchone()) != ("ok",):
            msg = f"integrity check failed: {check[0] if check else 'no answer'}"
            raise sqlite3.DatabaseError(msg)
        if db.execute("PRAGMA journal_mode=WAL").fetchone() != ("wal",):
            msg = "the file cannot use a write-ahead log"
            raise sqlite3.DatabaseError(msg)
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            db.executescript(
                f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            )
        elif version != SCHEMA_VERSION:
            msg = (
                f"unknown outbox format {version} (this version reads {SCHEMA_VERSION})"
            )
            raise sqlite3.DatabaseError(msg)
        db.execute(_DEAD_LETTERS)
        columns = tuple(row[1] for row in db.execute("PRAGMA table_info(messages)"))
        if columns != _COLUMNS:
            msg = f"unexpected columns in the messages table: {columns}"
            raise sqlite3.DatabaseError(msg)

    def close(self) -> None:
        """Close the file (SQLite checkpoints the WAL)."""
        self._db.close()

    def state(self) -> StoreState:
        """Return the current totals."""
        db = self._db
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        oldest = db.execute(
            "SELECT created FROM messages ORDER BY seq LIMIT 1"
        ).fetchone()
        max_seq = db.execute("SELECT MAX(seq) FROM messages").fetchone()[0]
        return StoreState(
            count=self._count,
            bytes=self._bytes,
            oldest=oldest[0] if oldest else None,
            delivered=counters.get("delivered", 0),
            dropped=counters.get("dropped", 0),
            max_seq=max_seq or 0,
        )

    def fetch(self, after: int, max_rows: int, max_bytes: int) -> list[QueuedMessage]:
        """Return the next messages after ``seq``, in order, up to a count and a size."""
        rows: list[QueuedMessage] = []
        total = 0
        for seq, msg_id, topic, payload, qos, retain, created in self._db.execute(
            f"{_SELECT} WHERE seq > ? ORDER BY seq", (after,)
        ):
            message = QueuedMessage(
                seq, msg_id, topic, payload, qos, bool(retain), created
            )
            rows.append(message)
            total += message.size
            if len(rows) >= max_rows or total >= max_bytes:
                break
        return rows

    def commit(
        self,
        inserts: Sequence[QueuedMessage],
        delivered: Sequence[int],
        drops: Sequence[DroppedMessage],
        limits: OutboxLimits,
        expire_before: float | None,
    ) -> CommitResult:
        """Apply one group in a single transaction and return the new totals."""
        db = self._db
        totals = self._count, self._bytes
        db.execute("BEGIN IMMEDIATE")
        try:
            delivered_count = len(self._delete(delivered))
            self._keep_dead_letters(
                drop.seq for drop in drops if drop.reason is DropReason.DEAD_LETTER
            )
            gone = self._delete(drop.seq for drop in drops)
            dropped = [drop for drop in drops if drop.seq in gone]
            db.executemany(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        m.seq,
                        m.id,
                        m.topic,
                        m.payload,
                        m.qos,
                        m.retain,
                        m.created,
                        m.size,
                    )
                    for m in inserts
                ],
            )
            self._count += len(inserts)
            self._bytes += sum(m.size for m in inserts)
            if expire_before is not None:
                dropped += self._expire(expire_before)
            if limits.overflow is OverflowPolicy.DROP_OLDEST:
                dropped += self._overflow(limits)
            db.executemany(
                "UPDATE counters SET value = value + ? WHERE name = ?",
                [(delivered_count, "delivered"), (len(dropped), "dropped")],
            )
            state = self.state()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._count, self._bytes = totals
            raise
        return CommitResult(state, dropped)

    def _keep_dead_letters(self, seqs: Iterable[int]) -> None:
        """Copy messages to the dead letters (before their delete), keeping the newest."""
        for seq in seqs:
            self._db.execute(
                "INSERT INTO dead_letters SELECT *, ? FROM messages WHERE seq = ?",
                (datetime.now(UTC).timestamp(), seq),
            )
        self._db.execute(
            "DELETE FROM dead_letters WHERE seq NOT IN "
            "(SELECT seq FROM dead_letters ORDER BY seq DESC LIMIT ?)",
            (DEAD_LETTERS_KEPT,),
        )

    def dead_letters(self) -> list[QueuedMessage]:
        """Return the kept dead letters, oldest first."""
        return [
            QueuedMessage(seq, msg_id, topic, payload, qos, bool(retain), created)
            for seq, msg_id, topic, payload, qos, retain, created in self._db.execute(
                "SELECT seq, id, topic, payload, qos, retain, created "
                "FROM dead_letters ORDER BY seq"
            )
        ]

    def _delete(self, seqs: Iterable[int]) -> set[int]:
        """Delete messages by seq; return the seqs that existed."""
        wanted = list(seqs)
        gone: set[int] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for seq, size in self._db.execute(
                f"DELETE FROM messages WHERE seq IN ({marks}) RETURNING seq, size",  # noqa: S608 - placeholders only
                chunk,
            ).fetchall():
                gone.add(seq)
                self._count -= 1
                self._bytes -= size
        return gone

    def _expire(self, before: float) -> list[DroppedMessage]:
        """Drop the messages created before ``before``."""
        head = self._db.execute(
            "SELECT created FROM messages ORDER BY seq LIMIT 1"
        ).fetchone()
        if head is None or head[0] >= before:
            # Messages are queued in creation order: a young head means none expired.
            return []
        return self._drop(
            self._db.execute(
                "SELECT seq, id, topic FROM messages WHERE created < ? ORDER BY seq",
                (before,),
            ).fetchall(),
            DropReason.EXPIRED,
        )

    def _overflow(self, limits: OutboxLimits) -> list[DroppedMessage]:
        """Drop the oldest messages until both caps hold."""
        excess_count = self._count - limits.max_messages
        excess_bytes = self._bytes - limits.max_bytes
        if excess_count <= 0 and excess_bytes <= 0:
            return []
        victims: list[tuple[int, str, str]] = []
        for seq, msg_id, topic, row_size in self._db.execute(
            "SELECT seq, id, topic, size FROM messages ORDER BY seq"
        ):
            if excess_count <= 0 and excess_bytes <= 0:
                break
            victims.append((seq, msg_id, topic))
            excess_count -= 1
            excess_bytes -= row_size
        return self._drop(victims, DropReason.OVERFLOW)

    def _drop(
        self, rows: Sequence[tuple[int, str, str]], reason: DropReason
    ) -> list[DroppedMessage]:
        self._delete(seq for seq, _, _ in rows)
        return [
            DroppedMessage(seq, msg_id, topic, reason) for seq, msg_id, topic in rows
        ]


def set_aside(path: Path) -> Path:
    """Rename a bad outbox file (and its WAL) with a timestamp suffix; return its new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.replace(aside.with_name(aside.name + suffix))
    if path.exists():
        path.replace(aside)
    return aside


def remove_files(path: Path) -> None:
    """Delete an outbox file and its WAL."""
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def count_queued(path: Path) -> int:
    """Return how many messages an outbox file holds (0 when there is none)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0  # unreadable: set aside when the entry loads, never sent
    finally:
        db.close()
