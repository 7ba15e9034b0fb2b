"""Tests for the REST API (the seed's paths), against real mosquitto brokers."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
import re
from typing import TYPE_CHECKING, Any
from unittest.mock import MagicMock
from urllib.parse import quote
import uuid

from aiohttp.test_utils import make_mocked_request
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import callback
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import yaml

from custom_components.cloudsync import errors, http, lookup
from custom_components.cloudsync.const import (
    CONF_ALLOW_LOCAL_UNAUTHENTICATED,
    CONF_CLIENT_ID,
    CONF_PROTOCOL,
    CONF_QOS,
    CONF_RETAIN,
    CONF_URL,
    DOMAIN,
)
from custom_components.cloudsync.errors import UnauthorizedError, error_kind
from custom_components.cloudsync.http_auth import async_authenticate
from custom_components.cloudsync.http_schemas import PUBLISH_SCHEMA
from tests.common import entry_for, setup_entry
from tests.mosquitto import (
    MqttSubscriber,
    dynsec_config,
    mqtt_publish,
    mqtt_subscribe_collect,
)

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient
    from homeassistant.core import HomeAssistant

    from tests.mosquitto import BrokerFactory, Mosquitto

pytestmark = pytest.mark.usefixtures("socket_enabled")

BASE = "/api/v1/orchestration/cloudsyncmgr"
TEXT_PLAIN = {"Content-Type": "text/plain"}
OPENAPI = Path(__file__).parent.parent / "docs" / "openapi.yaml"
BINARY = b"\x00\x01\xff\xfe\x89PNG\r\n\x1a\n\x00"


async def _async_setup_entry(
    hass: HomeAssistant,
    broker: Mosquitto,
    *,
    options: dict[str, Any] | None = None,
    **data: Any,
) -> MockConfigEntry:
    """Add an entry for ``broker`` and set it up (it may fail to load)."""
    return await setup_entry(hass, entry_for(broker, options=options, **data))


@pytest.fixture
async def entry(hass: HomeAssistant, plain_broker: Mosquitto) -> MockConfigEntry:
    """Return a loaded entry on the session's plain broker."""
    entry = await _async_setup_entry(hass, plain_broker)
    assert entry.state is ConfigEntryState.LOADED
    return entry


@pytest.fixture
async def client(hass_client, entry: MockConfigEntry) -> TestClient:
    """Return a client sending `Authorization: Bearer <token>`."""
    return await hass_client()


@pytest.fixture
def prefix() -> str:
    """Return a topic prefix unique to the test (the session broker is shared)."""
    return f"test-http/{uuid.uuid4().hex[:8]}"


