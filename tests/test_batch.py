"""Batch publish: REST /publish/batch and the publish action's messages form."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any
import uuid

from homeassistant.config_entries import ConfigEntryState
from homeassistant.exceptions import HomeAssistantError
import pytest

from custom_components.cloudsync import batch
from custom_components.cloudsync.const import CONF_APP_ISOLATION, DOMAIN
from tests.common import entry_for, setup_entry, user_client
from tests.mosquitto import MqttSubscriber

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    from tests.mosquitto import BrokerFactory, Mosquitto

pytestmark = pytest.mark.usefixtures("socket_enabled")

URL = "/api/v1/orchestration/cloudsyncmgr/publish/batch"


@pytest.fixture
def prefix() -> str:
    """Return a topic prefix unique to the test (the session broker is shared)."""
    return f"test-batch/{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def entry(hass: HomeAssistant, plain_broker: Mosquitto) -> MockConfigEntry:
    """Return a loaded entry with app isolation on."""
    entry = await setup_entry(
        hass, entry_for(plain_broker, options={CONF_APP_ISOLATION: True})
    )
    assert entry.state is ConfigEntryState.LOADED
    return entry


async def _post(client: TestClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        URL, data=json.dumps(body), headers={"Content-Type": "text/plain"}
    )
    return response.status, await response.json()


async def test_batch_statuses_in_order(
    hass_client: Any, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """Each message gets its status in order; the bad ones in the middle only refuse."""
    client = await hass_client()
    messages: list[Any] = [
        {"topic": f"{prefix}/{i}", "payload": str(i), "qos": 1} for i in range(20)
    ]
    messages[5] = {"topic": f"{prefix}/+", "payload": "bad topic", "qos": 1}
    messages[9] = {"topic": f"{prefix}/b", "payload": "%%%", "encoding": "base64"}
    messages[12] = {"payload": "no topic"}
    messages[14] = {"topic": f"{prefix}/bin", "payload": "AAH/", "encoding": "base64"}
    async with MqttSubscriber(plain_broker, f"{prefix}/#", qos=1) as sub:
        status, body = await _post(
            client, {"url": plain_broker.url, "appid": "app", "messages": messages}
        )
        assert status == 200, body
        results = body["results"]
        assert [r["status"] for r in results] == [
            "refused" if i in (5, 9, 12) else "published" for i in range(20)
        ]
        assert [r.get("error") for r in results if r["status"] == "refused"] == [
            "invalid_topic",
            "invalid_payload",
            "invalid_request",
        ]
        assert (body["published"], body["queued"], body["refused"]) == (17, 0, 3)
        mids = [r["mid"] for r in results if r["status"] == "published"]
        assert mids == sorted(mids)
        got = await sub.messages(17)
    assert [m.topic for m in got] == [
        messages[i]["topic"] for i in range(20) if i not in (5, 9, 12)
    ]
    assert got[11].payload == b"\x00\x01\xff"


async def test_batch_queued_when_down(
    hass: HomeAssistant, hass_client: Any, broker_factory: BrokerFactory
) -> None:
    """With the broker down every message is queued with an id, in order."""
    broker = broker_factory()
    entry = await setup_entry(hass, entry_for(broker))
    await broker.async_stop()
    await hass.async_block_till_done()
    client = await hass_client()
    messages = [{"topic": f"down/{i}", "payload": "x"} for i in range(5)]
    status, body = await _post(
        client, {"url": broker.url, "appid": "app", "messages": messages}
    )
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == ["queued"] * 5
    assert all(len(r["id"]) == 32 and r["qos"] == 1 for r in body["results"])
    assert entry.runtime_data.outbox_stats.queued == 5


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([{"topic": "t", "payload": "x"}] * (batch.MAX_BATCH_MESSAGES + 1), "count"),
        (
            [{"topic": "t", "payload": "x" * (1024 * 1024)}] * 5,
            "bytes",
        ),
    ],
)
async def test_batch_limits(
    hass_client: Any,
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    messages: list[dict[str, Any]],
    error: str,
) -> None:
    """Over 1000 messages or 4 MiB of payload: 413 batch_too_large, nothing sent."""
    client = await hass_client()
    delivered = entry.runtime_data.diagnostics()["connection"]["pending_acks"]
    status, body = await _post(
        client, {"url": plain_broker.url, "appid": "app", "messages": messages}
    )
    assert (status, body["error"]) == (413, "batch_too_large"), error
    assert entry.runtime_data.diagnostics()["connection"]["pending_acks"] == delivered


@pytest.mark.parametrize(
    "body",
    [
        {"appid": "app", "messages": "not a list"},
        {"appid": "app"},
        {"messages": []},
    ],
)
async def test_batch_bad_body(
    hass_client: Any, entry: MockConfigEntry, plain_broker: Mosquitto, body: Any
) -> None:
    """A body without a messages list is a 400 for the whole request."""
    client = await hass_client()
    status, reply = await _post(client, {"url": plain_broker.url, **body})
    assert (status, reply["error"]) == (400, "invalid_request")


async def test_batch_isolation_per_message(
    hass: HomeAssistant,
    hass_client: Any,
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    prefix: str,
) -> None:
    """A message naming another user's app is refused; the user's own go out."""
    alice = await user_client(hass, hass_client)
    bob = await user_client(hass, hass_client)
    base = {"url": plain_broker.url, "appid": "bob-app"}
    status, _ = await _post(bob, {**base, "messages": [{"topic": f"{prefix}/b"}]})
    assert status == 200
    messages = [
        {"topic": f"{prefix}/a1", "payload": "1"},
        {"topic": f"{prefix}/a2", "payload": "2", "appid": "bob-app"},
        {"topic": f"{prefix}/a3", "payload": "3"},
    ]
    status, body = await _post(
        alice, {**base, "appid": "alice-app", "messages": messages}
    )
    assert status == 200
    assert [(r["status"], r.get("error")) for r in body["results"]] == [
        ("published", None),
        ("refused", "app_not_owned"),
        ("published", None),
    ]


async def test_action_messages(
    hass: HomeAssistant, entry: MockConfigEntry, plain_broker: Mosquitto, prefix: str
) -> None:
    """The publish action's messages form answers a status per message."""
    messages = [
        {"topic": f"{prefix}/1", "payload": "a", "qos": 1},
        {"topic": f"{prefix}/#", "payload": "b"},
        {
            "topic": f"{prefix}/3",
            "payload": base64.b64encode(b"\xff").decode(),
            "encoding": "base64",
            "retain": False,
        },
    ]
    data = {"config_entry_id": entry.entry_id, "messages": messages}
    async with MqttSubscriber(plain_broker, f"{prefix}/#") as sub:
        response = await hass.services.async_call(
            DOMAIN, "publish", data, blocking=True, return_response=True
        )
        got = await sub.messages(2)
    assert response is not None
    assert [r["status"] for r in response["results"]] == [  # type: ignore[union-attr]
        "published",
        "refused",
        "published",
    ]
    assert [m.payload for m in got] == [b"a", b"\xff"]
    with pytest.raises(HomeAssistantError, match="1 of 3 messages were refused"):
        await hass.services.async_call(DOMAIN, "publish", data, blocking=True)


