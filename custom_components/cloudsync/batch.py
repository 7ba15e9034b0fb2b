"""Batch publish: many messages in one call, a status for each, in order.

The REST view, the publish action's ``messages`` form and the websocket command parse
their messages here and answer with the same statuses: ``published`` (with the MQTT
``mid``), ``queued`` (with the outbox ``id``) or ``refused`` (with the error code). A
message that is malformed, names another user's app or is refused by the broker fails
alone; only a batch over the limits below is refused as a whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import voluptuous as vol

from .const import MIB
from .errors import HANDLED, BatchTooLargeError, error_code
from .http_schemas import APPID, TOPIC, flag, plain_message, qos
from .payload import ENCODING_UTF8, ENCODINGS, decode_payload
from .publishing import BatchMessage, Published

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .apps import Principal
    from .broker import CloudSyncBroker

MAX_BATCH_MESSAGES: Final = 1000
MAX_BATCH_BYTES: Final = 4 * MIB  # the decoded payloads together

STATUS_PUBLISHED: Final = "published"
STATUS_QUEUED: Final = "queued"
STATUS_REFUSED: Final = "refused"


def message_schema(app_key: str) -> vol.Schema:
    """Return the schema of one message; ``app_key`` may name another app for it."""
    return vol.Schema(
        {
            vol.Required("topic"): TOPIC,
            vol.Optional("payload", default=""): str,
            vol.Optional("qos"): qos,
            vol.Optional("retain"): flag,
            vol.Optional("encoding", default=ENCODING_UTF8): vol.All(
                str, vol.Lower, vol.In(ENCODINGS)
            ),
            vol.Optional(app_key): APPID,
        },
        extra=vol.REMOVE_EXTRA,
    )


_SCHEMAS: Final = {key: message_schema(key) for key in ("appid", "app_id")}


def check_count(messages: Sequence[Any]) -> None:
    """Refuse a batch of more than MAX_BATCH_MESSAGES before looking at it."""
    if len(messages) > MAX_BATCH_MESSAGES:
        msg = (
            f"{len(messages)} messages in one batch; at most "
            f"{MAX_BATCH_MESSAGES} are taken"
        )
        raise BatchTooLargeError(msg)


def parse_messages(
    messages: Sequence[Any], app_id: str, app_key: str = "appid"
) -> list[BatchMessage | Exception]:
    """Validate and decode each message; a bad one becomes its own error."""
    check_count(messages)
    schema = _SCHEMAS[app_key]
    parsed: list[BatchMessage | Exception] = []
    total = 0
    for raw in messages:
        try:
            if not isinstance(raw, dict):
                msg = "each message must be an object"
                raise vol.Invalid(msg)
            plain = None if app_key in raw else plain_message(raw)
            data: dict[str, Any] = schema(raw) if plain is None else plain
            payload = decode_payload(data["payload"], data["encoding"])
        except HANDLED as err:
            parsed.append(err)
            continue
        total += len(payload)
        parsed.append(
            BatchMessage(
                data.get(app_key, app_id),
                data["topic"],
                payload,
                data.get("qos"),
                data.get("retain"),
            )
        )
    if total > MAX_BATCH_BYTES:
        msg = f"{total} payload bytes in one batch; at most {MAX_BATCH_BYTES} are taken"
        raise BatchTooLargeError(msg)
    return parsed


async def async_publish_batch(
    broker: CloudSyncBroker,
    messages: Sequence[BatchMessage | Exception],
    *,
    timeout: float | None = None,
    principal: Principal,
) -> list[dict[str, Any]]:
    """Publish the valid messages in order; return every message's status."""
    valid = [message for message in messages if isinstance(message, BatchMessage)]
    sent = await broker.async_publish_many(valid, timeout=timeout, principal=principal)
    return statuses(messages, sent)


def publish_batch_then(
    broker: CloudSyncBroker,
    messages: Sequence[BatchMessage | Exception],
    done: Callable[[list[dict[str, Any]]], None],
    *,
    timeout: float | None = None,
    principal: Principal,
) -> bool:
    """Publish a batch that can go whole now, ``done(statuses)`` once settled.

    False (nothing sent) when it cannot: async_publish_batch waits for room then.
    """
    valid = [message for message in messages if isinstance(message, BatchMessage)]
    return broker.publish_many_then(
        valid,
        lambda sent: done(statuses(messages, sent)),
        timeout=timeout,
        principal=principal,
    )


def statuses(
    messages: Sequence[BatchMessage | Exception], sent: Sequence[Published | Exception]
) -> list[dict[str, Any]]:
    """Return every message's status: the valid ones' in ``sent``, in order."""
    answers = iter(sent)
    return [
        status(next(answers) if isinstance(message, BatchMessage) else message)
        for message in messages
    ]


def status(result: Published | Exception) -> dict[str, Any]:
    """Return one message's status as the API answers it."""
    if isinstance(result, Exception):
        return {
            "status": STATUS_REFUSED,
            "error": error_code(result),
            "message": str(result),
        }
    reply: dict[str, Any] = {
        "status": STATUS_QUEUED if result.queued else STATUS_PUBLISHED,
        "topic": result.topic,
        "qos": result.qos,
        "retain": result.retain,
        "id": result.id,
    }
    if not result.queued:
        reply["mid"] = result.mid
    return reply


def counts(statuses: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Return how many messages got each status."""
    totals = dict.fromkeys((STATUS_PUBLISHED, STATUS_QUEUED, STATUS_REFUSED), 0)
    for item in statuses:
        totals[item["status"]] += 1
    return totals