async def post(
    client: TestClient, action: str, body: dict[str, Any] | str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """POST a body the way the seed's clients do (JSON sent as text/plain)."""
    data = body if isinstance(body, str) else json.dumps(body)
    headers = {**TEXT_PLAIN, **kwargs.pop("headers", {})}
    response = await client.post(
        f"{BASE}/{action}", data=data, headers=headers, **kwargs
    )
    return response.status, await response.json()


async def get(client: TestClient, *segments: str) -> tuple[int, dict[str, Any]]:
    """GET /getsubscribedata with each segment percent-encoded (/ as %2F)."""
    path = "/".join(quote(segment, safe="") for segment in segments)
    response = await client.get(f"{BASE}/getsubscribedata/{path}")
    return response.status, await response.json()


async def wait_for_data(
    client: TestClient, *segments: str, timeout: float = 5.0
) -> dict[str, Any]:
    """Poll the GET endpoint until it answers with data."""
    async with asyncio.timeout(timeout):
        while True:
            status, body = await get(client, *segments)
            assert status == 200, body
            if body["received"] is not None:
                return body
            await asyncio.sleep(0.02)


def published(broker: Mosquitto) -> str:
    """Return the publish success message for a broker."""
    return f"Data published successfully to Cloud {broker.url}"


# -- the seed's requests --------------------------------------------------------------


async def test_publish_seed_body(
    client: TestClient, plain_broker: Mosquitto, prefix: str
) -> None:
    """The seed's documented publish body, as text/plain with a bare IP, works."""
    topic = f"{prefix}/home1/livingroom"
    async with MqttSubscriber(plain_broker, topic) as sub:
        status, body = await post(
            client,
            "publish",
            '{\n    "appid": "tv1",\n'
            '    "payload": "{Another data from TV1 and testdata}",\n'
            f'    "topic": "{topic}",\n    "url" : "127.0.0.1"\n}}',
        )
        message = await sub.message()
    assert status == 200
    assert body == {
        "Message": published(plain_broker),
        "broker": plain_broker.url,
        "topic": topic,
        "qos": 0,
        "retain": False,
        "queued": False,
        "id": body["id"],
        "mid": body["mid"],
    }
    assert isinstance(body["mid"], int)
    assert len(body["id"]) == 32
    assert message.payload == b"{Another data from TV1 and testdata}"
    assert message.qos == 0


async def test_subscribe_and_get_seed_forms(
    client: TestClient, plain_broker: Mosquitto, prefix: str
) -> None:
    """Subscribe with the seed's body; both GET forms return data on a topic with /."""
    topic = f"{prefix}/kitchen1"
    status, body = await post(
        client, "subscribe", {"appid": "app", "topic": topic, "url": "127.0.0.1"}
    )
    assert status == 200
    assert body == {
        "Message": f"Successfully subscribed to the topic {topic}",
        "broker": plain_broker.url,
        "topic": topic,
        "qos": 0,
        "new_at_broker": True,
        "granted_qos": 0,
    }
    assert await get(client, topic, "app") == (
        200,
        {
            "Message": "",
            "broker": plain_broker.url,
            "topic": topic,
            "received": None,
            "qos": None,
            "retained": None,
            "encoding": None,
        },
    )

    await mqtt_publish(plain_broker, topic, "21.5 °C", qos=1)
    doc_form = await wait_for_data(client, topic, "app")
    assert doc_form["Message"] == "21.5 °C"
    assert doc_form["encoding"] == "utf-8"
    assert doc_form["qos"] == 0  # the subscription QoS caps the delivery
    assert doc_form["retained"] is False
    assert doc_form["received"].endswith("+00:00")
    for host in ("127.0.0.1", f"127.0.0.1:{plain_broker.port}", plain_broker.url):
        assert await get(client, host, topic, "app") == (200, doc_form)


async def test_subscribe_says_what_the_broker_granted(
    client: TestClient, plain_broker: Mosquitto, prefix: str
) -> None:
    """granted_qos comes with a SUBSCRIBE sent: a new filter or a higher QoS only."""
    body = {"appid": "app", "topic": f"{prefix}/g", "url": plain_broker.url}
    answers = [
        (await post(client, "subscribe", {**body, "appid": appid, "qos": qos}))[1]
        for appid, qos in (("a", 1), ("b", 1), ("c", 0), ("d", 2))
    ]
    assert [a["new_at_broker"] for a in answers] == [True, False, False, False]
    assert [a.get("granted_qos") for a in answers] == [1, None, None, 2]
    assert [a["qos"] for a in answers] == [1, 1, 0, 2]


async def test_wildcard_subscription(
    client: TestClient, plain_broker: Mosquitto, prefix: str
) -> None:
    """Data on a concrete topic is answered to an app subscribed to a wildcard."""
    body = {"appid": "app", "topic": f"{prefix}/+/temp", "url": plain_broker.url}
    assert (await post(client, "subscribe", body))[0] == 200
    await mqtt_publish(plain_broker, f"{prefix}/kitchen/temp", "20")
    data = await wait_for_data(client, f"{prefix}/kitchen/temp", "app")
    assert data["Message"] == "20"
    # Asking with the filter itself answers the newest message under it.
    status, newest = await get(client, f"{prefix}/+/temp", "app")
    assert (status, newest["topic"], newest["Message"]) == (
        200,
        f"{prefix}/kitchen/temp",
        "20",
    )
    status, other = await get(client, f"{prefix}/kitchen/humidity", "app")
    assert (status, other["error"]) == (404, "not_subscribed")


async def test_options_and_explicit_qos_retain(
    hass: HomeAssistant, hass_client, plain_broker: Mosquitto, prefix: str
) -> None:
    """QoS and retain default to the entry's options; the body overrides them."""
    await _async_setup_entry(
        hass, plain_broker, options={CONF_QOS: 1, CONF_RETAIN: True}
    )
    client = await hass_client()
    topic = f"{prefix}/kept"
    body = {"appid": "a", "payload": "on", "topic": topic, "url": "127.0.0.1"}
    async with MqttSubscriber(plain_broker, topic, qos=2) as sub:
        status, reply = await post(client, "publish", body)
        assert (status, reply["qos"], reply["retain"]) == (200, 1, True)
        assert (await sub.message()).qos == 1
        status, reply = await post(
            client, "publish", body | {"qos": "2", "retain": "false", "payload": "off"}
        )
        assert (status, reply["qos"], reply["retain"]) == (200, 2, False)
        assert (await sub.message()).qos == 2
    # The first publish was retained, the second (retain false) was not.
    assert await mqtt_subscribe_collect(plain_broker, topic, 1) == [(topic, b"on")]
    await mqtt_publish(plain_broker, topic, b"", retain=True)


async def test_binary_round_trip(
    client: TestClient, plain_broker: Mosquitto, prefix: str
) -> None:
    """Base64 in, exact bytes at a mosquitto_sub peer, base64 back out of GET."""
    topic = f"{prefix}/camera/image"
    subscribe = {"appid": "cam", "topic": topic, "url": "127.0.0.1"}
    assert (await post(client, "subscribe", subscribe))[0] == 200
    async with MqttSubscriber(plain_broker, topic) as sub:
        status, _ = await post(
            client,
            "publish",
            subscribe
            | {"payload": base64.b64encode(BINARY).decode(), "encoding": "base64"},
        )
        assert status == 200
        assert (await sub.message()).payload == BINARY
    data = await wait_for_data(client, topic, "cam")
    assert data["encoding"] == "base64"
    assert base64.b64decode(data["Message"]) == BINARY


async def test_app_cannot_read_other_apps_data(
    client: TestClient, plain_broker: Mosquitto, prefix: str
) -> None:
    """App B gets a 404 for a topic only app A subscribed to."""
    topic = f"{prefix}/private"
    body = {"appid": "app-a", "topic": topic, "url": "127.0.0.1"}
    assert (await post(client, "subscribe", body))[0] == 200
    await mqtt_publish(plain_broker, topic, "secret")
    await wait_for_data(client, topic, "app-a")
    status, reply = await get(client, topic, "app-b")
    assert status == 404
    assert reply["error"] == "not_subscribed"
    assert "secret" not in json.dumps(reply)


async def test_unsubscribe_last_app_stops_delivery(
    hass: HomeAssistant,
    client: TestClient,
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    prefix: str,
) -> None:
    """The filter stays at the broker until its last app unsubscribes."""
    topic = f"{prefix}/shared"
    for app in ("a", "b"):
        body = {"appid": app, "topic": topic, "url": "127.0.0.1"}
        assert (await post(client, "subscribe", body))[0] == 200
    status, reply = await post(
        client, "unsubscribe", {"appid": "a", "topic": topic, "url": "127.0.0.1"}
    )
    assert status == 200
    assert reply["Message"] == f"Successfully unsubscribed from the topic {topic}"
    assert reply["unsubscribed_at_broker"] is False
    await mqtt_publish(plain_broker, topic, "for b")
    assert (await wait_for_data(client, topic, "b"))["Message"] == "for b"

    since = plain_broker.log_offset()
    status, reply = await post(
        client, "unsubscribe", {"appid": "b", "topic": topic, "url": "127.0.0.1"}
    )
    assert (status, reply["unsubscribed_at_broker"]) == (200, True)
    assert plain_broker.log_contains(
        f"Received UNSUBSCRIBE from {entry.data[CONF_CLIENT_ID]}", since
    )
    received: list[Any] = []
    entry.runtime_data.add_message_listener(received.append)
    await mqtt_publish(plain_broker, topic, "nobody listens")
    await asyncio.sleep(0.3)
    assert received == []
    assert (await get(client, topic, "b"))[0] == 404
    status, reply = await post(
        client, "unsubscribe", {"appid": "b", "topic": topic, "url": "127.0.0.1"}
    )
    assert (status, reply["error"]) == (404, "not_subscribed")


async def test_subscriptions_survive_restart(
    hass: HomeAssistant,
    client: TestClient,
    entry: MockConfigEntry,
    plain_broker: Mosquitto,
    prefix: str,
) -> None:
    """After unload + setup the stored subscription delivers again."""
    topic = f"{prefix}/persist"
    body = {"appid": "app", "topic": topic, "url": "127.0.0.1", "qos": 1}
    assert (await post(client, "subscribe", body))[0] == 200
    assert await hass.config_entries.async_unload(entry.entry_id)
    status, reply = await get(client, topic, "app")
    assert (status, reply["error"]) == (503, "broker_not_loaded")

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await mqtt_publish(plain_broker, topic, "after restart", qos=1)
    data = await wait_for_data(client, topic, "app")
    assert (data["Message"], data["qos"]) == ("after restart", 1)


async def test_parallel_publishes_all_delivered(
    client: TestClient, plain_broker: Mosquitto, prefix: str
) -> None:
    """50 concurrent publish requests all reach a real subscriber."""
    topic = f"{prefix}/burst"
    async with MqttSubscriber(plain_broker, topic, qos=1) as sub:
        replies = await asyncio.gather(
            *(
                post(
                    client,
                    "publish",
                    {
                        "appid": f"app{n % 5}",
                        "payload": f"message {n}",
                        "topic": topic,
                        "url": "127.0.0.1",
                        "qos": 1,
                    },
                )
                for n in range(50)
            )
        )
        messages = await sub.messages(50)
    assert {status for status, _ in replies} == {200}
    assert len({reply["mid"] for _, reply in replies}) == 50
    assert sorted(m.payload for m in messages) == sorted(
        f"message {n}".encode() for n in range(50)
    )


# -- auth -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["", "Bearer ", "bearer "])
async def test_token_forms(
    hass_client_no_auth, hass_access_token: str, entry: MockConfigEntry, scheme: str
) -> None:
    """The seed's raw token works next to HA's Bearer form."""
    client = await hass_client_no_auth()
    response = await client.post(
        f"{BASE}/unsubscribe",
        data=json.dumps({"appid": "x", "topic": "never", "url": "127.0.0.1"}),
        headers={"Authorization": f"{scheme}{hass_access_token}"},
    )
    assert response.status == 404  # authenticated, then not subscribed
    assert (await response.json())["error"] == "not_subscribed"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "garbage"},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
