"""The outbox without Home Assistant: the SQLite store, and store-and-forward against
real mosquitto brokers."""

from __future__ import annotations

import asyncio
from contextlib import closing
from pathlib import Path
import sqlite3
import time
from unittest.mock import patch

import pytest

from custom_components.cloudsync.client import (
    BrokerConnection,
    DroppedMessage,
    DropReason,
    InvalidTopicError,
    Outbox,
    OutboxClosedError,
    OutboxError,
    OutboxFullError,
    OutboxLimits,
    OutgoingMessage,
    OverflowPolicy,
    PayloadTooLargeError,
    Protocol,
    PublishResult,
    QueuedMessage,
    outbox as outbox_module,
    outbox_writer,
    remove_files,
)
from custom_components.cloudsync.client.outbox import RateLimiter
from custom_components.cloudsync.client.outbox_store import OutboxStore, set_aside
from custom_components.cloudsync.client.outbox_writer import DropLog
from tests.delivery import SUBSCRIBER_ARGS, compare, persistent_broker, save_state
from tests.mosquitto import BrokerFactory, Mosquitto, MqttSubscriber, dynsec_config

from .helpers import config_for, wait_until


def _message(
    seq: int, payload: bytes = b"x", created: float | None = None
) -> QueuedMessage:
    return QueuedMessage(
        seq, f"id{seq}", f"t/{seq}", payload, 1, False, created or time.time()
    )


# -- the store ------------------------------------------------------------------------


def test_store_commit_fetch_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    store = OutboxStore(path)
    limits = OutboxLimits()
    result = store.commit([_message(i) for i in range(1, 6)], [], [], limits, None)
    assert (result.state.count, result.state.max_seq) == (5, 5)
    assert result.state.bytes == sum(_message(i).size for i in range(1, 6))
    assert [m.seq for m in store.fetch(0, 3, 1 << 20)] == [1, 2, 3]
    assert [m.seq for m in store.fetch(3, 10, 1 << 20)] == [4, 5]
    assert len(store.fetch(0, 10, 1)) == 1  # the byte bound still returns one
    drop = DroppedMessage(2, "id2", "t/2", DropReason.REFUSED)
    result = store.commit([], [1, 99], [drop], limits, None)
    assert (result.state.count, result.state.delivered, result.state.dropped) == (
        3,
        1,
        1,
    )
    assert result.dropped == [drop]
    store.close()
    reopened = OutboxStore(path)
    state = reopened.state()
    assert (state.count, state.delivered, state.dropped, state.max_seq) == (3, 1, 1, 5)
    assert [m.payload for m in reopened.fetch(0, 10, 1 << 20)] == [b"x"] * 3
    reopened.close()


def test_store_drop_oldest_by_count_and_bytes(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "outbox.db")
    by_count = OutboxLimits(max_messages=3)
    result = store.commit([_message(i) for i in range(1, 6)], [], [], by_count, None)
    assert [d.seq for d in result.dropped] == [1, 2]
    assert {d.reason for d in result.dropped} == {DropReason.OVERFLOW}
    assert result.state.count == 3
    size = _message(9, b"y" * 100).size
    by_bytes = OutboxLimits(max_bytes=2 * size + 2)
    result = store.commit(
        [_message(i, b"y" * 100) for i in (6, 7)], [], [], by_bytes, None
    )
    # 3 small ones (4 bytes each) + 2 big ones are 10 bytes over: 3 small ones go.
    assert [d.seq for d in result.dropped] == [3, 4, 5]
    assert result.state.bytes == 2 * size
    refuse = OutboxLimits(max_messages=1, overflow=OverflowPolicy.REFUSE)
    result = store.commit([_message(8)], [], [], refuse, None)
    assert result.dropped == []  # the store never drops under "refuse"
    store.close()


def test_store_expiry(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "outbox.db")
    now = time.time()
    old = [_message(i, created=now - 100 + i) for i in range(1, 4)]
    young = [_message(i, created=now) for i in range(4, 6)]
    store.commit([*old, *young], [], [], OutboxLimits(), None)
    result = store.commit([], [], [], OutboxLimits(), now - 97.5)
    assert [(d.seq, d.reason) for d in result.dropped] == [
        (1, DropReason.EXPIRED),
        (2, DropReason.EXPIRED),
    ]
    assert result.state.oldest == pytest.approx(now - 97)
    assert store.commit([], [], [], OutboxLimits(), now - 200).dropped == []
    store.close()


