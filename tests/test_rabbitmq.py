"""Home Assistant with cloudsync against RabbitMQ's MQTT plugin (a second real broker).

The client tests (tests/client/test_rabbitmq.py) pin RabbitMQ's differences; these run
the integration itself on it: an entry set up, the REST API, the websocket stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
import uuid

from homeassistant.config_entries import ConfigEntryState
import pytest

from tests.common import entry_for, setup_entry
from tests.test_http import get, post, wait_for_data
from tests.test_websocket import _events

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    from tests.rabbitmq import RabbitMQ

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture
async def rabbit_entry(
    hass: HomeAssistant, rabbitmq_broker: RabbitMQ
) -> MockConfigEntry:
    """Return a loaded entry on the session's RabbitMQ node."""
    entry = await setup_entry(hass, entry_for(rabbitmq_broker))  # type: ignore[arg-type]
    assert entry.state is ConfigEntryState.LOADED
    return entry


@pytest.fixture
def topic() -> str:
    """Return a topic of this test's own (the node lives for the session)."""
    return f"rmq/ha/{uuid.uuid4().hex[:8]}"


async def test_rest_subscribe_publish_get(
    hass_client: Any,
    rabbit_entry: MockConfigEntry,
    rabbitmq_broker: RabbitMQ,
    topic: str,
) -> None:
    """The seed's three requests through RabbitMQ: the app reads what it published."""
    client = await hass_client()
    body = {"appid": "app", "url": rabbitmq_broker.url}
    status, reply = await post(
        client, "subscribe", {**body, "topic": f"{topic}/#", "qos": 2}
    )
    assert (status, reply["new_at_broker"]) == (200, True)
    assert (reply["qos"], reply["granted_qos"]) == (2, 1)  # RabbitMQ has no QoS 2
    status, reply = await post(
        client,
        "publish",
        {**body, "topic": f"{topic}/kitchen", "payload": "21.5 °C", "qos": 1},
    )
    assert status == 200, reply
    assert reply["queued"] is False
    assert isinstance(reply["mid"], int)
    data = await wait_for_data(client, rabbitmq_broker.url, f"{topic}/kitchen", "app")
    assert (data["Message"], data["encoding"], data["qos"]) == ("21.5 °C", "utf-8", 1)
    assert data["broker"] == rabbitmq_broker.url
    status, reply = await post(client, "unsubscribe", {**body, "topic": f"{topic}/#"})
    assert (status, reply["unsubscribed_at_broker"]) == (200, True)
    status, reply = await get(client, rabbitmq_broker.url, f"{topic}/kitchen", "app")
    assert (status, reply["error"]) == (404, "not_subscribed")


async def test_batch_and_websocket_stream(
    hass_client: Any,
    hass_ws_client: Any,
    rabbit_entry: MockConfigEntry,
    rabbitmq_broker: RabbitMQ,
    topic: str,
) -> None:
    """A websocket stream on RabbitMQ gets a REST batch in order, binary intact."""
    ws = await hass_ws_client()
    await ws.send_json_auto_id(
        {
            "type": "cloudsync/subscribe",
            "config_entry_id": rabbit_entry.entry_id,
            "topic": f"{topic}/+",
            "qos": 1,
        }
    )
    assert (await ws.receive_json())["success"]
    client = await hass_client()
    messages: list[dict[str, Any]] = [
        {"topic": f"{topic}/n", "payload": f"m{i}", "qos": 1} for i in range(20)
    ]
    messages.append(
        {"topic": f"{topic}/bin", "payload": "/wD+", "encoding": "base64", "qos": 1}
    )
    status, reply = await post(
        client,
        "publish/batch",
        {"appid": "app", "url": rabbitmq_broker.url, "messages": messages},
    )
    assert status == 200, reply
    assert reply["published"] == len(messages)
    got = await _events(ws, len(messages))
    assert [m["payload"] for m in got[:20]] == [f"m{i}" for i in range(20)]
    assert (got[20]["payload"], got[20]["encoding"]) == ("/wD+", "base64")
    assert {m["qos"] for m in got} == {1}