async def test_action_needs_topic_or_messages(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """The action takes a topic or messages, not both and not neither."""
    base = {"config_entry_id": entry.entry_id}
    for data in ({}, {"topic": "a", "messages": [{"topic": "a"}]}):
        with pytest.raises(Exception, match="topic|messages|exclusion"):
            await hass.services.async_call(
                DOMAIN, "publish", {**base, **data}, blocking=True
            )


_BODIES: list[dict[str, Any]] = [
    {"appid": "a", "url": "h", "topic": "t", "payload": "x"},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "qos": 1, "retain": True},
    {"appid": "a", "url": "h", "topic": "t", "payload": "", "qos": 2, "timeout": 3},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "timeout": 60.0},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "extra": [1]},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "encoding": "utf-8"},
    # Below: forms only the schema takes or refuses.
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "qos": "1"},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "retain": "true"},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "encoding": "UTF-8"},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "qos": True},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "qos": None},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "retain": None},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "timeout": 0},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "timeout": 61},
    {"appid": "a", "url": "h", "topic": "t", "payload": "x", "timeout": True},
    {"appid": "a\x01", "url": "h", "topic": "t", "payload": "x"},
    {"appid": "", "url": "h", "topic": "t", "payload": "x"},
    {"appid": "a" * 129, "url": "h", "topic": "t", "payload": "x"},
    {"appid": "a", "url": "h\n", "topic": "t", "payload": "x"},
    {"appid": "a", "url": "h", "topic": "t" * 1025, "payload": "x"},
    {"appid": "a", "url": "h", "topic": 5, "payload": "x"},
    {"appid": "a", "url": "h", "topic": "t"},
    {"appid": "a", "url": "h", "topic": "t", "payload": 1},
]


