"""Commands on Home Assistant's websocket: publish, and a live stream of a filter.

``cloudsync/publish`` takes one message or a batch (the statuses of batch.py);
``cloudsync/subscribe`` streams every message on a filter until the client
unsubscribes or disconnects. Streams listen through the broker's MessageHub, like
automations do, so they outlive reloads. Errors leave with the codes of errors.py.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components import websocket_api
from homeassistant.components.websocket_api.connection import ActiveConnection
from homeassistant.components.websocket_api.decorators import (
    async_response,
    websocket_command,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, callback
import voluptuous as vol

from .apps import Principal
from .batch import async_publish_batch, counts, parse_messages, publish_batch_then
from .client import validate_filter
from .const import MAX_APP_ID_LENGTH, MAX_URL_LENGTH
from .errors import HANDLED, NotSubscribedError, error_code, error_kind
from .http_schemas import APPID, MAX_TIMEOUT, TOPIC, URL, plain_text, qos
from .hub import async_get_hub
from .lookup import broker_by_entry_id, broker_by_url
from .stream import MessageStream

if TYPE_CHECKING:
    from .broker import CloudSyncBroker
    from .publishing import BatchMessage

DEFAULT_APP_ID: Final = "homeassistant"
PUBLISH_COMMAND: Final = "cloudsync/publish"
_MESSAGE_FIELDS: Final = ("topic", "payload", "qos", "retain", "encoding")
_BROKER: Final[dict[str | vol.Marker, Any]] = {
    vol.Exclusive("config_entry_id", "broker"): str,
    vol.Exclusive("url", "broker"): URL,
}


@callback
def async_setup_websocket(hass: HomeAssistant) -> None:
    """Register the commands once for all brokers."""
    # HA only checks it is a dict; _publish_command checks the rest (fast).
    websocket_api.async_register_command(
        hass, PUBLISH_COMMAND, ws_publish, vol.Schema(dict)
    )
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


# Validated here, not by HA (registered with a schema of dict): the common form skips
# voluptuous, and the fields of each message are batch.py's to judge.
_ANY_MESSAGE_FIELD: Final[dict[str | vol.Marker, Any]] = {
    vol.Exclusive("topic", "message"): object,
    **{vol.Optional(key): object for key in _MESSAGE_FIELDS if key != "topic"},
}
_PUBLISH_COMMAND: Final = vol.Schema(
    {
        vol.Required("id"): int,
        vol.Required("type"): str,
        **_BROKER,
        vol.Optional("app_id", default=DEFAULT_APP_ID): APPID,
        vol.Exclusive("messages", "message"): list,
        **_ANY_MESSAGE_FIELD,
        vol.Optional("timeout"): vol.All(
            vol.Coerce(float), vol.Range(min=0, min_included=False, max=MAX_TIMEOUT)
        ),
    }
)
_PLAIN_KEYS: Final = frozenset(
    {"id", "type", "config_entry_id", "url", "app_id", "messages", *_MESSAGE_FIELDS}
)


def _publish_command(msg: dict[str, Any]) -> dict[str, Any]:
    """Return the validated command; the common form without voluptuous."""
    if (
        msg.keys() <= _PLAIN_KEYS
        and ("url" in msg) != ("config_entry_id" in msg)
        and ("messages" in msg) != ("topic" in msg)
        and type(msg.get("config_entry_id", "")) is str
        and plain_text(msg.get("url", "u"), MAX_URL_LENGTH)
        and plain_text(msg.get("app_id", DEFAULT_APP_ID), MAX_APP_ID_LENGTH)
        and type(msg.get("messages", [])) is list
    ):
        return msg
    data: dict[str, Any] = _PUBLISH_COMMAND(msg)
    if "messages" not in data and "topic" not in data:
        message = "give topic (one message) or messages"
        raise vol.Invalid(message)
    return data


@callback
def ws_publish(
    hass: HomeAssistant,
    connection: ActiveConnection,
    msg: dict[str, Any],
) -> None:
    """Publish one message or many in order; answer a status for each.

    A batch that can go whole now is answered from its last ack's callback (no task
    per command); one that has to wait for room or be queued gets a task.
    """
    try:
        data = _publish_command(msg)
        if "messages" in data:
            messages = data["messages"]
        else:
            messages = [{key: data[key] for key in _MESSAGE_FIELDS if key in data}]
        broker = _broker(hass, data)
        parsed = parse_messages(messages, data.get("app_id", DEFAULT_APP_ID), "app_id")
        timeout, principal = data.get("timeout"), _principal(connection)
        if publish_batch_then(
            broker,
            parsed,
            partial(_send_statuses, connection, msg["id"]),
            timeout=timeout,
            principal=principal,
        ):
            return
    except HANDLED as err:
        send_error(connection, msg["id"], err)
        return
    hass.async_create_background_task(
        _publish_waiting(connection, msg, broker, parsed, timeout, principal),
        f"cloudsync websocket publish {msg['id']}",
    )


async def _publish_waiting(  # noqa: PLR0913
    connection: ActiveConnection,
    msg: dict[str, Any],
    broker: CloudSyncBroker,
    messages: list[BatchMessage | Exception],
    timeout: float | None,
    principal: Principal,
) -> None:
    """Publish a batch that waits for room in the window, or is queued."""
    try:
        statuses = await async_publish_batch(
            broker, messages, timeout=timeout, principal=principal
        )
    except HANDLED as err:
        send_error(connection, msg["id"], err)
        return
    except Exception as err:  # noqa: BLE001 - answered as HA's @async_response does
        connection.async_handle_exception(msg, err)
        return
    _send_statuses(connection, msg["id"], statuses)


def _send_statuses(
    connection: ActiveConnection, msg_id: int, statuses: list[dict[str, Any]]
) -> None:
    connection.send_result(msg_id, {**counts(statuses), "results": statuses})


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
    if not principal.is_admin:
        _end_with_the_app(hass, broker, stream, msg["app_id"], topic_filter)


def _check_app_filter(
    broker: CloudSyncBroker, principal: Principal, app_id: str | None, topic_filter: str
) -> None:
    """Let a non-admin stream only a filter its own app subscribed to."""
    if app_id is None:
        msg = "name the app (app_id) whose subscribed filter to stream"
        raise NotSubscribedError(msg)
    broker.check_app(principal, app_id)
    if not _subscribed(broker, app_id, topic_filter):
        msg = f"the app {app_id} is not subscribed to {topic_filter}"
        raise NotSubscribedError(msg)


def _subscribed(broker: CloudSyncBroker, app_id: str, topic_filter: str) -> bool:
    subscription = broker.subscriptions.get(topic_filter)
    return subscription is not None and app_id in subscription.apps


def _end_with_the_app(
    hass: HomeAssistant,
    broker: CloudSyncBroker,
    stream: MessageStream,
    app_id: str,
    topic_filter: str,
) -> None:
    """End a non-admin's stream once its app no longer subscribes to the filter.

    The app's subscription is what let the stream start. Its removal ends the stream
    with ``not_subscribed`` at once (a subscription listener), and before any frame
    the stream checks again against the entry's broker of the moment: the stream
    outlives a reload of the entry, the listener does not.
    """
    entry_id = broker.entry_id

    @callback
    def left() -> Exception | None:
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is not None and entry.state is not ConfigEntryState.LOADED:
            return None  # reloading: the registry comes back as it was
        if entry is not None and _subscribed(entry.runtime_data, app_id, topic_filter):
            return None
        return NotSubscribedError(
            f"the app {app_id} no longer subscribes to {topic_filter}; "
            "the stream was ended"
        )

    @callback
    def check(*_change: object) -> None:
        if (err := left()) is not None:
            stream.end(err)

    stream.guard(left)
    stream.attach(broker.add_subscription_listener(check))
    check()
