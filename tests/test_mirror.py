"""The mirror: Home Assistant's states published to a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.cloudsync.mirror_config import SUBENTRY_MIRROR
from tests.common import entry_for
from tests.delivery import SUBSCRIBER_ARGS, compare, persistent_broker, save_state
from tests.mosquitto import MqttSubscriber, mqtt_subscribe_collect

if TYPE_CHECKING:
    from custom_components.cloudsync.mirror import Mirror
    from tests.mosquitto import BrokerFactory, Mosquitto

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def _wait_for(predicate: Any, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def _mirror_entry(
    broker: Mosquitto, data: dict[str, Any] | None = None, **mirror: Any
) -> MockConfigEntry:
    """A broker entry with a mirror subentry (defaults: base ``home``, QoS 1)."""
    entry = entry_for(broker, **(data or {}))
    return MockConfigEntry(
        domain=entry.domain,
        title=entry.title,
        unique_id=entry.unique_id,
        data=entry.data,
        subentries_data=[
            {
                "data": {"base_topic": "home", **mirror},
                "subentry_type": SUBENTRY_MIRROR,
                "title": "Mirror",
                "unique_id": None,
            }
        ],
    )


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> Mirror:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    # Reconnect quickly in tests.
    entry.runtime_data._connection._reconnector._backoff = (0.05, 0.3)
    mirror = entry.runtime_data.mirror
    assert mirror is not None
    return mirror


def _subscriber(broker: Mosquitto, topic: str = "home/#") -> MqttSubscriber:
    """A QoS 1 subscriber whose session survives broker restarts."""
    return MqttSubscriber(
        broker, topic, qos=1, client_id=f"sub-{broker.port}", extra_args=SUBSCRIBER_ARGS
    )


async def _until(sub: MqttSubscriber, *last: tuple[str, bytes]) -> list[Any]:
    """Return the messages up to and including ``last`` (in a row), within 30 s."""
    got: list[Any] = []
    async with asyncio.timeout(30):
        while _pairs(got[-len(last) :]) != list(last):
            got.append(await sub.message())
    return got


def _pairs(messages: list[Any]) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in messages]


async def test_states_arrive_with_topic_payload_and_status(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """Snapshot on setup, then each change of a chosen entity; others stay home."""
    hass.states.async_set("sensor.kitchen_temp", "21.5")
    hass.states.async_set("sensor.kitchen_secret", "1")
    hass.states.async_set("light.hall", "on")
    hass.states.async_set("switch.pump", "off")
    entry = _mirror_entry(
        plain_broker,
        base_topic="t1/home",
        include_globs=["sensor.kitchen_*"],
        include_domains=["light"],
        exclude_globs=["*_secret"],
    )
    async with MqttSubscriber(plain_broker, "t1/home/#", qos=1) as sub:
        await _setup(hass, entry)
        got = await sub.messages(3)
        assert sorted(_pairs(got)) == [
            ("t1/home/light/hall/state", b"on"),
            ("t1/home/sensor/kitchen_temp/state", b"21.5"),
            ("t1/home/status", b"online"),
        ]
        assert got[0].topic == "t1/home/status"  # online before the snapshot
        hass.states.async_set("sensor.kitchen_temp", "22.0")
        hass.states.async_set("sensor.kitchen_secret", "2")
        hass.states.async_set("switch.pump", "on")
        hass.states.async_set("light.hall", "off")
        got = await sub.messages(2)
        assert _pairs(got) == [
            ("t1/home/sensor/kitchen_temp/state", b"22.0"),
            ("t1/home/light/hall/state", b"off"),
        ]
        assert {m.qos for m in got} == {1}
        await sub.assert_no_message(0.3)
    # Retained: a cloud app subscribing later reads the latest value at once.
    retained = await mqtt_subscribe_collect(plain_broker, "t1/home/sensor/#", 1)
    assert retained == [("t1/home/sensor/kitchen_temp/state", b"22.0")]
    mirror = entry.runtime_data.mirror
    assert mirror is not None
    assert mirror.as_diagnostics()["published"] == 5
    assert mirror.as_diagnostics()["failed"] == 0

    # Unloading says "offline" (a clean DISCONNECT sends no last will).
    assert await hass.config_entries.async_unload(entry.entry_id)
    status = await mqtt_subscribe_collect(plain_broker, "t1/home/status", 1)
    assert status == [("t1/home/status", b"offline")]


async def test_json_payload_leaves_out_excluded_attributes(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """JSON: state, attributes without the excluded ones, last_changed/updated."""
    entry = _mirror_entry(
        plain_broker,
        base_topic="t2",
        include_entities=["sensor.power"],
        payload="json",
        exclude_attributes=["entity_picture", "friendly_name"],
        topic_template="{base}/{entity_id}",
        retain=False,
    )
    async with MqttSubscriber(plain_broker, "t2/sensor.power", qos=1) as sub:
        await _setup(hass, entry)
        hass.states.async_set(
            "sensor.power",
            "412",
            {
                "unit_of_measurement": "W",
                "entity_picture": "/x.png",
                "friendly_name": "P",
            },
        )
        message = await sub.message()
    body = json.loads(message.payload)
    state = hass.states.get("sensor.power")
    assert body == {
        "state": "412",
        "attributes": {"unit_of_measurement": "W"},
        "last_changed": state.last_changed.isoformat(),
        "last_updated": state.last_updated.isoformat(),
    }
    # Not retained: nothing is left for a later subscriber.
    with pytest.raises(TimeoutError):
        await mqtt_subscribe_collect(plain_broker, "t2/sensor.power", 1, timeout=0.5)


async def test_changes_while_broker_down_arrive_in_order(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """Broker stopped: 300 changes are queued; back: all arrive in order, then a snapshot."""
    broker = persistent_broker(broker_factory)
    hass.states.async_set("sensor.counter", "start")
    entry = _mirror_entry(broker, include_entities=["sensor.counter"])
    async with _subscriber(broker) as sub:
        mirror = await _setup(hass, entry)
        await sub.messages(2)  # online + the snapshot
        await save_state(broker)  # the subscriber's session is on disk now
        await broker.async_stop()
        await _wait_for(lambda: not entry.runtime_data.connected)
        values = [f"v{i:03}" for i in range(300)]
        for value in values:
            hass.states.async_set("sensor.counter", value)
            await asyncio.sleep(0)  # some in one batch, some alone
        await _wait_for(lambda: mirror.queued == 300)
        assert entry.runtime_data.outbox_stats.queued == 300
        await broker.async_start()
        got = await _until(
            sub, ("home/status", b"online"), ("home/sensor/counter/state", b"v299")
        )
    # Live ones only: mosquitto_sub's resubscribe after the restart brings retained
    # copies of what was stored, whenever it comes.
    states = [
        m.payload
        for m in got
        if m.topic == "home/sensor/counter/state" and not m.retain
    ]
    if states[:1] == [b"start"]:
        # The snapshot before the outage, again: the broker resends a QoS 1 message
        # whose PUBACK from mosquitto_sub it had not handled when its state was saved.
        del states[0]
    report = compare([v.encode() for v in values], states[:300])
    assert report.complete
    assert report.out_of_order == 0
    assert report.duplicates == 0
    # The broker said offline for us (the last will); after the backlog comes the
    # connect's snapshot: online and the newest state.
    statuses = [m.payload for m in got if m.topic == "home/status" and not m.retain]
    assert set(statuses[:-1]) <= {b"offline"}
    assert statuses[-1] == b"online"
    assert len(states) == 301
    assert mirror.failed == 0


async def test_latest_only_queues_nothing_and_snapshots_on_connect(
    hass: HomeAssistant, broker_factory: BrokerFactory
) -> None:
    """Latest only: changes while down are not queued; the reconnect sends the newest."""
    broker = persistent_broker(broker_factory)
    hass.states.async_set("sensor.a", "0")
    hass.states.async_set("sensor.b", "0")
    entry = _mirror_entry(broker, include_globs=["sensor.?"], latest_only=True)
    async with _subscriber(broker) as sub:
        mirror = await _setup(hass, entry)
        before = {(m.topic, m.payload) for m in await sub.messages(3)}
        await save_state(broker)
        await broker.async_stop()
        await _wait_for(lambda: not entry.runtime_data.connected)
        for value in range(1, 51):
            hass.states.async_set("sensor.a", str(value))
        hass.states.async_set("sensor.b", "b-new")
        await hass.async_block_till_done()
        assert entry.runtime_data.outbox_stats.queued == 0
        assert mirror.coalesced == 51  # 50 of a, 1 of b
        await broker.async_start()
        got = await _until(
            sub,
            ("home/status", b"online"),
            ("home/sensor/a/state", b"50"),
            ("home/sensor/b/state", b"b-new"),
        )
        # Nothing else live (mosquitto_sub's resubscribe may bring retained copies).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                while True:
                    assert (await sub.message()).retain
    # Before: statuses (the last will), retained copies the session got again, and
    # maybe the snapshot from before the outage again (QoS 1 the broker resends when
    # mosquitto_sub's PUBACK came after its state was saved).
    unexpected = [
        m
        for m in got[:-3]
        if not (m.topic == "home/status" or m.retain or (m.topic, m.payload) in before)
    ]
    assert unexpected == []
    assert [m.retain for m in got[-3:]] == [False] * 3  # live, not stored copies


async def test_min_interval_sends_the_newest_once_per_interval(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """Interval 0.4 s: the first change goes at once, the burst after it as its newest."""
    hass.states.async_set("sensor.fast", "0")
    entry = _mirror_entry(
        plain_broker,
        base_topic="t5",
        include_entities=["sensor.fast"],
        min_interval=0.4,
    )
    async with MqttSubscriber(plain_broker, "t5/sensor/#", qos=1) as sub:
        mirror = await _setup(hass, entry)
        assert (await sub.message()).payload == b"0"  # the snapshot
        loop = asyncio.get_running_loop()
        start = loop.time()
        for value in range(1, 21):
            hass.states.async_set("sensor.fast", str(value))
        message = await sub.message()
        held_for = loop.time() - start
        await sub.assert_no_message(0.6)
    assert message.payload == b"20"
    assert 0.3 <= held_for < 2.0
    assert mirror.coalesced == 19


async def test_removed_and_renamed_entities_stop(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """A removed entity is forgotten; its new id (not picked) is not mirrored."""
    hass.states.async_set("sensor.old_name", "1")
    hass.states.async_set("sensor.other", "1")
    entry = _mirror_entry(
        plain_broker,
        base_topic="t6",
        include_entities=["sensor.old_name", "sensor.other"],
    )
    async with MqttSubscriber(plain_broker, "t6/sensor/#", qos=1) as sub:
        mirror = await _setup(hass, entry)
        await sub.messages(2)
        assert mirror.as_diagnostics()["entities"] == 2
        # What the state machine sees of a rename: the old id goes, the new one comes.
        hass.states.async_remove("sensor.old_name")
        hass.states.async_set("sensor.new_name", "2")
        hass.states.async_set("sensor.other", "2")
        got = await sub.message()
        await sub.assert_no_message(0.3)
    assert (got.topic, got.payload) == ("t6/sensor/other/state", b"2")
    assert mirror.as_diagnostics()["entities"] == 1


async def test_lost_link_publishes_the_last_will_then_a_snapshot(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """The link dies without DISCONNECT: the broker says offline; back: online + states."""
    hass.states.async_set("sensor.x", "1")
    entry = _mirror_entry(plain_broker, base_topic="t7", include_entities=["sensor.x"])
    async with MqttSubscriber(plain_broker, "t7/#", qos=1) as sub:
        await _setup(hass, entry)
        assert len(await sub.messages(2)) == 2
        link = entry.runtime_data._connection._link
        assert link is not None
        sock = link.mqttc.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # a dead link, as a NAT timeout would leave it
        got = await sub.messages(3, timeout=20)
    assert _pairs(got) == [
        ("t7/status", b"offline"),
        ("t7/status", b"online"),
        ("t7/sensor/x/state", b"1"),
    ]


async def test_a_broken_stored_mirror_fails_setup_with_the_reason(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """A stored mirror that cannot work is a setup error naming it, not ignored."""
    entry = _mirror_entry(plain_broker, base_topic="bad/#", include_globs=["*"])
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert "bad/#" in (entry.reason or "")


async def test_what_the_profile_refuses_fails_alone(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """AWS IoT Core's 128 KiB: an entity whose JSON is larger fails, is counted, others go."""
    entry = _mirror_entry(
        plain_broker,
        {"profile": "aws_iot_core"},
        base_topic="t8",
        include_globs=["sensor.aws_*"],
        payload="json",
    )
    async with MqttSubscriber(plain_broker, "t8/sensor/#", qos=1) as sub:
        mirror = await _setup(hass, entry)
        hass.states.async_set("sensor.aws_big", "1", {"blob": "x" * 128 * 1024})
        hass.states.async_set("sensor.aws_small", "2")
        got = await sub.message()
        await sub.assert_no_message(0.3)
    assert got.topic == "t8/sensor/aws_small/state"
    assert mirror.failed == 1
    assert mirror.published == 2  # online and the small one
    assert "at most 131072 bytes" in (mirror.last_error or "")
