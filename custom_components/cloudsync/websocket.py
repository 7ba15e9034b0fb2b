"""Commands on Home Assistant's websocket: publish, and a live stream of a filter.

``cloudsync/publish`` takes one message or a batch (the statuses of batch.py);
``cloudsync/subscribe`` streams every message on a filter until the client
unsubscribes or disconnects. Streams listen through the broker's MessageHub, like
automations do, so they outlive reloads. Errors leave with the codes of errors.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from homeassistant.components import websocket_api
from homeassistant.components.websocket_api.connection import ActiveConnection
from homeassistant.components.websocket_api.decorators import (
    async_response,
    websocket_command,
)
from homeassistant.core import HomeAssistant, callback
import voluptuous as vol

from .apps import Principal
from .batch import async_publish_batch, counts, parse_messages
from .client import validate_filter
from .errors import HANDLED, NotSubscribedError, error_code, error_kind
from .http_schemas import APPID, MAX_TIMEOUT, TOPIC, URL, qos
from .hub import async_get_hub
from .lookup import broker_by_entry_id, broker_by_url
from .stream import MessageStream

if TYPE_CHECKING:
    from .broker import CloudSyncBroker

DEFAULT_APP_ID: Final = "homeassistant"
_MESSAGE_FIELDS: Final = ("topic", "payload", "qos", "retain", "encoding")
_BROKER: Final[dict[str | vol.Marker, Any]] = {
    vol.Exclusive("config_entry_id", "broker"): str,
    vol.Exclusive("url", "broker"): URL,
}


@callback
def async_setup_websocket(hass: HomeAssistant) -> None:
    """Register the commands once for all brokers."""
    websocket_api.async_register_command(hass, ws_publish)
    websocket_api.async_register_command(hass, ws_subscribe)


def _broker(hass: HomeAssistant, msg: dict[str, Any]) -> CloudSyncBroker:
    """Return the loaded broker a command names by entry id or URL."""
    if "config_entry_id" in msg:
        return broker_by_entry_id(hass, msg["config_entry_id"])
    return broker_by_url(hass, msg.get("url"))


def _principal(connection: ActiveConnection) -> Principal:
    return Principal(connection.user.id, is_admin=connection.user.is_admin)


def send_error(connection: ActiveConnection, msg_id: int, err: Exception) -> None:
    """Answer a command with an error of the one table (code and translation)."""
    connection.send_error(
        msg_id,
        error_code(err),
        str(err),
        translation_key=error_kind(err).translation_key,
        translation_domain="cloudsync",
        translation_placeholders={"error": str(err)},
    )


@websocket_command(
    {
        vol.Required("type"): "cloudsync/publish",
        **_BROKER,
        vol.Optional("app_id", default=DEFAULT_APP_ID): APPID,
        vol.Exclusive("messages", "message"): list,
        vol.Exclusive("topic", "message"): TOPIC,
        vol.Optional("payload"): str,
        vol.Optional("qos"): qos,
        vol.Optional("retain"): bool,
        vol.Optional("encoding"): str,
        vol.Optional("timeout"): vol.All(
            vol.Coerce(float), vol.Range(min=0, min_included=False, max=MAX_TIMEOUT)
        ),
    }
)
@async_response
async def ws_publish(
    hass: HomeAssistant,
    connection: ActiveConnection,
    msg: dict[str, Any],
) -> None:
    """Publish one message or many in order; answer a status for each."""
    if "messages" in msg:
        messages = msg["messages"]
    else:
        messages = [{key: msg[key] for key in _MESSAGE_FIELDS if key in msg}]
    try:
        broker = _broker(hass, msg)
        statuses = await async_publish_batch(
            broker,
            parse_messages(messages, msg["app_id"], "app_id"),
            timeout=msg.get("timeout"),
            principal=_principal(connection),
        )
    except HANDLED as err:
        send_error(connection, msg["id"], err)
        return
    connection.send_result(msg["id"], {**counts(statuses), "results": statuses})


@websocket_command(
    {
        vol.Required("type"): "cloudsync/subscribe",
        **_BROKER,
        vol.Required("topic"): TOPIC,
        vol.Optional("qos", default=0): qos,
        vol.Optional("app_id"): APPID,
    }
)
@async_response
async def ws_subscribe(
    hass: HomeAssistant,
    connection: ActiveConnection,
    msg: dict[str, Any],
) -> None:
    """Stream every message on a filter until unsubscribed (see MessageStream)."""
    topic_filter = msg["topic"]
    stream = MessageStream(connection, msg["id"])
    try:
        validate_filter(topic_filter)
        broker = _broker(hass, msg)
        principal = _principal(connection)
        if not principal.is_admin:
            _check_app_filter(broker, principal, msg.get("app_id"), topic_filter)
        stream.attach(
            async_get_hub(hass, broker.entry_id).add(
                topic_filter, msg["qos"], stream.push
            )
        )
        connection.subscriptions[msg["id"]] = stream.close
        await broker.async_listen(topic_filter, msg["qos"])
    except HANDLED as err:
        connection.subscriptions.pop(msg["id"], None)
        stream.close()
        send_error(connection, msg["id"], err)
        return
    connection.send_result(msg["id"])
    stream.start()


def _check_app_filter(
    broker: CloudSyncBroker, principal: Principal, app_id: str | None, topic_filter: str
) -> None:
    """Let a non-admin stream only a filter its own app subscribed to."""
    if app_id is None:
        msg = "name the app (app_id) whose subscribed filter to stream"
        raise NotSubscribedError(msg)
    broker.check_app(principal, app_id)
    subscription = broker.subscriptions.get(topic_filter)
    if subscription is None or app_id not in subscription.apps:
        msg = f"the app {app_id} is not subscribed to {topic_filter}"
        raise NotSubscribedError(msg)
