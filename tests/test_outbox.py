"""Store-and-forward through Home Assistant: REST, actions and registry calls against
real mosquitto brokers that are stopped, killed and restarted."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
import re
import sqlite3
from string import Formatter
import time
from typing import TYPE_CHECKING, Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNKNOWN, EntityCategory
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)

from custom_components.cloudsync import outbox as ha_outbox
from custom_components.cloudsync.client import OverflowPolicy, QueuedMessage
from custom_components.cloudsync.client.outbox_store import OutboxStore
from custom_components.cloudsync.const import (
    DOMAIN,
    EVENT_MESSAGES_DELIVERED,
    EVENT_MESSAGES_DROPPED,
)
from custom_components.cloudsync.flow_schemas import OUTBOX_FIELDS
from custom_components.cloudsync.outbox import issue_id, outbox_path
from custom_components.cloudsync.sensor import OUTBOX_SENSORS
from tests.common import entry_for, outbox_entities, setup_entry
from tests.delivery import SUBSCRIBER_ARGS, compare, persistent_broker, save_state
from tests.mosquitto import MqttSubscriber

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    from tests.mosquitto import BrokerFactory, Mosquitto

pytestmark = pytest.mark.usefixtures("socket_enabled")

BASE = "/api/v1/orchestration/cloudsyncmgr"
LOGGER = logging.getLogger(__name__)


async def _wait_for(predicate: Any, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def _setup(
    hass: HomeAssistant, broker: Mosquitto, **outbox: Any
) -> MockConfigEntry:
    """Set up an entry with outbox options; it reconnects quickly in tests."""
    entry = await setup_entry(hass, entry_for(broker, options={"outbox": outbox}))
    assert entry.state is ConfigEntryState.LOADED
    _fast_reconnect(entry)
    return entry


def _fast_reconnect(entry: MockConfigEntry) -> None:
    connection = entry.runtime_data._connection
    connection._reconnector._backoff = (0.05, 0.3)


async def _stop(entry: MockConfigEntry, broker: Mosquitto) -> None:
    await broker.async_stop()
    await _wait_for(lambda: not entry.runtime_data._connection.connected)


async def _post(client: TestClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"{BASE}/publish", data=json.dumps(body))
    return response.status, await response.json()


def _body(topic: str, payload: str, **extra: Any) -> dict[str, Any]:
    return {
        "appid": "app",
        "topic": topic,
        "payload": payload,
        "url": "127.0.0.1",
        **extra,
    }


async def _post_all(
    client: TestClient, topic: str, payloads: list[str]
) -> list[tuple[int, dict[str, Any]]]:
    return await asyncio.gather(*(_post(client, _body(topic, p)) for p in payloads))


def _subscriber(broker: Mosquitto, topic: str) -> MqttSubscriber:
    """A QoS 1 subscriber whose session survives broker restarts."""
    return MqttSubscriber(
        broker, topic, qos=1, client_id=f"sub-{broker.port}", extra_args=SUBSCRIBER_ARGS
    )


def _ids(events: list[Any]) -> list[str]:
    """Return the message ids of batched receipt events, in order."""
    return [message_id for event in events for message_id in event.data["ids"]]


def _count(events: list[Any]) -> int:
    return sum(event.data["count"] for event in events)


def _state(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(
        "sensor", DOMAIN, f"{entry.entry_id}_{key}"
    )
    assert entity_id is not None
    return hass.states.get(entity_id).state


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_rest_backlog_drains_in_order(
    hass: HomeAssistant, hass_client, broker_factory: BrokerFactory
) -> None:
    """Broker stopped: 1,000 REST publishes are 202; started: all arrive, in order."""
    broker = persistent_broker(broker_factory)
    entry = await _setup(hass, broker)
    client = await hass_client()
    delivered = async_capture_events(hass, EVENT_MESSAGES_DELIVERED)
    payloads = [f"m{i:04}" for i in range(1000)]
    async with _subscriber(broker, "backlog/#") as sub:
        await save_state(broker)  # the subscriber's session is on disk now
        await _stop(entry, broker)
        start = time.monotonic()
        replies = []
        for chunk in range(0, 1000, 250):  # in order: the queue's order is the test
            replies += await _post_all(
                client, "backlog/x", payloads[chunk : chunk + 250]
            )
        enqueue = time.monotonic() - start
        assert {status for status, _ in replies} == {202}
        assert {r["Message"] for _, r in replies} == {
            f"Data queued for Cloud {broker.url}"
        }
        ids = [r["id"] for _, r in replies]
        assert len(set(ids)) == 1000
        assert entry.runtime_data.outbox_stats.queued == 1000
        await hass.async_block_till_done()
        await _wait_for(lambda: _state(hass, entry, "outbox_queued") == "1000")

        await broker.async_start()
        start = time.monotonic()
        await _wait_for(lambda: entry.runtime_data.outbox_stats.queued == 0)
        drain = time.monotonic() - start
        got = await sub.messages(1000, timeout=20)
    report = compare([p.encode() for p in payloads], [m.payload for m in got])
    assert report.complete
    assert report.out_of_order == 0
    assert {m.qos for m in got} == {1}
    await _wait_for(lambda: _count(delivered) == 1000)
    assert sorted(_ids(delivered)) == sorted(ids)
    # One event per batch: the first message at once, then at most one a second.
    assert len(delivered) < 10
    assert delivered[0].data == {
        "entry_id": entry.entry_id,
        "broker": broker.url,
        "count": 1,
        "ids": delivered[0].data["ids"],
        "ids_truncated": False,
    }
    await _wait_for(lambda: _state(hass, entry, "outbox_delivered") == "1000")
    assert _state(hass, entry, "outbox_queued") == "0"
    LOGGER.warning(
        "1000 REST publishes queued in %.2f s (%.0f/s), drained in %.2f s incl. "
        "reconnect; duplicates %d",
        enqueue,
        1000 / enqueue,
        drain,
        report.duplicates,
    )


async def test_backlog_survives_restart(
    hass: HomeAssistant, hass_client, broker_factory: BrokerFactory
) -> None:
    """1,000 queued, Home Assistant "restarts" with the broker still down: all arrive."""
    broker = persistent_broker(broker_factory)
    entry = await _setup(hass, broker)
    client = await hass_client()
    payloads = [f"r{i:04}" for i in range(1000)]
    async with _subscriber(broker, "restart/#") as sub:
        await save_state(broker)
        await _stop(entry, broker)
        replies = []
        for chunk in range(0, 1000, 250):
            replies += await _post_all(
                client, "restart/x", payloads[chunk : chunk + 250]
            )
        assert {status for status, _ in replies} == {202}

        assert await hass.config_entries.async_unload(entry.entry_id)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED  # offline, queueing
        _fast_reconnect(entry)
        assert entry.runtime_data.outbox_stats.queued == 1000
        status, reply = await _post(client, _body("restart/x", "after restart"))
        assert (status, reply["queued"]) == (202, True)

        await broker.async_start()
        await _wait_for(lambda: entry.runtime_data.outbox_stats.queued == 0)
        got = await sub.messages(1001, timeout=20)
    report = compare(
        [*(p.encode() for p in payloads), b"after restart"], [m.payload for m in got]
    )
    assert report.complete
    assert report.out_of_order == 0
    assert entry.runtime_data.outbox_stats.delivered == 1001
    LOGGER.warning("restart: 1001 delivered, duplicates %d", report.duplicates)


def _tap_deliveries(cloudsync: Any) -> list[str]:
    """Record every delivery as the outbox reports it (the bus events come batched)."""
    delivered: list[str] = []
    outbox = cloudsync._outbox
    announce = outbox._on_delivered
    assert announce is not None

    def _delivered(message: QueuedMessage) -> None:
        delivered.append(message.id)
        announce(message)

    outbox._on_delivered = _delivered
    return delivered


async def test_sigkill_mid_stream_loses_nothing(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """SIGKILL the broker in the middle of 5,000 QoS 1 publishes: cloudsync loses none.

    The killed broker loses what it took after its last save, acknowledged or not: a
    missing message is the broker's loss when cloudsync saw its PUBACK before the
    restart (counted and logged), and cloudsync's otherwise (the test fails). The
    broker's log must show every PUBACK cloudsync counted as seen.
    """
    broker = persistent_broker(broker_factory)
    entry = await _setup(hass, broker, drain_rate=20000)
    cloudsync = entry.runtime_data
    delivered = _tap_deliveries(cloudsync)
    payloads = [f"k{i:04}".encode() for i in range(5000)]
    todo = iter(payloads)
    results: list[bool] = []
    acked_by_killed: set[bytes] = set()  # PUBACKs seen from the killed broker
    acked_mids: set[int] = set()  # those of direct publishes
    queued_ids: dict[str, bytes] = {}
    restarted = False

    async def _producer() -> None:
        for payload in todo:
            result = await cloudsync.async_publish(
                "app", "kill/x", payload, qos=1, retain=False, timeout=10
            )
            results.append(result.queued)
            if result.queued:
                queued_ids[result.id] = payload
            elif not restarted:
                acked_by_killed.add(payload)
                assert result.mid is not None
                acked_mids.add(result.mid)

    async with _subscriber(broker, "kill/#") as sub:
        await save_state(broker)  # the subscriber's session survives the kill
        stream = [asyncio.create_task(_producer()) for _ in range(50)]
        await _wait_for(lambda: len(results) >= 1500)
        broker.kill()
        killed_at = len(results)
        await _wait_for(lambda: len(results) >= killed_at + 1000)
        restarted = True
        acked_by_killed.update(queued_ids[message_id] for message_id in delivered)
        killed_log = broker.log_text()
        await broker.async_start()
        await asyncio.gather(*stream)
        await _wait_for(lambda: cloudsync.outbox_stats.queued == 0)
        await _wait_for(lambda: len(delivered) == len(queued_ids))
        expected = set(payloads) - acked_by_killed
        await _wait_for(
            lambda: expected <= {m.payload for m in sub.received}, timeout=30
        )
        await asyncio.sleep(0.3)  # let late duplicates come in
    client_id = re.escape(cloudsync._connection.client_id)
    pubacks = re.findall(rf"Sending PUBACK to {client_id} \(m(\d+),", killed_log)
    assert acked_mids <= {int(mid) for mid in pubacks}
    assert sorted(delivered) == sorted(queued_ids)
    assert cloudsync.outbox_stats.dropped == 0
    report = compare(payloads, [m.payload for m in sub.received])
    lost = [p for p in report.missing if p not in acked_by_killed]
    assert lost == [], f"cloudsync lost {len(lost)}, SIGKILL after {killed_at}"
    queued = sum(results)
    LOGGER.warning(
        "SIGKILL after %d of 5000: %d answered as queued, %d acknowledged before "
        "the kill and lost by the broker, %d duplicates",
        killed_at,
        queued,
        len(report.missing),
        report.duplicates,
    )
    assert queued >= 1000


async def test_action_queues_and_window(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """With 100 publishes awaiting their acks the next is queued at once, then sent."""
    broker = broker_factory()
    entry = await _setup(hass, broker)
    cloudsync = entry.runtime_data
    async with MqttSubscriber(broker, "window/#", qos=1) as sub:
        broker.pause()
        waiting = [
            asyncio.create_task(
                cloudsync.async_publish(
                    "app", "window/x", str(i).encode(), qos=1, retain=False, timeout=30
                )
            )
            for i in range(100)
        ]
        await _wait_for(lambda: entry.runtime_data._connection.pending_acks == 100)
        result = await hass.services.async_call(
            DOMAIN,
            "publish",
            {"config_entry_id": entry.entry_id, "topic": "window/x", "payload": "100"},
            blocking=True,
            return_response=True,
        )
        assert result["queued"] is True
        assert result["qos"] == 1
        broker.resume()
        assert not any(r.queued for r in await asyncio.gather(*waiting))
        got = await sub.messages(101)
    assert [m.payload for m in got] == [str(i).encode() for i in range(101)]


@pytest.mark.parametrize(
    ("outbox", "count", "kept"),
    [
        ({"max_messages": 5}, 8, 5),
        ({"max_size": 62 / 1024 / 1024}, 8, 5),  # 12 bytes each: topic "cap/x" + 7
    ],
    ids=["messages", "bytes"],
)
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_drop_oldest(
    hass: HomeAssistant,
    hass_client,
    broker_factory: BrokerFactory,
    caplog: pytest.LogCaptureFixture,
    outbox: dict[str, Any],
    count: int,
    kept: int,
) -> None:
    """A full outbox drops its oldest messages, visibly: events, sensor and one log."""
    broker = broker_factory()
    entry = await _setup(hass, broker, **outbox)
    client = await hass_client()
    dropped = async_capture_events(hass, EVENT_MESSAGES_DROPPED)
    delivered = async_capture_events(hass, EVENT_MESSAGES_DELIVERED)
    await _stop(entry, broker)
    replies = [await _post(client, _body("cap/x", f"msg{i:04}")) for i in range(count)]
    assert {status for status, _ in replies} == {202}
    ids = [reply["id"] for _, reply in replies]
    await hass.async_block_till_done()
    await _wait_for(lambda: _count(dropped) == count - kept)
    assert _ids(dropped) == ids[: count - kept]
    assert [e.data["reasons"] for e in dropped] == [
        {"overflow": e.data["count"]} for e in dropped
    ]
    assert entry.runtime_data.outbox_stats.dropped == count - kept
    drop_logs = [
        r
        for r in caplog.records
        if r.name.startswith("custom_components") and "dropped" in r.getMessage()
    ]
    assert len(drop_logs) == 1
    await broker.async_start()
    await _wait_for(lambda: _count(delivered) == kept)
    assert _ids(delivered) == ids[count - kept :]
    await _wait_for(lambda: _state(hass, entry, "outbox_dropped") == str(count - kept))


@pytest.mark.parametrize(
    "outbox",
    [{"max_messages": 3}, {"max_size": 40 / 1024 / 1024}],  # 13 bytes each
    ids=["messages", "bytes"],
)
async def test_refuse_policy(
    hass: HomeAssistant,
    hass_client,
    broker_factory: BrokerFactory,
    outbox: dict[str, Any],
) -> None:
    """With "refuse" a full outbox answers 507 and the action a validation error."""
    broker = broker_factory()
    entry = await _setup(hass, broker, overflow="refuse", **outbox)
    client = await hass_client()
    await _stop(entry, broker)
    for i in range(3):
        status, _ = await _post(client, _body("full/x", f"msg{i:04}"))
        assert status == 202
    status, reply = await _post(client, _body("full/x", "msg0003"))
    assert (status, reply["error"]) == (507, "outbox_full")
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "publish",
            {
                "config_entry_id": entry.entry_id,
                "topic": "full/x",
                "payload": "msg0004",
            },
            blocking=True,
        )
    assert err.value.translation_key == "outbox_full"
    assert entry.runtime_data.outbox_stats.dropped == 0
    assert entry.runtime_data.outbox_stats.queued == 3


async def test_expired_messages_are_dropped(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """Messages older than the maximum age are dropped with reason "expired"."""
    broker = broker_factory()
    entry = await _setup(hass, broker, max_age={"seconds": 1})
    dropped = async_capture_events(hass, EVENT_MESSAGES_DROPPED)
    await _stop(entry, broker)
    cloudsync = entry.runtime_data
    for i in range(3):
        await cloudsync.async_publish(
            "app", "old/x", b"%d" % i, qos=1, retain=False, timeout=1
        )
    assert entry.runtime_data.outbox_stats.oldest is not None
    await _wait_for(lambda: _count(dropped) == 3, timeout=5)
    assert {reason for e in dropped for reason in e.data["reasons"]} == {"expired"}
    assert entry.runtime_data.outbox_stats.queued == 0
    await broker.async_start()


async def test_drain_rate_limit(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """A backlog drains at the configured rate (200/s: 300 messages take ~1.4 s)."""
    broker = broker_factory()
    entry = await _setup(hass, broker, drain_rate=200)
    delivered = async_capture_events(hass, EVENT_MESSAGES_DELIVERED)
    await _stop(entry, broker)
    cloudsync = entry.runtime_data
    await asyncio.gather(
        *(
            cloudsync.async_publish(
                "app", "rate/x", b"%d" % i, qos=1, retain=False, timeout=1
            )
            for i in range(300)
        )
    )
    await broker.async_start()
    await _wait_for(lambda: delivered)  # the first message is announced at once
    first = time.monotonic()
    async with asyncio.timeout(10):
        while cloudsync.outbox_stats.delivered < 300:
            await asyncio.sleep(0.01)
    elapsed = time.monotonic() - first
    # 20 may go at once (a tenth of a second's worth), the other 280 at 200/s.
    assert 1.3 < elapsed < 3.0, elapsed
    LOGGER.warning("300 drained at 200/s in %.2f s (%.0f/s)", elapsed, 299 / elapsed)


async def test_corrupt_outbox_is_set_aside(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """Garbage in the outbox file: a repair issue, the file kept aside, a new outbox."""
    broker = broker_factory()
    entry = entry_for(broker)
    path = outbox_path(hass, entry.entry_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage, not SQLite\xff" * 500)
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id(entry.entry_id))
    assert issue is not None
    assert issue.translation_key == "outbox_corrupt"
    aside = Path(issue.translation_placeholders["path"])
    assert aside.parent == path.parent
    assert aside.read_bytes() == b"\x00garbage, not SQLite\xff" * 500
    assert issue.translation_placeholders["broker"] == broker.url
    assert "not a database" in issue.translation_placeholders["error"]

    cloudsync = entry.runtime_data
    async with MqttSubscriber(broker, "new/#", qos=1) as sub:
        result = await cloudsync.async_publish(
            "app", "new/x", b"1", qos=1, retain=False, timeout=1
        )
        assert not result.queued
        assert (await sub.message()).payload == b"1"
    _fast_reconnect(entry)
    await _stop(entry, broker)
    result = await cloudsync.async_publish(
        "app", "new/x", b"2", qos=1, retain=False, timeout=1
    )
    assert result.queued
    assert entry.runtime_data.outbox_stats.queued == 1

    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert not path.exists()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id(entry.entry_id)) is None


async def test_outbox_that_cannot_be_opened(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """No outbox can be created at all (its folder is a file): setup retries later."""
    broker = broker_factory()
    entry = entry_for(broker)
    folder = outbox_path(hass, entry.entry_id).parent
    folder.parent.mkdir(parents=True)
    folder.write_text("in the way")
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.reason is not None
    assert "outbox" in entry.reason


async def test_invalid_outbox_options(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """Caps that cannot work stop the setup with a clear reason."""
    broker = broker_factory()
    entry = await setup_entry(
        hass, entry_for(broker, options={"outbox": {"max_messages": 0}})
    )
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert "max_messages must be above 0" in (entry.reason or "")


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
@patch.object(ha_outbox, "STATS_DELAY", 0.05)
async def test_sensors_and_diagnostics(
    hass: HomeAssistant, hass_client, broker_factory: BrokerFactory
) -> None:
    """Four diagnostic sensors per broker, and the outbox in the diagnostics."""
    broker = broker_factory()
    entry = await _setup(hass, broker)
    for key, entity in outbox_entities(hass, entry).items():
        assert entity.entity_category is EntityCategory.DIAGNOSTIC
        # An empty outbox has no oldest message: its age is unknown, not 0 s.
        expected = STATE_UNKNOWN if key == "outbox_oldest_age" else "0"
        assert hass.states.get(entity.entity_id).state == expected
    await _stop(entry, broker)
    await entry.runtime_data.async_publish(
        "app", "s/x", b"1", qos=1, retain=False, timeout=1
    )
    await _wait_for(lambda: _state(hass, entry, "outbox_queued") == "1")
    await asyncio.sleep(0.6)  # rounds to an age of 1 s
    entry.runtime_data._outbox._on_change()  # as the periodic refresh does
    await _wait_for(lambda: _state(hass, entry, "outbox_oldest_age") == "1")
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["outbox"]["stats"]["queued"] == 1
    assert diagnostics["outbox"]["limits"]["max_messages"] == 100_000
    assert diagnostics["outbox"]["path"].endswith(f"{entry.entry_id}.outbox.db")
    await broker.async_start()
    await _wait_for(lambda: _state(hass, entry, "outbox_delivered") == "1", timeout=10)
    await _wait_for(lambda: _state(hass, entry, "outbox_oldest_age") == STATE_UNKNOWN)


async def test_outbox_write_error_replies(
    hass: HomeAssistant, hass_client, broker_factory: BrokerFactory
) -> None:
    """A queued publish that cannot be written: REST 500, the action an error."""
    broker = broker_factory()
    entry = await _setup(hass, broker)
    client = await hass_client()
    await _stop(entry, broker)
    with patch.object(
        OutboxStore, "commit", side_effect=sqlite3.OperationalError("disk is full")
    ):
        status, reply = await _post(client, _body("err/x", "1"))
        assert (status, reply["error"]) == (500, "outbox_error")
        with pytest.raises(HomeAssistantError) as err:
            await hass.services.async_call(
                DOMAIN,
                "publish",
                {"config_entry_id": entry.entry_id, "topic": "err/x"},
                blocking=True,
            )
    assert err.value.translation_key == "outbox_error"
    assert "disk is full" in str(err.value.translation_placeholders)


def test_outbox_strings() -> None:
    """The options section, sensors, selector, issue and setup errors have strings."""
    strings = json.loads(
        (Path(ha_outbox.__file__).parent / "strings.json").read_text(encoding="utf-8")
    )

    def names(text: str) -> set[str]:
        return {name for _, name, _, _ in Formatter().parse(text) if name}

    issue = strings["issues"]["outbox_corrupt"]
    assert names(issue["title"] + issue["description"]) <= {"broker", "path", "error"}
    section = strings["options"]["step"]["init"]["sections"]["outbox"]
    assert set(section["data"]) == {str(key) for key in OUTBOX_FIELDS}
    assert set(strings["selector"]["overflow"]["options"]) == {
        policy.value for policy in OverflowPolicy
    }
    assert {d.translation_key for d in OUTBOX_SENSORS} <= set(
        strings["entity"]["sensor"]
    )
    for key in ("outbox_unavailable", "invalid_outbox_options"):
        assert names(strings["exceptions"][key]["message"]) <= {"url", "error"}


async def test_dead_letter_is_announced(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """A message the broker keeps dropping the link for: a repair issue, an event."""
    broker = persistent_broker(broker_factory, start=False)
    broker._extra_config += ["max_packet_size 512"]
    broker._write_config()
    broker.start()
    entry = await _setup(hass, broker)
    dropped = async_capture_events(hass, EVENT_MESSAGES_DROPPED)
    cloudsync = entry.runtime_data
    async with _subscriber(broker, "dl/#") as sub:
        await save_state(broker)
        await _stop(entry, broker)
        poison = await cloudsync.async_publish("app", "dl/big", b"x" * 600, qos=1)
        after = await cloudsync.async_publish("app", "dl/x", b"after", qos=1)
        assert poison.queued
        assert after.queued
        await broker.async_start()
        await _wait_for(lambda: b"after" in {m.payload for m in sub.received}, 30)
    await _wait_for(lambda: _count(dropped) == 1)
    assert dropped[0].data["ids"] == [poison.id]
    assert dropped[0].data["reasons"] == {"dead_letter": 1}
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"dead_letter_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_placeholders["topic"] == "dl/big"
    assert issue.translation_placeholders["id"] == poison.id