async def test_unauthenticated(
    hass: HomeAssistant, hass_client_no_auth, entry: MockConfigEntry, headers
) -> None:
    """A missing or bad token is a JSON 401 on every route."""
    client = await hass_client_no_auth()
    for method, path in (
        ("POST", "publish"),
        ("POST", "subscribe"),
        ("POST", "unsubscribe"),
        ("GET", "getsubscribedata/t/app"),
        ("GET", "getsubscribedata/127.0.0.1/t/app"),
        ("GET", "getsubscribedata/a/b/c/d"),
    ):
        response = await client.request(
            method, f"{BASE}/{path}", data="{}", headers=headers
        )
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"


async def test_token_of_inactive_user(
    hass: HomeAssistant, hass_client_no_auth, hass_admin_user, hass_access_token, entry
) -> None:
    """A raw token of a deactivated user is refused."""
    hass_admin_user.is_active = False
    client = await hass_client_no_auth()
    response = await client.get(
        f"{BASE}/getsubscribedata/t/app", headers={"Authorization": hass_access_token}
    )
    assert response.status == 401


@pytest.mark.parametrize(
    ("allowed", "status", "error"),
    [(False, 401, "unauthorized"), (True, 404, "not_subscribed")],
)
async def test_local_unauthenticated_option(
    hass: HomeAssistant,
    hass_client_no_auth,
    plain_broker: Mosquitto,
    allowed: bool,
    status: int,
    error: str,
) -> None:
    """Token-less calls from loopback pass only when an entry allows them."""
    await _async_setup_entry(
        hass, plain_broker, options={CONF_ALLOW_LOCAL_UNAUTHENTICATED: allowed}
    )
    client = await hass_client_no_auth()
    response = await client.get(f"{BASE}/getsubscribedata/t/app")
    assert response.status == status
    assert (await response.json())["error"] == error


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("not-an-address", False),
    ],
)
async def test_local_unauthenticated_needs_loopback(
    hass: HomeAssistant, remote: str, allowed: bool
) -> None:
    """Only a loopback peer skips the token, whatever X-Forwarded-For claims."""
    MockConfigEntry(
        domain=DOMAIN,
        data={CONF_URL: "mqtt://127.0.0.1:1"},
        options={CONF_ALLOW_LOCAL_UNAUTHENTICATED: True},
    ).add_to_hass(hass)
    transport = MagicMock()
    transport.get_extra_info.return_value = (remote, 40000)
    request = make_mocked_request(
        "GET",
        f"{BASE}/getsubscribedata/t/app",
        headers={"X-Forwarded-For": "127.0.0.1"},
        transport=transport,
    )
    if allowed:
        async_authenticate(hass, request)
    else:
        with pytest.raises(UnauthorizedError) as err:
            async_authenticate(hass, request)
        assert error_kind(err.value).status == 401


