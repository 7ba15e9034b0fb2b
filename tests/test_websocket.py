"""The websocket commands cloudsync/publish and cloudsync/subscribe, on real mosquitto."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from unittest.mock import MagicMock
import uuid

from homeassistant.config_entries import ConfigEntryState
import pytest

from custom_components.cloudsync import stream as stream_module
from custom_components.cloudsync.apps import Principal
from custom_components.cloudsync.hub import async_get_hub
from tests.common import entry_for, setup_entry
from tests.mosquitto import MqttSubscriber, mqtt_publish

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    from tests.mosquitto import BrokerFactory, Mosquitto

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture
def prefix() -> str:
    """Return a topic prefix unique to the test (the session broker is shared)."""
    return f"test-ws/{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def entry(hass: HomeAssistant, plain_broker: Mosquitto) -> MockConfigEntry:
    """Return a loaded entry on the plain broker."""
    entry = await setup_entry(hass, entry_for(plain_broker))
    assert entry.state is ConfigEntryState.LOADED
    return entry


async def _events(ws: Any, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """Return the next ``count`` streamed messages (events carry several)."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            msg = await ws.receive_json()
            assert msg["type"] == "event", msg
            got.extend(msg["event"]["messages"])
    return got


async def test_publish_one_and_many(
    hass_ws_client: Any, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """cloudsync/publish takes one message or a list; a bad one refuses itself."""
    ws = await hass_ws_client()
    async with MqttSubscriber(plain_broker, f"{prefix}/#", qos=1) as sub:
        await ws.send_json_auto_id(
            {
                "type": "cloudsync/publish",
                "url": plain_broker.url,
                "topic": f"{prefix}/one",
                "payload": "1",
                "qos": 1,
            }
        )
        reply = await ws.receive_json()
        assert reply["success"], reply
        assert reply["result"]["results"][0]["status"] == "published"
        await ws.send_json_auto_id(
            {
                "type": "cloudsync/publish",
                "config_entry_id": entry.entry_id,
                "messages": [
                    {"topic": f"{prefix}/a", "payload": "a", "qos": 1},
                    {"topic": f"{prefix}/#", "payload": "b"},
                    {"topic": f"{prefix}/c", "payload": "c", "qos": 1},
                ],
            }
        )
        reply = await ws.receive_json()
        assert reply["success"], reply
        assert [r["status"] for r in reply["result"]["results"]] == [
            "published",
            "refused",
            "published",
        ]
        assert reply["result"]["refused"] == 1
        got = await sub.messages(3)
    assert [m.payload for m in got] == [b"1", b"a", b"c"]


async def test_publish_errors_use_the_table(
    hass_ws_client: Any, entry: MockConfigEntry
) -> None:
    """An unknown broker or an oversized batch answers the table's code."""
    ws = await hass_ws_client()
    await ws.send_json_auto_id(
        {"type": "cloudsync/publish", "url": "mqtt://nowhere:1", "topic": "a"}
    )
    reply = await ws.receive_json()
    assert (reply["success"], reply["error"]["code"]) == (False, "unknown_broker")
    assert reply["error"]["translation_key"] == "entry_not_found"
    await ws.send_json_auto_id(
        {
            "type": "cloudsync/publish",
            "config_entry_id": entry.entry_id,
            "messages": [{"topic": "a"}] * 1001,
        }
    )
    reply = await ws.receive_json()
    assert reply["error"]["code"] == "batch_too_large"


async def test_publish_larger_than_the_window_waits_for_room(
    hass_ws_client: Any, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """A batch the window cannot take whole waits for room; commands meanwhile work."""
    ws = await hass_ws_client()
    big = [{"topic": f"{prefix}/big", "payload": str(i), "qos": 1} for i in range(250)]
    async with MqttSubscriber(plain_broker, f"{prefix}/#", qos=1) as sub:
        await ws.send_json_auto_id(
            {"type": "cloudsync/publish", "url": plain_broker.url, "messages": big}
        )
        for i in range(3):  # small commands behind it, answered on their own
            await ws.send_json_auto_id(
                {
                    "type": "cloudsync/publish",
                    "url": plain_broker.url,
                    "topic": f"{prefix}/small",
                    "payload": f"s{i}",
                    "qos": 1,
                }
            )
        replies = [await ws.receive_json() for _ in range(4)]
        got = await sub.messages(253)
    assert all(reply["success"] for reply in replies), replies
    assert sorted(reply["result"]["published"] for reply in replies) == [1, 1, 1, 250]
    assert [m.payload for m in got if m.topic.endswith("/big")] == [
        str(i).encode() for i in range(250)
    ]
    assert sorted(m.payload for m in got if m.topic.endswith("/small")) == [
        b"s0",
        b"s1",
        b"s2",
    ]


async def test_publish_unacknowledged_in_time_is_queued(
    hass: HomeAssistant, hass_ws_client: Any, broker_factory: BrokerFactory
) -> None:
    """Sent whole but not acked within the command's timeout: answered queued, delivered later."""
    broker = broker_factory()
    entry = await setup_entry(hass, entry_for(broker))
    assert entry.state is ConfigEntryState.LOADED
    ws = await hass_ws_client()
    messages = [{"topic": "frozen/t", "payload": str(i), "qos": 1} for i in range(5)]
    async with MqttSubscriber(broker, "frozen/#", qos=1) as sub:
        broker.pause()
        try:
            await ws.send_json_auto_id(
                {
                    "type": "cloudsync/publish",
                    "config_entry_id": entry.entry_id,
                    "messages": messages,
                    "timeout": 0.3,
                }
            )
            reply = await ws.receive_json()
        finally:
            broker.resume()
        got = await sub.messages(5, timeout=15)
    assert reply["success"], reply
    assert [r["status"] for r in reply["result"]["results"]] == ["queued"] * 5
    # Sent before the timeout (the broker reads them once resumed), then again from
    # the outbox behind them: at least once, in order.
    assert [m.payload for m in got] == [str(i).encode() for i in range(5)]


@pytest.mark.parametrize("backlog_known", [True, False])
async def test_subscribe_streams_until_unsubscribe(
    hass: HomeAssistant,
    monkeypatch: pytest.MonkeyPatch,
    backlog_known: bool,
    hass_ws_client: Any,
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    prefix: str,
) -> None:
    """Every message on the filter is pushed, in order, until unsubscribed.

    Without a readable backlog (another HA version) the stream still flows.
    """
    seen: list[int | None] = []
    real_backlog = stream_module.connection_backlog

    def backlog(connection: Any) -> int | None:
        seen.append(real_backlog(connection))
        return seen[-1] if backlog_known else None

    monkeypatch.setattr(stream_module, "connection_backlog", backlog)
    ws = await hass_ws_client()
    await ws.send_json_auto_id(
        {
            "type": "cloudsync/subscribe",
            "url": plain_broker.url,
            "topic": f"{prefix}/+",
            "qos": 1,
        }
    )
    reply = await ws.receive_json()
    assert reply["success"], reply
    sub_id = reply["id"]
    for i in range(5):
        await mqtt_publish(plain_broker, f"{prefix}/{i}", f"m{i}", qos=1)
    await mqtt_publish(plain_broker, f"{prefix}/bin", b"\xff\x00", qos=1)
    got = await _events(ws, 6)
    assert [m["payload"] for m in got[:5]] == [f"m{i}" for i in range(5)]
    assert got[5]["encoding"] == "base64"
    assert got[0]["qos"] == 1
    assert isinstance(got[0]["received"], float)
    assert seen
    assert all(isinstance(n, int) for n in seen)  # HA's queue is readable here
    hub = async_get_hub(hass, entry.entry_id)
    assert f"{prefix}/+" in hub.filters
    await ws.send_json_auto_id({"type": "unsubscribe_events", "subscription": sub_id})
    reply = await ws.receive_json()
    assert reply["success"], reply
    assert f"{prefix}/+" not in hub.filters
    await mqtt_publish(plain_broker, f"{prefix}/late", "late", qos=1)
    await ws.send_json_auto_id({"type": "ping"})
    assert (await ws.receive_json())["type"] == "pong"


async def test_subscribe_ends_on_disconnect(
    hass: HomeAssistant,
    hass_ws_client: Any,
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    prefix: str,
) -> None:
    """A closed websocket stops its streams (the hub forgets the filter)."""
    ws = await hass_ws_client()
    await ws.send_json_auto_id(
        {"type": "cloudsync/subscribe", "url": plain_broker.url, "topic": prefix}
    )
    assert (await ws.receive_json())["success"]
    hub = async_get_hub(hass, entry.entry_id)
    assert prefix in hub.filters
    await ws.close()
    await hass.async_block_till_done()
    for _ in range(50):
        if prefix not in hub.filters:
            break
        await asyncio.sleep(0.05)
    assert prefix not in hub.filters


async def test_subscribe_refusals(
    hass_ws_client: Any,
    hass_read_only_access_token: str,
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
) -> None:
    """A bad filter is invalid_topic; a non-admin needs an app subscribed to it."""
    ws = await hass_ws_client()
    await ws.send_json_auto_id(
        {"type": "cloudsync/subscribe", "url": plain_broker.url, "topic": "a/#/b"}
    )
    assert (await ws.receive_json())["error"]["code"] == "invalid_topic"
    user_ws = await hass_ws_client(access_token=hass_read_only_access_token)
    await user_ws.send_json_auto_id(
        {"type": "cloudsync/subscribe", "url": plain_broker.url, "topic": "a/#"}
    )
    assert (await user_ws.receive_json())["error"]["code"] == "not_subscribed"
    await user_ws.send_json_auto_id(
        {
            "type": "cloudsync/subscribe",
            "url": plain_broker.url,
            "topic": "a/#",
            "app_id": "nobody",
        }
    )
    assert (await user_ws.receive_json())["error"]["code"] == "not_subscribed"


@pytest.fixture
async def reader_app(
    entry: MockConfigEntry, hass_read_only_user: Any, prefix: str
) -> tuple[Principal, str]:
    """Return the read-only user and a filter its app "reader-app" subscribed to.

    "other-app" subscribes to it too, so the filter stays when reader-app leaves.
    """
    owner = Principal(hass_read_only_user.id, is_admin=False)
    topic_filter = f"{prefix}/#"
    await entry.runtime_data.async_subscribe(
        "reader-app", topic_filter, principal=owner
    )
    await entry.runtime_data.async_subscribe("other-app", topic_filter)
    return owner, topic_filter


async def _stream(ws: Any, url: str, topic_filter: str, **app: str) -> int:
    """Start a cloudsync/subscribe stream; return its id."""
    await ws.send_json_auto_id(
        {"type": "cloudsync/subscribe", "url": url, "topic": topic_filter, **app}
    )
    reply = await ws.receive_json()
    assert reply["success"], reply
    return int(reply["id"])


async def test_a_non_admins_stream_ends_with_its_apps_subscription(
    hass_ws_client: Any,
    hass_read_only_access_token: str,
    reader_app: tuple[Principal, str],
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    prefix: str,
) -> None:
    """A non-admin streams what its app subscribed to, until the app unsubscribes.

    Another app keeps the filter subscribed: the stream ends with its own app.
    """
    owner, topic_filter = reader_app
    user_ws = await hass_ws_client(access_token=hass_read_only_access_token)
    admin_ws = await hass_ws_client()
    user_stream = await _stream(
        user_ws, plain_broker.url, topic_filter, app_id="reader-app"
    )
    await _stream(admin_ws, plain_broker.url, topic_filter)
    await mqtt_publish(plain_broker, f"{prefix}/a", "one", qos=1)
    assert [m["payload"] for m in await _events(user_ws, 1)] == ["one"]
    assert [m["payload"] for m in await _events(admin_ws, 1)] == ["one"]
    await entry.runtime_data.async_unsubscribe(
        "reader-app", topic_filter, principal=owner
    )
    ended = await user_ws.receive_json()
    assert (ended["type"], ended["id"]) == ("event", user_stream)
    assert ended["event"]["error"]["code"] == "not_subscribed"
    assert "reader-app" in ended["event"]["error"]["message"]
    await mqtt_publish(plain_broker, f"{prefix}/b", "two", qos=1)
    assert [m["payload"] for m in await _events(admin_ws, 1)] == ["two"]
    await user_ws.send_json_auto_id({"type": "ping"})
    assert (await user_ws.receive_json())["type"] == "pong"  # "two" never came


async def test_a_non_admins_stream_ends_with_its_app_after_a_reload(
    hass: HomeAssistant,
    hass_ws_client: Any,
    hass_read_only_access_token: str,
    reader_app: tuple[Principal, str],
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    prefix: str,
) -> None:
    """The stream outlives a reload of the entry, and still ends with its app.

    The reload leaves the listener on the old broker object; the check before each
    frame asks the entry's broker of the moment.
    """
    owner, topic_filter = reader_app
    user_ws = await hass_ws_client(access_token=hass_read_only_access_token)
    user_stream = await _stream(
        user_ws, plain_broker.url, topic_filter, app_id="reader-app"
    )
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await mqtt_publish(plain_broker, f"{prefix}/a", "after reload", qos=1)
    assert [m["payload"] for m in await _events(user_ws, 1)] == ["after reload"]
    await entry.runtime_data.async_unsubscribe(
        "reader-app", topic_filter, principal=owner
    )
    await mqtt_publish(plain_broker, f"{prefix}/b", "secret", qos=1)
    ended = await user_ws.receive_json()
    assert (ended["type"], ended["id"]) == ("event", user_stream)
    assert ended["event"]["error"]["code"] == "not_subscribed"  # not "secret"


@pytest.mark.parametrize("backlog_known", [True, False])
async def test_slow_client_is_cut_off(
    hass: HomeAssistant,
    hass_ws_client: Any,
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    backlog_known: bool,
) -> None:
    """A client that reads nothing gets client_too_slow; the buffer stays capped.

    With the connection's real backlog the client's unread frames hold the
    stream back; the second run reports a backlog that never drains.
    """
    monkeypatch.setattr(stream_module, "MAX_BACKLOG", 2)
    monkeypatch.setattr(stream_module, "MAX_BUFFERED_MESSAGES", 50)
    peak = [0]
    real_push = stream_module.MessageStream.push

    def push(self: stream_module.MessageStream, data: Any) -> None:
        real_push(self, data)
        peak[0] = max(peak[0], self.buffered[0])

    monkeypatch.setattr(stream_module.MessageStream, "push", push)
    if not backlog_known:
        monkeypatch.setattr(stream_module, "connection_backlog", lambda _c: 10**6)
    ws = await hass_ws_client()
    await ws.send_json_auto_id(
        {"type": "cloudsync/subscribe", "url": plain_broker.url, "topic": prefix}
    )
    reply = await ws.receive_json()
    assert reply["success"]
    hub = async_get_hub(hass, entry.entry_id)
    payload = "x" * 32768
    messages = [{"topic": prefix, "payload": payload}] * 40
    publisher = await hass_ws_client()
    for _ in range(40):
        await publisher.send_json_auto_id(
            {"type": "cloudsync/publish", "url": plain_broker.url, "messages": messages}
        )
        assert (await publisher.receive_json())["success"]
        if prefix not in hub.filters:
            break
    assert prefix not in hub.filters, "the slow stream was not cut off"
    assert peak[0] <= 51
    error = None
    async with asyncio.timeout(30):
        while error is None:
            msg = await ws.receive_json()
            error = msg["event"].get("error")
    assert error["code"] == "client_too_slow"


def test_backlog_unknown() -> None:
    """A connection without HA's message queue has no known backlog."""
    connection = MagicMock()
    connection.send_message = lambda _msg: None
    assert stream_module.connection_backlog(connection) is None


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({"topic": "{prefix}/t", "payload": "x", "timeout": 5}, "published"),
        (
            {"topic": "{prefix}/t", "payload": "x", "qos": "1", "retain": "false"},
            "published",
        ),
        ({"topic": "{prefix}/+", "payload": "x"}, "refused"),
        ({"payload": "x"}, "invalid_request"),
        ({"topic": "{prefix}/t", "messages": []}, "invalid_request"),
        ({"topic": "{prefix}/t", "config_entry_id": "x"}, "invalid_request"),
        ({"topic": "{prefix}/t", "timeout": 0}, "invalid_request"),
        ({"topic": "{prefix}/t", "app_id": "a\x01"}, "invalid_request"),
        ({"topic": "{prefix}/t", "unknown": 1}, "invalid_request"),
    ],
)
async def test_publish_command_forms(
    hass_ws_client: Any,
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    prefix: str,
    fields: dict[str, Any],
    outcome: str,
) -> None:
    """Plain and schema-checked forms; a bad command is invalid_request."""
    ws = await hass_ws_client()
    body = {
        key: value.format(prefix=prefix) if isinstance(value, str) else value
        for key, value in fields.items()
    }
    await ws.send_json_auto_id(
        {"type": "cloudsync/publish", "url": plain_broker.url, **body}
    )
    reply = await ws.receive_json()
    if outcome == "invalid_request":
        assert (reply["success"], reply["error"]["code"]) == (False, outcome)
    else:
        assert reply["success"], reply
        assert reply["result"]["results"][0]["status"] == outcome
