"""The original CloudSync's REST API on Home Assistant's HTTP server.

Same paths and ``Message`` replies as edge-home-orchestration's CloudSync, with real status
codes. The views authenticate themselves (``requires_auth = False``) so that the seed's
secure-mode header, the raw token without ``Bearer``, works next to HA's own forms; every
failure leaves through ``_api`` as JSON ``{"Message": ..., "error": ...}``. The replies
are built in http_replies.py.
"""

from __future__ import annotations

import functools
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Concatenate, Final

from aiohttp import web
from homeassistant.components.http.ban import process_wrong_login
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.http import KEY_HASS, HomeAssistantView
from homeassistant.util.json import json_loads
import voluptuous as vol

from .apps import LOCAL, Principal
from .batch import async_publish_batch, parse_messages
from .errors import (
    HANDLED,
    AmbiguousBrokerError,
    InvalidJsonError,
    InvalidPathError,
    RequestTooLargeError,
    UnknownBrokerError,
)
from .http_auth import Caller, async_authenticate, check_local_allowed
from .http_replies import (
    Reply,
    batch_reply,
    data_reply,
    error_reply,
    json_response,
    published_reply,
    subscribed_reply,
    unsubscribed_reply,
)
from .http_schemas import (
    APPID,
    PUBLISH_BATCH_SCHEMA,
    PUBLISH_SCHEMA,
    SUBSCRIBE_SCHEMA,
    TOPIC,
    UNSUBSCRIBE_SCHEMA,
    URL,
    plain_publish,
)
from .lookup import broker_by_url
from .payload import decode_payload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from .broker import CloudSyncBroker

BASE_URL: Final = "/api/v1/orchestration/cloudsyncmgr"
_CALLER: Final = "cloudsync_caller"
GET_FORMS: Final = (
    f"{BASE_URL}/getsubscribedata/<topic>/<appid> or "
    f"{BASE_URL}/getsubscribedata/<host>/<topic>/<appid>, "
    "with each / inside a topic sent as %2F"
)


def _api[V: HomeAssistantView, **P](
    func: Callable[Concatenate[V, web.Request, P], Awaitable[Reply]],
) -> Callable[Concatenate[V, web.Request, P], Coroutine[Any, Any, web.Response]]:
    """Authenticate, run the handler and turn every known error into a JSON reply.

    A handler returns its JSON body, or the body and a status other than 200.
    """

    @functools.wraps(func)
    async def handler(
        view: V, request: web.Request, /, *args: P.args, **kwargs: P.kwargs
    ) -> web.Response:
        try:
            request[_CALLER] = async_authenticate(request.app[KEY_HASS], request)
            reply = await func(view, request, *args, **kwargs)
            if isinstance(reply, tuple):
                return json_response(*reply)
            return json_response(reply)
        except HANDLED as err:
            body, status = error_reply(err)
            if status is HTTPStatus.UNAUTHORIZED:
                await process_wrong_login(request)  # HA's failed-login log and IP ban
            return json_response(body, status)

    return handler