@pytest.mark.parametrize(
    "damage",
    ["garbage", "newer_format", "wrong_table", "truncated"],
)
def test_store_sets_aside_unreadable_files(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "outbox.db"
    store = OutboxStore(path)
    store.commit(
        [_message(i, b"z" * 2000) for i in range(1, 200)], [], [], OutboxLimits(), None
    )
    store.close()
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "newer_format":
        with closing(sqlite3.connect(path)) as db, db:  # commit, then close
            db.execute("PRAGMA user_version=99")
    elif damage == "wrong_table":
        with closing(sqlite3.connect(path)) as db, db:  # commit, then close
            db.execute("ALTER TABLE messages ADD COLUMN extra TEXT")
    else:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] + b"\xff" * 4096)
    original = path.read_bytes()
    store, aside, error = OutboxStore.open(path)
    assert aside is not None
    assert error
    assert aside.read_bytes() == original
    assert aside.name.startswith("outbox.db.corrupt-")
    assert store.state().count == 0
    store.commit([_message(1)], [], [], OutboxLimits(), None)
    store.close()


def test_set_aside_and_remove_include_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).write_bytes(b"x")
    aside = set_aside(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        aside.name + suffix for suffix in ("", "-wal", "-shm")
    )
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).write_bytes(b"x")
    remove_files(path)
    assert not path.exists()
    assert not path.with_name(path.name + "-wal").exists()