# -- client errors --------------------------------------------------------------------

VALID = {"appid": "app", "payload": "x", "topic": "t", "url": "127.0.0.1"}


@pytest.mark.parametrize(
    ("action", "body", "error"),
    [
        ("publish", "", "invalid_json"),
        ("publish", "{not json", "invalid_json"),
        ("publish", "[1, 2]", "invalid_json"),
        ("publish", b"\xff\xfe", "invalid_json"),
        ("publish", {**VALID, "appid": 7}, "invalid_request"),
        ("publish", {**VALID, "appid": ""}, "invalid_request"),
        ("publish", {k: v for k, v in VALID.items() if k != "url"}, "invalid_request"),
        ("publish", {**VALID, "payload": {"nested": 1}}, "invalid_request"),
        ("publish", {**VALID, "qos": 3}, "invalid_request"),
        ("publish", {**VALID, "qos": True}, "invalid_request"),
        ("publish", {**VALID, "retain": "maybe"}, "invalid_request"),
        ("publish", {**VALID, "encoding": "latin-1"}, "invalid_request"),
        ("publish", {**VALID, "timeout": 0}, "invalid_request"),
        ("publish", {**VALID, "timeout": 600}, "invalid_request"),
        (
            "publish",
            {**VALID, "encoding": "base64", "payload": "n*t"},
            "invalid_payload",
        ),
        ("publish", {**VALID, "topic": ""}, "invalid_topic"),
        ("publish", {**VALID, "topic": "a/+/b"}, "invalid_topic"),
        ("publish", {**VALID, "topic": "a/#"}, "invalid_topic"),
        ("publish", {**VALID, "topic": "a\u0000b"}, "invalid_topic"),
        ("publish", {**VALID, "topic": "a\u0007b"}, "invalid_topic"),
        ("publish", {**VALID, "topic": "a\u009fb"}, "invalid_topic"),
        ("publish", {**VALID, "topic": "a\ufffe"}, "invalid_topic"),
        ("publish", {**VALID, "topic": "\ufdd0"}, "invalid_topic"),
        ("publish", {**VALID, "topic": "a\U0001ffff"}, "invalid_topic"),
        ("publish", {**VALID, "topic": "t" * 1025}, "invalid_request"),
        ("publish", {**VALID, "appid": "a" * 129}, "invalid_request"),
        ("publish", {**VALID, "appid": "app\n"}, "invalid_request"),
        ("publish", {**VALID, "url": "127.0.0.1" + " " * 600}, "invalid_request"),
        ("subscribe", {**VALID, "topic": "a\u0001/#"}, "invalid_topic"),
        ("subscribe", {**VALID, "topic": "+/\uffff"}, "invalid_topic"),
        ("subscribe", {**VALID, "topic": "a/#/b"}, "invalid_topic"),
        ("subscribe", {**VALID, "topic": "a/b+"}, "invalid_topic"),
        ("subscribe", {**VALID, "qos": "high"}, "invalid_request"),
        ("unsubscribe", {**VALID, "topic": "#/a"}, "invalid_topic"),
        ("unsubscribe", {**VALID, "topic": ["t"]}, "invalid_request"),
    ],
)
async def test_bad_request(
    client: TestClient, action: str, body: Any, error: str
) -> None:
    """Bad bodies, fields and topics are a JSON 400 with an error code."""
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    response = await client.post(f"{BASE}/{action}", data=data, headers=TEXT_PLAIN)
    assert response.status == 400
    reply = await response.json()
    assert reply["error"] == error
    assert reply["Message"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, {"encoding": "utf-8", "timeout": 10.0}),
        ({"qos": "1", "retain": "TRUE"}, {"qos": 1, "retain": True}),
        ({"qos": 2, "retain": False}, {"qos": 2, "retain": False}),
        ({"encoding": "BASE64", "timeout": 2}, {"encoding": "base64", "timeout": 2.0}),
        ({"unknown": "dropped"}, {}),
    ],
)
def test_publish_schema_coercion(
    extra: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Seed-style strings are accepted for qos and retain; unknown keys are dropped."""
    result = PUBLISH_SCHEMA({**VALID, **extra})
    assert result.items() >= expected.items()
    assert "unknown" not in result


async def test_request_over_http_limit(client: TestClient) -> None:
    """A body over HA's request size limit is a JSON 413 too."""
    response = await client.post(
        f"{BASE}/publish", data=b" " * (16 * 1024 * 1024 + 1), headers=TEXT_PLAIN
    )
    assert response.status == 413
    assert (await response.json())["error"] == "request_too_large"


@pytest.mark.parametrize(
    "path",
    ["getsubscribedata/a/b/c/d", "getsubscribedata/", "getsubscribedata//app"],
)
async def test_bad_get_path(client: TestClient, path: str) -> None:
    """A GET path of neither form explains the rule instead of a bare 404."""
    response = await client.get(f"{BASE}/{path}")
    assert response.status == 400
    reply = await response.json()
    assert reply["error"] == "invalid_path"
    assert "%2F" in reply["Message"]


async def test_get_unencoded_slash_hint(client: TestClient) -> None:
    """A raw / in the doc form's topic reads as the host form and says why."""
    response = await client.get(f"{BASE}/getsubscribedata/home1/livingroom/app")
    assert response.status == 404
    reply = await response.json()
    assert reply["error"] == "unknown_broker"
    assert "%2F" in reply["Message"]


async def test_unknown_broker(client: TestClient) -> None:
    """A url that names no configured broker is a 404."""
    for url in ("10.9.9.9", "mqtts://10.9.9.9:8883", "ftp://127.0.0.1"):
        status, reply = await post(client, "publish", {**VALID, "url": url})
        assert (status, reply["error"]) == (404, "unknown_broker")
    status, reply = await get(client, "10.9.9.9", "t", "app")
    assert (status, reply["error"]) == (404, "unknown_broker")


async def test_no_broker_configured(hass: HomeAssistant, hass_client) -> None:
    """With no broker at all the doc-form GET is a 404."""
    assert await async_setup_component(hass, DOMAIN, {})
    client = await hass_client()
    status, reply = await get(client, "t", "app")
    assert (status, reply["error"]) == (404, "unknown_broker")


async def test_ambiguous_broker(
    hass: HomeAssistant,
    client: TestClient,
    broker_factory: BrokerFactory,
    plain_broker: Mosquitto,
    prefix: str,
) -> None:
    """Two brokers on one host: a bare host or no host is a 409; the URL works."""
    await _async_setup_entry(hass, broker_factory())
    status, reply = await post(client, "publish", VALID)
    assert (status, reply["error"]) == (409, "ambiguous_broker")
    status, reply = await get(client, "t", "app")
    assert (status, reply["error"]) == (409, "ambiguous_broker")
    assert "getsubscribedata/<host>/<topic>/<appid>" in reply["Message"]
    status, reply = await get(client, "127.0.0.1", "t", "app")
    assert (status, reply["error"]) == (409, "ambiguous_broker")

    topic = f"{prefix}/two"
    body = {"appid": "app", "topic": topic, "url": plain_broker.url}
    assert (await post(client, "subscribe", body))[0] == 200
    await mqtt_publish(plain_broker, topic, "from the plain broker")
    data = await wait_for_data(client, plain_broker.url, topic, "app")
    assert data["Message"] == "from the plain broker"


async def test_named_broker_follows_entry_changes(
    hass: HomeAssistant,
    client: TestClient,
    entry: MockConfigEntry,
    broker_factory: BrokerFactory,
) -> None:
    """What a url named is remembered only until a CloudSync entry changes.

    A bare host found one broker; a second broker on that host makes it ambiguous,
    removing that one makes it work again, an unloaded broker is not connected.
    """
    assert (await post(client, "publish", VALID))[0] == 200
    second = await _async_setup_entry(hass, broker_factory())
    status, reply = await post(client, "publish", VALID)
    assert (status, reply["error"]) == (409, "ambiguous_broker")
    assert await hass.config_entries.async_remove(second.entry_id)
    assert (await post(client, "publish", VALID))[0] == 200
    assert await hass.config_entries.async_unload(entry.entry_id)
    status, reply = await post(client, "publish", VALID)
    assert (status, reply["error"]) == (503, "broker_not_loaded")
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert (await post(client, "publish", VALID))[0] == 200


async def test_named_brokers_are_capped(
    hass: HomeAssistant, client: TestClient
) -> None:
    """Apps naming one broker in ever new words do not grow what is remembered."""
    for spaces in range(300):
        body = {**VALID, "url": " " * spaces + "127.0.0.1"}
        assert (await post(client, "publish", body))[0] == 200
    assert 0 < len(hass.data[lookup.NAMED]) <= lookup.NAMED_MAX


# -- broker failures ------------------------------------------------------------------


async def test_broker_not_loaded(
    hass: HomeAssistant, hass_client, password_broker: Mosquitto
) -> None:
    """A configured broker that could not be set up is a 503."""
    entry = await _async_setup_entry(
        hass, password_broker, username="cloudsync", password="wrong"
    )
    assert entry.state is ConfigEntryState.SETUP_ERROR
    client = await hass_client()
    status, reply = await post(client, "publish", VALID)
    assert (status, reply["error"]) == (503, "broker_not_loaded")


async def test_broker_stopped(
    hass: HomeAssistant, hass_client, broker_factory: BrokerFactory
) -> None:
    """While the connection is down a publish is queued and a subscribe recorded (202).

    Both reach the broker once it is back.
    """
    broker = broker_factory()
    entry = await _async_setup_entry(hass, broker)
    client = await hass_client()
    lost = asyncio.Event()

    @callback
    def _changed(connected: bool) -> None:
        if not connected:
            lost.set()

    entry.runtime_data.add_connection_listener(_changed)
    await broker.async_stop()
    async with asyncio.timeout(5):
        await lost.wait()
    status, reply = await post(client, "publish", VALID)
    assert status == 202
    assert reply == {
        "Message": f"Data queued for Cloud {broker.url}",
        "broker": broker.url,
        "topic": VALID["topic"],
        "qos": 1,  # the default QoS 0 is raised to 1 for a queued message
        "retain": False,
        "queued": True,
        "id": reply["id"],
    }
    body = {"appid": "late", "topic": "down/#", "url": broker.url}
    status, reply = await post(client, "subscribe", body)
    assert (status, reply["pending"]) == (202, True)
    assert broker.url in reply["Message"]
    entry.runtime_data._connection._reconnector._backoff = (0.05, 0.3)
    await broker.async_start()
    async with asyncio.timeout(10):
        while not entry.runtime_data.connected:
            await asyncio.sleep(0.02)
    await mqtt_publish(broker, "down/x", "after", qos=1)
    reply = await wait_for_data(client, "down/x", "late")
    assert reply["Message"] == "after"


async def test_broker_paused(
    hass: HomeAssistant, hass_client, broker_factory: BrokerFactory
) -> None:
    """A publish the broker does not acknowledge in time is queued and sent later."""
    broker = broker_factory()
    await _async_setup_entry(hass, broker)
    client = await hass_client()
    async with MqttSubscriber(broker, VALID["topic"], qos=1) as sub:
        broker.pause()
        try:
            status, reply = await post(
                client, "publish", {**VALID, "qos": 1, "timeout": 0.3}
            )
        finally:
            broker.resume()
        assert (status, reply["queued"]) == (202, True)
        payloads = {m.payload for m in await sub.messages(1)}
    assert payloads == {VALID["payload"].encode()}


@pytest.fixture
def strict_broker(broker_factory: BrokerFactory) -> Mosquitto:
    """Return a broker allowing only allowed/#, with a 512-byte packet limit."""
    allow = [("subscribePattern", "allowed/#"), ("publishClientSend", "allowed/#")]
    rules = dynsec_config(allow, subscribe_default=False, publish_default=False)
    return broker_factory(extra_config=[*rules, "max_packet_size 512"])


@pytest.mark.parametrize(
    ("action", "body", "status", "error"),
    [
        ("publish", {"topic": "denied/x", "qos": 1}, 403, "broker_refused"),
        ("subscribe", {"topic": "denied/#"}, 403, "subscription_refused"),
        (
            "publish",
            {"topic": "allowed/x", "payload": "x" * 600},
            413,
            "payload_too_large",
        ),
        ("publish", {"topic": "allowed/x", "qos": 1}, 200, None),
    ],
)
async def test_broker_refusals(
    hass: HomeAssistant,
    hass_client,
    strict_broker: Mosquitto,
    action: str,
    body: dict[str, Any],
    status: int,
    error: str | None,
) -> None:
    """ACL refusals are a 403 and payloads over the broker's limit a 413 (MQTT 5)."""
    await _async_setup_entry(hass, strict_broker, **{CONF_PROTOCOL: "mqttv5"})
    client = await hass_client()
    got, reply = await post(client, action, {**VALID, **body})
    assert (got, reply.get("error")) == (status, error)


def test_openapi_matches_views() -> None:
    """docs/openapi.yaml names every route and every error code the API sends."""
    spec = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    urls = {
        re.sub(r"\{(\w+):[^{}]*\}", r"{\1}", url.removeprefix(http.BASE_URL))
        for view in (
            http.PublishView,
            http.PublishBatchView,
            http.SubscribeView,
            http.UnsubscribeView,
            http.SubscribeDataView,
        )
        for url in (view.url, *view.extra_urls)
    }
    assert set(spec["paths"]) == urls
    # Every code of the one error table, less those only actions and websockets meet.
    codes = set(errors.ERRORS) - {
        "entry_not_found",
        "entry_not_cloudsync",
        "client_too_slow",
    }
    assert (
        set(spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"])
        == codes
    )


async def test_refused_topic_keeps_the_link(
    client: TestClient, plain_broker: Mosquitto, prefix: str
) -> None:
    """A topic mosquitto would drop the link for is a 400; the broker stays usable."""
    bad = {**VALID, "topic": f"{prefix}/a\u0007b", "qos": 1}
    offset = plain_broker.log_offset()
    assert (await post(client, "publish", bad))[0] == 400
    assert (await post(client, "subscribe", {**bad, "topic": f"{prefix}/\x01/#"}))[
        0
    ] == 400
    topic = f"{prefix}/good"
    async with MqttSubscriber(plain_broker, topic) as sub:
        status, body = await post(client, "publish", {**bad, "topic": topic})
        assert (status, body["queued"]) == (200, False)
        assert (await sub.message()).payload == b"x"
    status, _ = await post(client, "subscribe", {**VALID, "topic": f"{prefix}/s"})
    assert status == 200
    assert not plain_broker.log_contains("malformed packet", since=offset)


async def test_braces_in_get_paths(
    client: TestClient, plain_broker: Mosquitto, prefix: str
) -> None:
    """An app id or topic with { or } is served by the GET forms (aiohttp's default
    route pattern would refuse them as an invalid path)."""
    topic, app = f"{prefix}/{{x}}", "app}{"
    body = {**VALID, "appid": app, "topic": topic, "url": plain_broker.url}
    assert (await post(client, "subscribe", body))[0] == 200
    path = f"{quote(topic, safe='')}/{quote(app, safe='')}"
    for url in (
        f"{BASE}/getsubscribedata/{path}",
        f"{BASE}/getsubscribedata/{quote(plain_broker.url, safe='')}/{path}",
    ):
        response = await client.get(url)
        assert response.status == 200, await response.text()