async def _async_body(
    request: web.Request,
    schema: vol.Schema,
    plain: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Parse the body as a JSON object whatever the Content-Type, then validate it.

    ``plain`` answers the common form without the schema (None: use the schema).
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise RequestTooLargeError(err.text or err.reason) from err
    try:
        data = json_loads(raw)
    except ValueError as err:
        msg = f"the body is not valid JSON: {err}"
        raise InvalidJsonError(msg) from err
    if not isinstance(data, dict):
        msg = "the body must be a JSON object"
        raise InvalidJsonError(msg)
    if plain is not None and (result := plain(data)) is not None:
        return result
    validated: dict[str, Any] = schema(data)
    return validated


def _principal(request: web.Request, broker: CloudSyncBroker) -> Principal:
    """Return who acts for the request, once the broker it names let it in."""
    caller: Caller = request[_CALLER]
    check_local_allowed(caller, broker)
    if caller.user is None:
        return LOCAL
    return Principal(caller.user.id, is_admin=caller.user.is_admin)


async def _async_request(
    request: web.Request,
    schema: vol.Schema,
    plain: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> tuple[dict[str, Any], CloudSyncBroker, Principal]:
    """Return the validated body, the loaded broker its ``url`` names and the caller."""
    body = await _async_body(request, schema, plain)
    broker = broker_by_url(request.app[KEY_HASS], body["url"])
    return body, broker, _principal(request, broker)


class CloudSyncView(HomeAssistantView):
    """Base of the API's views: they authenticate in ``_api`` (raw tokens too)."""

    requires_auth = False


class PublishView(CloudSyncView):
    """POST /publish: publish a payload for an app."""

    url = f"{BASE_URL}/publish"
    name = "api:cloudsync:publish"

    @_api
    async def post(self, request: web.Request) -> Reply:
        """Answer 200 once the broker acknowledged it, or 202 once it is queued."""
        body, broker, principal = await _async_request(
            request, PUBLISH_SCHEMA, plain_publish
        )
        published = await broker.async_publish(
            body["appid"],
            body["topic"],
            decode_payload(body["payload"], body["encoding"]),
            qos=body.get("qos"),
            retain=body.get("retain"),
            timeout=body["timeout"],
            principal=principal,
        )
        return published_reply(broker, published)


class PublishBatchView(CloudSyncView):
    """POST /publish/batch: publish many messages in order, a status for each."""

    url = f"{BASE_URL}/publish/batch"
    name = "api:cloudsync:publish:batch"

    @_api
    async def post(self, request: web.Request) -> Reply:
        """Answer 200 with each message's status once all are acked or queued."""
        body, broker, principal = await _async_request(request, PUBLISH_BATCH_SCHEMA)
        statuses = await async_publish_batch(
            broker,
            parse_messages(body["messages"], body["appid"]),
            timeout=body["timeout"],
            principal=principal,
        )
        return batch_reply(broker, statuses)


class SubscribeView(CloudSyncView):
    """POST /subscribe: subscribe an app to a topic filter."""

    url = f"{BASE_URL}/subscribe"
    name = "api:cloudsync:subscribe"

    @_api
    async def post(self, request: web.Request) -> Reply:
        """Subscribe at the broker (when the filter is new) and remember the app.

        With the broker down the subscription is recorded and answered 202: it is
        sent with the resubscription once the broker is back.
        """
        body, broker, principal = await _async_request(request, SUBSCRIBE_SCHEMA)
        subscribed = await broker.async_subscribe(
            body["appid"], body["topic"], qos=body.get("qos"), principal=principal
        )
        return subscribed_reply(broker, subscribed)


class UnsubscribeView(CloudSyncView):
    """POST /unsubscribe: remove an app from a topic filter."""

    url = f"{BASE_URL}/unsubscribe"
    name = "api:cloudsync:unsubscribe"

    @_api
    async def post(self, request: web.Request) -> dict[str, Any]:
        """Forget the app; the last app leaving unsubscribes at the broker."""
        body, broker, principal = await _async_request(request, UNSUBSCRIBE_SCHEMA)
        topic = body["topic"]
        gone = await broker.async_unsubscribe(body["appid"], topic, principal=principal)
        return unsubscribed_reply(broker, topic, gone=gone)


class SubscribeDataView(CloudSyncView):
    """GET /getsubscribedata/[{host}/]{topic}/{appid}: the latest data on a topic."""

    # aiohttp's default segment pattern [^{}/]+ refuses topics with braces (newer
    # aiohttp matches decoded paths); any character but / is a segment here.
    url = f"{BASE_URL}/getsubscribedata/{{topic:[^/]+}}/{{appid:[^/]+}}"
    extra_urls = [  # noqa: RUF012
        f"{BASE_URL}/getsubscribedata/{{host:[^/]+}}/{{topic:[^/]+}}/{{appid:[^/]+}}"
    ]
    name = "api:cloudsync:getsubscribedata"

    @_api
    async def get(
        self, request: web.Request, topic: str, appid: str, host: str | None = None
    ) -> dict[str, Any]:
        """Answer the newest payload on the topic for a subscribed app."""
        APPID(appid)
        TOPIC(topic)
        if host is not None:
            URL(host)
        try:
            broker = broker_by_url(request.app[KEY_HASS], host)
        except AmbiguousBrokerError as err:
            if host is not None:
                raise
            msg = f"{err}; use {BASE_URL}/getsubscribedata/<host>/<topic>/<appid>"
            raise AmbiguousBrokerError(msg) from err
        except UnknownBrokerError as err:
            if host is None:
                raise
            msg = f"{err} (send each / inside a topic as %2F)"
            raise UnknownBrokerError(msg) from err
        principal = _principal(request, broker)
        return data_reply(broker, topic, broker.latest(appid, topic, principal))


class SubscribeDataPathView(CloudSyncView):
    """Any other /getsubscribedata path: explain the two forms instead of a bare 404."""

    url = f"{BASE_URL}/getsubscribedata/{{path:.*}}"
    name = "api:cloudsync:getsubscribedata:invalid"

    @_api
    async def get(self, request: web.Request, path: str) -> dict[str, Any]:  # noqa: ARG002
        """Reject the path."""
        msg = f"use {GET_FORMS}"
        raise InvalidPathError(msg)


@callback
def async_register_views(hass: HomeAssistant) -> None:
    """Register the REST API; the fallback path view must come last."""
    for view in (
        PublishView(),
        PublishBatchView(),
        SubscribeView(),
        UnsubscribeView(),
        SubscribeDataView(),
        SubscribeDataPathView(),
    ):
        hass.http.register_view(view)