@pytest.mark.parametrize(
    "changes",
    [{"max_messages": 0}, {"max_bytes": -1}, {"max_age": 0}, {"rate": 0}],
)
def test_limits_must_be_positive(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be above 0"):
        OutboxLimits(**changes)  # type: ignore[arg-type]


async def test_rate_limiter() -> None:
    limiter = RateLimiter(200)
    start = time.monotonic()
    for _ in range(120):
        await limiter.acquire()
    # 20 tokens of burst, then 100 at 200/s.
    assert 0.45 < time.monotonic() - start < 1.0


async def test_drop_log_once_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    """The first drop is logged, then one summary per window while drops go on."""
    log = DropLog("mqtt://b:1883")
    limits = OutboxLimits()
    with patch.object(outbox_writer, "DROP_LOG_WINDOW", 0.05):
        log.record(DropReason.OVERFLOW, 1, limits)
        for _ in range(50):
            log.record(DropReason.EXPIRED, 2, limits)
        await asyncio.sleep(0.07)  # first summary; the burst goes on
        log.record(DropReason.OVERFLOW, 3, limits)
        await asyncio.sleep(0.15)  # second summary, then a quiet window ends it
        log.record(DropReason.REFUSED, 1, limits)  # a new burst
        log.record(DropReason.REFUSED, 4, limits)
    log.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5, messages
    assert "dropped 1 message(s): the outbox is full" in messages[0]
    assert (
        "dropped 100 more message(s) since the last report (expired: 100)"
        in messages[1]
    )
    assert "dropped 3 more message(s)" in messages[2]
    assert "dropped 1 message(s): the broker refused it" in messages[3]
    assert "dropped 4 more message(s)" in messages[4]


# -- store-and-forward against a broker ----------------------------------------------


async def _connected(broker: Mosquitto) -> BrokerConnection:
    connection = BrokerConnection(config_for(broker), backoff_min=0.05, backoff_max=0.2)
    await connection.connect()
    return connection


async def _down(connection: BrokerConnection, broker: Mosquitto) -> None:
    await broker.async_stop()
    await wait_until(lambda: not connection.connected)


async def test_queue_while_down_then_drain_in_order(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    broker = persistent_broker(broker_factory)
    connection = await _connected(broker)
    delivered: list[QueuedMessage] = []
    outbox = Outbox(connection, tmp_path / "o.db", on_delivered=delivered.append)
    await outbox.open()
    sub = MqttSubscriber(
        broker, "q/#", qos=1, client_id="outbox-sub", extra_args=SUBSCRIBER_ARGS
    )
    async with sub:
        direct = await outbox.publish("q/direct", b"first", 1)
        assert not direct.queued
        assert direct.mid
        await asyncio.sleep(1.1)  # the broker saves the subscriber's session
        await _down(connection, broker)
        sent = [f"m{i}".encode() for i in range(300)]
        start = time.monotonic()
        results = await asyncio.gather(
            *(outbox.publish("q/x", payload, 0, qos_explicit=False) for payload in sent)
        )
        enqueue = time.monotonic() - start
        assert all(r.queued for r in results)
        assert outbox.queued == 300
        assert len({r.id for r in results}) == 300
        await broker.async_start()
        await wait_until(lambda: outbox.queued == 0)
        got = await sub.messages(301, timeout=15)
    report = compare([b"first", *sent], [m.payload for m in got])
    assert report.complete
    assert report.out_of_order == 0
    assert {m.qos for m in got[1:]} == {1}  # queued at QoS >= 1 (qos 0 was a default)
    assert [m.id for m in delivered] == [r.id for r in results]
    assert outbox.stats.delivered == 300
    print(f"300 queued in {enqueue:.3f} s; duplicates {report.duplicates}")  # noqa: T201
    await connection.disconnect()
    await outbox.close()


async def test_closed_outbox_keeps_its_backlog(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    broker = broker_factory()
    connection = await _connected(broker)
    await _down(connection, broker)
    outbox = Outbox(connection, tmp_path / "o.db")
    await outbox.open()
    ids = [(await outbox.publish("k/x", str(i).encode(), 1)).id for i in range(20)]
    outbox.stop_accepting()
    with pytest.raises(OutboxClosedError):
        await outbox.publish("k/x", b"late", 1)
    await connection.disconnect()
    await outbox.close()
    await outbox.close()  # twice is fine

    await broker.async_start()
    connection = await _connected(broker)
    delivered: list[str] = []
    outbox = Outbox(
        connection, tmp_path / "o.db", on_delivered=lambda m: delivered.append(m.id)
    )
    async with MqttSubscriber(broker, "k/#", qos=1) as sub:
        await outbox.open()
        got = await sub.messages(20)
    assert [m.payload for m in got] == [str(i).encode() for i in range(20)]
    await wait_until(lambda: len(delivered) == 20)
    assert delivered == ids
    await connection.disconnect()
    await outbox.close()


async def test_refuse_policy_and_oversized(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    broker = broker_factory()
    connection = await _connected(broker)
    await _down(connection, broker)
    limits = OutboxLimits(max_messages=3, max_bytes=100, overflow=OverflowPolicy.REFUSE)
    outbox = Outbox(connection, tmp_path / "o.db", limits)
    await outbox.open()
    for _ in range(3):
        await outbox.publish("r/x", b"a", 1)
    with pytest.raises(OutboxFullError, match="full"):
        await outbox.publish("r/x", b"a", 1)
    with pytest.raises(PayloadTooLargeError, match="does not fit"):
        await outbox.publish("r/x", b"a" * 200, 1)
    assert outbox.stats.dropped == 0
    assert outbox.queued == 3
    await connection.disconnect()
    await outbox.close()


async def test_not_connected_error_is_queued_not_raised(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """A publish whose link drops before its PUBACK is queued, then delivered."""
    broker = broker_factory()
    connection = await _connected(broker)
    outbox = Outbox(connection, tmp_path / "o.db")
    await outbox.open()
    async with MqttSubscriber(broker, "d/#", qos=1) as sub:
        broker.pause()
        task = asyncio.create_task(outbox.publish("d/x", b"in flight", 1, timeout=30))
        await wait_until(lambda: connection.pending_acks == 1)
        connection.reconnect("test")
        result = await task
        assert result.queued
        broker.resume()
        got = await sub.messages(1)
    assert got[0].payload == b"in flight"
    await connection.disconnect()
    await outbox.close()


async def test_drain_drops_what_the_broker_refuses(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """Queued messages the broker refuses (MQTT 5) or cannot take are dropped, not retried."""
    broker = persistent_broker(broker_factory, start=False)
    rules = dynsec_config(
        [("publishClientSend", "allowed/#")],
        subscribe_default=True,
        publish_default=False,
    )
    broker._extra_config += [*rules, "max_packet_size 512"]
    broker._write_config()
    broker.start()
    connection = BrokerConnection(
        config_for(broker, protocol=Protocol.MQTTV5), backoff_min=0.05, backoff_max=0.2
    )
    await connection.connect()
    dropped: list[DroppedMessage] = []
    outbox = Outbox(connection, tmp_path / "o.db", on_dropped=dropped.append)
    await outbox.open()
    sub = MqttSubscriber(
        broker, "#", qos=1, client_id="refused-sub", extra_args=SUBSCRIBER_ARGS
    )
    async with sub:
        await asyncio.sleep(1.1)  # the broker saves the subscriber's session
        await _down(connection, broker)
        denied = await outbox.publish("denied/x", b"no", 1)
        big = await outbox.publish("allowed/big", b"x" * 600, 1)
        ok = await outbox.publish("allowed/x", b"yes", 1)
        assert [denied.queued, big.queued, ok.queued] == [True, True, True]
        await broker.async_start()
        assert (await sub.message()).payload == b"yes"
        await wait_until(lambda: outbox.queued == 0)
    assert {(d.id, d.reason) for d in dropped} == {
        (denied.id, DropReason.REFUSED),
        (big.id, DropReason.TOO_LARGE),
    }
    assert (outbox.stats.dropped, outbox.stats.delivered) == (2, 1)
    await connection.disconnect()
    await outbox.close()


async def test_watchdog_reconnects_when_acks_stop(
    broker_factory: BrokerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Queued messages whose acks never come make the outbox reconnect and resend."""
    broker = broker_factory()
    connection = await _connected(broker)
    outbox = Outbox(connection, tmp_path / "o.db", window=1)
    await outbox.open()
    async with MqttSubscriber(broker, "w/#", qos=1) as sub:
        broker.pause()
        with patch.object(outbox_module, "ACK_WATCHDOG", 0.3):
            first = asyncio.create_task(outbox.publish("w/x", b"a", 1, timeout=0.2))
            await asyncio.sleep(0)
            second = await outbox.publish("w/x", b"b", 1)  # the window is full
            assert second.queued
            assert (await first).queued  # no ack in time: queued before "b"
            await wait_until(lambda: not connection.connected)
        broker.resume()
        got = await sub.messages(2, timeout=20)
        await wait_until(lambda: outbox.queued == 0)
    assert [m.payload for m in got] == [b"a", b"b"]
    assert "not acknowledged in 0.3 s" in caplog.text
    await connection.disconnect()
    await outbox.close()


def test_store_rolls_back_a_failed_commit(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "outbox.db")
    store.commit([_message(1), _message(2)], [], [], OutboxLimits(), None)
    with pytest.raises(sqlite3.IntegrityError):
        store.commit([_message(3), _message(2)], [1], [], OutboxLimits(), None)
    state = store.state()
    assert (state.count, state.delivered, state.max_seq) == (2, 0, 2)
    assert [m.seq for m in store.fetch(0, 10, 1 << 20)] == [1, 2]
    store.close()


async def test_write_failure_is_an_outbox_error(
    broker_factory: BrokerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A publish that cannot be written fails (nothing is claimed to be queued)."""
    broker = broker_factory()
    connection = await _connected(broker)
    await _down(connection, broker)
    outbox = Outbox(connection, tmp_path / "o.db")
    await outbox.open()
    with (
        patch.object(
            OutboxStore, "commit", side_effect=sqlite3.OperationalError("disk is full")
        ),
        pytest.raises(OutboxError, match="disk is full"),
    ):
        await outbox.publish("e/x", b"1", 1)
    assert outbox.queued == 0
    assert "Cannot write the outbox" in caplog.text
    assert (await outbox.publish("e/x", b"2", 1)).queued
    assert outbox.queued == 1
    await connection.disconnect()
    await outbox.close()


async def test_explicit_qos0_drains_at_qos0(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """Only a message that asked for QoS 0 is drained at QoS 0."""
    broker = persistent_broker(broker_factory)
    connection = await _connected(broker)
    outbox = Outbox(connection, tmp_path / "o.db")
    await outbox.open()
    sub = MqttSubscriber(
        broker, "z/#", qos=1, client_id="qos0-sub", extra_args=SUBSCRIBER_ARGS
    )
    async with sub:
        await asyncio.sleep(1.1)
        await _down(connection, broker)
        explicit = await outbox.publish("z/x", b"explicit", 0)
        default = await outbox.publish("z/x", b"default", 0, qos_explicit=False)
        assert (explicit.qos, default.qos) == (0, 1)
        await broker.async_start()
        got = await sub.messages(2)
    assert [(m.payload, m.qos) for m in got] == [(b"explicit", 0), (b"default", 1)]
    await wait_until(lambda: outbox.stats.delivered == 2)
    await connection.disconnect()
    await outbox.close()


async def test_shutdown_queues_publishes_in_flight(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """Closing while a publish waits for its ack: it is queued and kept, not lost."""
    broker = broker_factory()
    connection = await _connected(broker)
    outbox = Outbox(connection, tmp_path / "o.db")
    await outbox.open()
    broker.pause()
    try:
        task = asyncio.create_task(outbox.publish("s/x", b"waiting", 1, timeout=30))
        await wait_until(lambda: connection.pending_acks == 1)
        outbox.stop_accepting()
        closing = asyncio.create_task(outbox.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # it waits for the publish
        await connection.disconnect()
        assert (await task).queued
        await closing
    finally:
        broker.resume()
    store = OutboxStore(tmp_path / "o.db")
    assert [m.payload for m in store.fetch(0, 10, 1 << 20)] == [b"waiting"]
    store.close()


async def test_message_that_breaks_the_link_goes_to_the_dead_letters(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """A queued message the broker drops the link for is isolated, then set aside.

    Under MQTT 3.1.1 the client cannot know mosquitto's ``max_packet_size``: the broker
    closes the connection on the oversized PUBLISH, every time it is retried. The queue
    must not stall behind it: the others arrive, it ends in the dead letters.
    """
    broker = persistent_broker(broker_factory, start=False)
    broker._extra_config += ["max_packet_size 512"]
    broker._write_config()
    broker.start()
    connection = await _connected(broker)
    dropped: list[DroppedMessage] = []
    path = tmp_path / "o.db"
    outbox = Outbox(connection, path, on_dropped=dropped.append)
    await outbox.open()
    sub = MqttSubscriber(
        broker, "dl/#", qos=1, client_id="dead-letter-sub", extra_args=SUBSCRIBER_ARGS
    )
    async with sub:
        await save_state(broker)
        await _down(connection, broker)
        small = [f"s{i}".encode() for i in range(10)]
        for payload in small[:5]:
            assert (await outbox.publish("dl/x", payload, 1)).queued
        poison = await outbox.publish("dl/big", b"x" * 600, 1)
        for payload in small[5:]:
            assert (await outbox.publish("dl/x", payload, 1)).queued
        await broker.async_start()
        await wait_until(lambda: outbox.queued == 0, timeout=30)
        await wait_until(lambda: set(small) <= {m.payload for m in sub.received})
    assert [(d.id, d.reason) for d in dropped] == [(poison.id, DropReason.DEAD_LETTER)]
    assert connection.connected
    got = [m.payload for m in sub.received if m.payload in small]
    report = compare(small, got)
    assert report.complete
    await connection.disconnect()
    await outbox.close()
    store = OutboxStore(path)
    try:
        assert [(m.id, m.topic, len(m.payload)) for m in store.dead_letters()] == [
            (poison.id, "dl/big", 600)
        ]
        assert store.state().dropped == 1
    finally:
        store.close()


async def test_publish_many_waits_for_window_room_in_order(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """A batch larger than the window waits for room; nothing is queued, order kept.

    (QoS 1 only: a broker completes QoS 2 messages after PUBREL, so mixed QoS
    levels need not arrive in order.)
    """
    broker = broker_factory()
    connection = await _connected(broker)
    outbox = Outbox(connection, tmp_path / "o.db", window=3)
    await outbox.open()
    try:
        async with MqttSubscriber(broker, "w/#", qos=1) as sub:
            batch = [OutgoingMessage("w/t", f"{i}".encode(), 1) for i in range(30)]
            results = await outbox.publish_many(batch, timeout=5)
            got = await sub.messages(30)
        assert all(isinstance(r, PublishResult) and not r.queued for r in results)
        assert [m.payload for m in got] == [f"{i}".encode() for i in range(30)]
        assert outbox.queued == 0
    finally:
        await connection.disconnect()
        await outbox.close()


async def test_batch_sent_whole_has_no_timer_of_its_own(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """Each message's deadline settles a batch that went whole (queued if unacked).

    The batch adds no timer to the loop (cancelled ones stay there until their time:
    a TimerHandle per websocket command was what it cost).
    """
    broker = broker_factory()
    connection = await _connected(broker)
    outbox = Outbox(connection, tmp_path / "o.db")
    await outbox.open()
    loop = asyncio.get_running_loop()
    try:
        await outbox.publish_many([OutgoingMessage("b/t", b"first", 1)], timeout=5)
        timers = len(loop._scheduled)  # type: ignore[attr-defined]
        for number in range(50):
            sent = await outbox.publish_many(
                [OutgoingMessage("b/t", b"%d" % number, 1)], timeout=5
            )
            assert isinstance(sent[0], PublishResult)
            assert not sent[0].queued
        assert len(loop._scheduled) <= timers + 2  # type: ignore[attr-defined]
        broker.pause()
        try:
            started = loop.time()
            late = await outbox.publish_many(
                [OutgoingMessage("b/t", b"late%d" % n, 1) for n in range(3)],
                timeout=0.3,
            )
            assert 0.25 < loop.time() - started < 5
        finally:
            broker.resume()
        assert [isinstance(r, PublishResult) and r.queued for r in late] == [True] * 3
        await wait_until(lambda: outbox.queued == 0)
    finally:
        await connection.disconnect()
        await outbox.close()


async def test_publish_many_queues_on_timeout_and_when_down(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """Unacked within the timeout, or the link down: queued in order; bad topics fail."""
    broker = broker_factory()
    connection = await _connected(broker)
    outbox = Outbox(connection, tmp_path / "o.db", window=2)
    await outbox.open()
    try:
        broker.pause()
        try:
            batch = [OutgoingMessage("p/t", f"{i}".encode(), 1) for i in range(4)]
            batch.insert(1, OutgoingMessage("p/+", b"bad", 1))
            results = await outbox.publish_many(batch, timeout=0.3)
        finally:
            broker.resume()
        assert isinstance(results[1], InvalidTopicError)
        queued = [r for r in results if isinstance(r, PublishResult)]
        assert [r.queued for r in queued] == [True] * 4
        await _down(connection, broker)
        down = await outbox.publish_many(
            [OutgoingMessage("p/t", b"x", 0, qos_explicit=False)]
        )
        assert isinstance(down[0], PublishResult)
        assert (down[0].queued, down[0].qos) == (True, 1)
        outbox.stop_accepting()
        with pytest.raises(OutboxClosedError):
            await outbox.publish_many([OutgoingMessage("p/t", b"x")])
    finally:
        await connection.disconnect()
        await outbox.close()


async def test_batch_sent_whole_refuses_bad_messages_alone(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """A batch that goes whole at once: a bad topic or a too large payload fails alone."""
    broker = broker_factory(extra_config=["max_packet_size 512"])
    connection = BrokerConnection(config_for(broker, protocol=Protocol.MQTTV5))
    await connection.connect()
    outbox = Outbox(connection, tmp_path / "o.db")
    await outbox.open()
    answered: list[list[PublishResult | Exception]] = []
    try:
        async with MqttSubscriber(broker, "whole/#", qos=1) as sub:
            batch = [
                OutgoingMessage("whole/a", b"a", 1),
                OutgoingMessage("whole/+", b"bad topic", 1),
                OutgoingMessage("whole/big", b"x" * 1000, 1),
                OutgoingMessage("whole/b", b"b", 0),
            ]
            assert outbox.publish_many_then(batch, answered.append, timeout=5)
            assert answered == []  # never before it returns
            await wait_until(lambda: bool(answered))
            got = await sub.messages(2)
        results = answered[0]
        assert [type(result) for result in results] == [
            PublishResult,
            InvalidTopicError,
            PayloadTooLargeError,
            PublishResult,
        ]
        assert [m.payload for m in got] == [b"a", b"b"]
        assert outbox.queued == 0
        # More than the window: not sent whole, nothing done (publish_many waits).
        many = [OutgoingMessage("whole/m", b"m", 1)] * 101
        assert not outbox.publish_many_then(many, answered.append)
        assert len(answered) == 1
    finally:
        await connection.disconnect()
        await outbox.close()