@pytest.mark.parametrize("body", _BODIES)
def test_plain_forms_match_the_schemas(body: dict[str, Any]) -> None:
    """The fast paths answer exactly what the schemas do, or leave it to them."""
    import voluptuous as vol

    from custom_components.cloudsync.http_schemas import (
        PUBLISH_SCHEMA,
        plain_message,
        plain_publish,
    )

    try:
        expected: dict[str, Any] | None = PUBLISH_SCHEMA(body)
    except vol.Invalid:
        expected = None
    fast = plain_publish(body)
    assert fast is None or fast == expected
    message = {k: v for k, v in body.items() if k not in ("appid", "url", "timeout")}
    try:
        expected_message: dict[str, Any] | None = batch.message_schema("appid")(message)
    except vol.Invalid:
        expected_message = None
    fast_message = plain_message(message)
    assert fast_message is None or fast_message == expected_message
    if _BODIES.index(body) < 6:
        assert fast == expected
        assert fast_message == expected_message


async def test_batch_broker_refusals_stay_alone(
    hass: HomeAssistant, hass_client: Any, broker_factory: BrokerFactory
) -> None:
    """An MQTT 5 PUBACK refusal and an over-limit payload refuse only their message."""
    from custom_components.cloudsync.const import CONF_PROTOCOL
    from tests.mosquitto import dynsec_config

    allow = [("subscribePattern", "allowed/#"), ("publishClientSend", "allowed/#")]
    rules = dynsec_config(allow, subscribe_default=False, publish_default=False)
    broker = broker_factory(extra_config=[*rules, "max_packet_size 512"])
    await setup_entry(hass, entry_for(broker, **{CONF_PROTOCOL: "mqttv5"}))
    client = await hass_client()
    messages = [
        {"topic": "allowed/a", "payload": "1", "qos": 1},
        {"topic": "denied/b", "payload": "2", "qos": 1},
        {"topic": "allowed/c", "payload": "x" * 600, "qos": 1},
        {"topic": "allowed/d", "payload": "4", "qos": 1},
    ]
    status, body = await _post(
        client, {"url": broker.url, "appid": "app", "messages": messages}
    )
    assert status == 200, body
    assert [(r["status"], r.get("error")) for r in body["results"]] == [
        ("published", None),
        ("refused", "broker_refused"),
        ("refused", "payload_too_large"),
        ("published", None),
    ]


async def test_batch_obeys_the_broker_profile(
    hass: HomeAssistant, hass_client: Any, plain_broker: Mosquitto, prefix: str
) -> None:
    """Under the AWS IoT Core profile a batch's over-limit messages refuse alone."""
    await setup_entry(hass, entry_for(plain_broker, profile="aws_iot_core"))
    client = await hass_client()
    messages = [
        {"topic": f"{prefix}/ok", "payload": "1", "qos": 1},
        {"topic": f"{prefix}/big", "payload": "x" * (128 * 1024 + 1), "qos": 1},
        {"topic": f"{prefix}/qos2", "payload": "2", "qos": 2},
        {"topic": f"{prefix}/ok", "payload": "3", "qos": 1},
    ]
    async with MqttSubscriber(plain_broker, f"{prefix}/#", qos=1) as sub:
        status, body = await _post(
            client, {"url": plain_broker.url, "appid": "app", "messages": messages}
        )
        assert status == 200, body
        assert [r["status"] for r in body["results"]] == [
            "published",
            "refused",
            "refused",
            "published",
        ]
        assert [r["error"] for r in body["results"][1:3]] == [
            "profile_payload_too_large",
            "profile_limit",
        ]
        got = await sub.messages(2)
    assert [m.payload for m in got] == [b"1", b"3"]
