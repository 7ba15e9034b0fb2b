"""The REST API's replies: JSON bodies with the seed's ``Message``, built from results.

A view returns its body, or the body and a status other than 200; a failure becomes
``{"Message": ..., "error": <code>}`` with the status of the error table.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from homeassistant.const import CONTENT_TYPE_JSON
from homeassistant.helpers.json import json_bytes

from .batch import counts
from .errors import error_code, error_kind
from .registry import latest_reply

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .broker import CloudSyncBroker
    from .publishing import Published
    from .registry import LatestData
    from .subscribing import Subscribed

COMPRESS_ABOVE: Final = 1024

type Reply = dict[str, Any] | tuple[dict[str, Any], HTTPStatus]


def json_response(
    body: dict[str, Any], status: HTTPStatus = HTTPStatus.OK
) -> web.Response:
    """Return a JSON response, compressed only when big enough to gain from it.

    HomeAssistantView.json() always compresses; for the short replies of publish and
    subscribe that zlib call costs more than the bytes it saves.
    """
    data = json_bytes(body)
    response = web.Response(
        body=data, content_type=CONTENT_TYPE_JSON, status=int(status)
    )
    if len(data) > COMPRESS_ABOVE:
        response.enable_compression()
    return response


def error_reply(err: Exception) -> tuple[dict[str, Any], HTTPStatus]:
    """Return the body and status of a known error."""
    return {"Message": str(err), "error": error_code(err)}, error_kind(err).status


def published_reply(broker: CloudSyncBroker, published: Published) -> Reply:
    """Answer 200 once the broker acknowledged a publish, or 202 once it is queued."""
    url = str(broker.url)
    queued = published.queued
    reply = {
        "Message": f"Data queued for Cloud {url}"
        if queued
        else f"Data published successfully to Cloud {url}",
        "broker": url,
        "topic": published.topic,
        "qos": published.qos,
        "retain": published.retain,
        "queued": queued,
        "id": published.id,
    }
    if queued:
        return reply, HTTPStatus.ACCEPTED
    reply["mid"] = published.mid
    return reply


def batch_reply(
    broker: CloudSyncBroker, statuses: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Count a batch's statuses and list each message's."""
    totals = counts(statuses)
    url = str(broker.url)
    return {
        "Message": ", ".join(f"{n} {what}" for what, n in totals.items())
        + f" for Cloud {url}",
        "broker": url,
        **totals,
        "results": statuses,
    }


def subscribed_reply(broker: CloudSyncBroker, subscribed: Subscribed) -> Reply:
    """Answer 200 for a subscription made, or 202 for one recorded while down."""
    topic = subscribed.topic_filter
    reply = {
        "broker": str(broker.url),
        "topic": topic,
        "qos": subscribed.qos,
        "new_at_broker": subscribed.new_at_broker,
    }
    if subscribed.granted is not None:
        reply["granted_qos"] = subscribed.granted
    if subscribed.pending:
        message = f"Subscription to the topic {topic} recorded; sent when {broker.url} is back"
        return {"Message": message, **reply, "pending": True}, HTTPStatus.ACCEPTED
    return {"Message": f"Successfully subscribed to the topic {topic}", **reply}


def unsubscribed_reply(
    broker: CloudSyncBroker, topic: str, *, gone: bool
) -> dict[str, Any]:
    """Say whether the last app left and the filter was unsubscribed at the broker."""
    return {
        "Message": f"Successfully unsubscribed from the topic {topic}",
        "broker": str(broker.url),
        "topic": topic,
        "unsubscribed_at_broker": gone,
    }


def data_reply(
    broker: CloudSyncBroker, topic: str, data: LatestData | None
) -> dict[str, Any]:
    """Return the GET reply: the payload as text, or base64 when it is not UTF-8."""
    reply = latest_reply(
        topic, data, evicted=data is None and broker.was_evicted(topic)
    )
    return {"Message": reply.pop("payload") or "", "broker": str(broker.url), **reply}
