"""The original CloudSync's REST API on Home Assistant's HTTP server.

Same paths and ``Message`` replies as edge-home-orchestration's CloudSync, with real status
codes. The views authenticate themselves (``requires_auth = False``) so that the seed's
secure-mode header, the raw token without ``Bearer``, works next to HA's own forms; every
failure leaves through ``_api`` as JSON ``{"Message": ..., "error": ...}``.
"""

from __future__ import annotations

import functools
from http import HTTPStatus
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any, Concatenate, Final

from aiohttp import hdrs, web
from homeassistant.components.http.auth import async_user_not_allowed_do_auth
from homeassistant.components.http.ban import process_wrong_login
from homeassistant.components.http.const import KEY_HASS_REFRESH_TOKEN_ID, KEY_HASS_USER
from homeassistant.const import CONTENT_TYPE_JSON
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.http import KEY_AUTHENTICATED, KEY_HASS, HomeAssistantView
from homeassistant.helpers.json import json_bytes
from homeassistant.util.json import json_loads
import voluptuous as vol

from .broker import (
    AmbiguousBrokerError,
    BrokerNotLoadedError,
    UnknownBrokerError,
    resolve_broker,
)
from .client import (
    BrokerRefusedError,
    BrokerTimeoutError,
    CloudSyncError,
    InvalidTopicError,
    NotConnectedError,
    OutboxError,
    OutboxFullError,
    PayloadTooLargeError,
    SubscriptionRefusedError,
    validate_filter,
)
from .const import (
    ACK_TIMEOUT,
    CONF_ALLOW_LOCAL_UNAUTHENTICATED,
    CONF_QOS,
    CONF_RETAIN,
    DEFAULT_QOS,
    DEFAULT_RETAIN,
    DOMAIN,
)
from .payload import ENCODING_UTF8, ENCODINGS, decode_payload, encode_payload
from .registry import LatestData, NotSubscribedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from .models import CloudSyncConfigEntry

BASE_URL: Final = "/api/v1/orchestration/cloudsyncmgr"
MAX_TIMEOUT: Final = 60.0
COMPRESS_ABOVE: Final = 1024
GET_FORMS: Final = (
    f"{BASE_URL}/getsubscribedata/<topic>/<appid> or "
    f"{BASE_URL}/getsubscribedata/<host>/<topic>/<appid>, "
    "with each / inside a topic sent as %2F"
)


class RequestError(Exception):
    """A request the API answers with a client error."""

    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        """Store the status and the error code next to the message."""
        super().__init__(message)
        self.status = status
        self.code = code


# Checked in order: the first class an error is an instance of decides.
_ERRORS: Final[tuple[tuple[type[Exception], HTTPStatus, str], ...]] = (
    (InvalidTopicError, HTTPStatus.BAD_REQUEST, "invalid_topic"),
    (vol.Invalid, HTTPStatus.BAD_REQUEST, "invalid_request"),
    (UnknownBrokerError, HTTPStatus.NOT_FOUND, "unknown_broker"),
    (NotSubscribedError, HTTPStatus.NOT_FOUND, "not_subscribed"),
    (AmbiguousBrokerError, HTTPStatus.CONFLICT, "ambiguous_broker"),
    (BrokerNotLoadedError, HTTPStatus.SERVICE_UNAVAILABLE, "broker_not_loaded"),
    (NotConnectedError, HTTPStatus.SERVICE_UNAVAILABLE, "not_connected"),
    (PayloadTooLargeError, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large"),
    (SubscriptionRefusedError, HTTPStatus.FORBIDDEN, "subscription_refused"),
    (BrokerRefusedError, HTTPStatus.FORBIDDEN, "broker_refused"),
    (BrokerTimeoutError, HTTPStatus.GATEWAY_TIMEOUT, "timeout"),
    (OutboxFullError, HTTPStatus.INSUFFICIENT_STORAGE, "outbox_full"),
    (OutboxError, HTTPStatus.INTERNAL_SERVER_ERROR, "outbox_error"),
    (CloudSyncError, HTTPStatus.BAD_GATEWAY, "broker_error"),
)
_HANDLED: Final[tuple[type[Exception], ...]] = (
    RequestError,
    *(kind for kind, _, _ in _ERRORS),
)


def _qos(value: Any) -> int:
    """Accept 0, 1, 2 as a JSON number or a string (the seed sends strings)."""
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return int(value)
    if type(value) is int and value in (0, 1, 2):
        return value
    msg = "qos must be 0, 1 or 2"
    raise vol.Invalid(msg)


def _flag(value: Any) -> bool:
    """Accept a JSON boolean or the strings "true" / "false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    msg = "expected true or false"
    raise vol.Invalid(msg)


def _seconds(value: Any) -> float:
    """Accept a number of seconds in (0, MAX_TIMEOUT]."""
    if type(value) in (int, float) and 0 < value <= MAX_TIMEOUT:
        return float(value)
    msg = f"timeout must be a number of seconds above 0 and up to {MAX_TIMEOUT:g}"
    raise vol.Invalid(msg)


_TEXT = vol.All(str, vol.Length(min=1))
_BASE: dict[vol.Marker, Any] = {
    vol.Required("appid"): _TEXT,
    vol.Required("topic"): str,
    vol.Required("url"): _TEXT,
}
# Unknown keys are dropped, as the original ignored them.
PUBLISH_SCHEMA: Final = vol.Schema(
    {
        **_BASE,
        vol.Required("payload"): str,
        vol.Optional("qos"): _qos,
        vol.Optional("retain"): _flag,
        vol.Optional("encoding", default=ENCODING_UTF8): vol.All(
            str, vol.Lower, vol.In(ENCODINGS)
        ),
        vol.Optional("timeout", default=ACK_TIMEOUT): _seconds,
    },
    extra=vol.REMOVE_EXTRA,
)
SUBSCRIBE_SCHEMA: Final = vol.Schema(
    {**_BASE, vol.Optional("qos"): _qos}, extra=vol.REMOVE_EXTRA
)
UNSUBSCRIBE_SCHEMA: Final = vol.Schema(_BASE, extra=vol.REMOVE_EXTRA)


def _local_unauthenticated_allowed(hass: HomeAssistant) -> bool:
    """Return True when an enabled entry allows token-less calls from loopback."""
    return any(
        entry.options.get(CONF_ALLOW_LOCAL_UNAUTHENTICATED, False)
        for entry in hass.config_entries.async_entries(
            DOMAIN, include_ignore=False, include_disabled=False
        )
    )


def _is_loopback(remote: str | None) -> bool:
    """Return True for a loopback peer (HA has already applied trusted proxies)."""
    try:
        return remote is not None and ip_address(remote).is_loopback
    except ValueError:
        return False


@callback
def async_authenticate(hass: HomeAssistant, request: web.Request) -> None:
    """Accept HA's own auth, the seed's raw token, or (opt-in) a loopback caller."""
    if request.get(KEY_AUTHENTICATED):
        return
    if header := request.headers.get(hdrs.AUTHORIZATION, "").strip():
        scheme, _, rest = header.partition(" ")
        token = rest.strip() if scheme.lower() == "bearer" else header
        refresh_token = hass.auth.async_validate_access_token(token)
        if refresh_token is None or async_user_not_allowed_do_auth(
            hass, refresh_token.user, request
        ):
            raise RequestError(
                HTTPStatus.UNAUTHORIZED, "unauthorized", "the access token is not valid"
            )
        request[KEY_HASS_USER] = refresh_token.user
        request[KEY_HASS_REFRESH_TOKEN_ID] = refresh_token.id
        return
    if _local_unauthenticated_allowed(hass) and _is_loopback(request.remote):
        return
    raise RequestError(
        HTTPStatus.UNAUTHORIZED,
        "unauthorized",
        "send a long-lived access token in the Authorization header",
    )


def _error(err: Exception) -> tuple[HTTPStatus, str]:
    """Return the status and error code of a handled exception."""
    if isinstance(err, RequestError):
        return err.status, err.code
    return next(
        (status, code) for kind, status, code in _ERRORS if isinstance(err, kind)
    )


type _Reply = dict[str, Any] | tuple[dict[str, Any], HTTPStatus]


def _api[V: HomeAssistantView, **P](
    func: Callable[Concatenate[V, web.Request, P], Awaitable[_Reply]],
) -> Callable[Concatenate[V, web.Request, P], Coroutine[Any, Any, web.Response]]:
    """Authenticate, run the handler and turn every known error into a JSON reply.

    A handler returns its JSON body, or the body and a status other than 200.
    """

    @functools.wraps(func)
    async def handler(
        view: V, request: web.Request, /, *args: P.args, **kwargs: P.kwargs
    ) -> web.Response:
        try:
            async_authenticate(request.app[KEY_HASS], request)
            reply = await func(view, request, *args, **kwargs)
            if isinstance(reply, tuple):
                return _json_response(*reply)
            return _json_response(reply)
        except _HANDLED as err:
            status, code = _error(err)
            if status is HTTPStatus.UNAUTHORIZED:
                await process_wrong_login(request)  # HA's failed-login log and IP ban
            return _json_response({"Message": str(err), "error": code}, status)

    return handler


def _json_response(
    body: dict[str, Any], status: HTTPStatus = HTTPStatus.OK
) -> web.Response:
    """Return a JSON response, compressed only when big enough to gain from it.

    HomeAssistantView.json() always compresses; for the short replies of publish and
    subscribe that zlib call costs more than the bytes it saves.
    """
    response = web.Response(
        body=json_bytes(body), content_type=CONTENT_TYPE_JSON, status=int(status)
    )
    if response.content_length and response.content_length > COMPRESS_ABOVE:
        response.enable_compression()
    return response


async def _async_body(request: web.Request, schema: vol.Schema) -> dict[str, Any]:
    """Parse the body as a JSON object whatever the Content-Type, then validate it."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise RequestError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "request_too_large",
            err.text or err.reason,
        ) from err
    try:
        data = json_loads(raw)
    except ValueError as err:
        raise RequestError(
            HTTPStatus.BAD_REQUEST, "invalid_json", f"the body is not valid JSON: {err}"
        ) from err
    if not isinstance(data, dict):
        raise RequestError(
            HTTPStatus.BAD_REQUEST, "invalid_json", "the body must be a JSON object"
        )
    result: dict[str, Any] = schema(data)
    return result


def _payload_bytes(text: str, encoding: str) -> bytes:
    """Return the bytes to publish."""
    try:
        return decode_payload(text, encoding)
    except ValueError as err:
        raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_payload", str(err)) from err


def _data_reply(
    entry: CloudSyncConfigEntry, topic: str, data: LatestData | None
) -> dict[str, Any]:
    """Return the GET reply: the payload as text, or base64 when it is not UTF-8."""
    broker = str(entry.runtime_data.url)
    if data is None:
        empty = dict.fromkeys(("received", "qos", "retained", "encoding"))
        return {"Message": "", "broker": broker, "topic": topic, **empty}
    text, encoding = encode_payload(data.payload)
    return {
        "Message": text,
        "broker": broker,
        "topic": data.topic,
        "received": data.received.isoformat(),
        "qos": data.qos,
        "retained": data.retain,
        "encoding": encoding,
    }


async def _async_request(
    request: web.Request, schema: vol.Schema
) -> tuple[dict[str, Any], CloudSyncConfigEntry]:
    """Return the validated body and the loaded entry its ``url`` names."""
    body = await _async_body(request, schema)
    return body, resolve_broker(request.app[KEY_HASS], body["url"])


class CloudSyncView(HomeAssistantView):
    """Base of the API's views: they authenticate in ``_api`` (raw tokens too)."""

    requires_auth = False


class PublishView(CloudSyncView):
    """POST /publish: publish a payload for an app."""

    url = f"{BASE_URL}/publish"
    name = "api:cloudsync:publish"

    @_api
    async def post(self, request: web.Request) -> _Reply:
        """Answer 200 once the broker acknowledged it, or 202 once it is queued."""
        body, entry = await _async_request(request, PUBLISH_SCHEMA)
        payload = _payload_bytes(body["payload"], body["encoding"])
        qos = body.get("qos", entry.options.get(CONF_QOS, DEFAULT_QOS))
        retain = body.get("retain", entry.options.get(CONF_RETAIN, DEFAULT_RETAIN))
        result = await entry.runtime_data.registry.async_publish(
            body["appid"],
            body["topic"],
            payload,
            qos,
            retain=retain,
            timeout=body["timeout"],
            qos_explicit="qos" in body,
        )
        broker = str(entry.runtime_data.url)
        reply = {
            "broker": broker,
            "topic": body["topic"],
            "qos": result.qos,
            "retain": retain,
            "queued": result.queued,
            "id": result.id,
        }
        if result.queued:
            return {
                "Message": f"Data queued for Cloud {broker}",
                **reply,
            }, HTTPStatus.ACCEPTED
        return {
            "Message": f"Data published successfully to Cloud {broker}",
            **reply,
            "mid": result.mid,
        }


class SubscribeView(CloudSyncView):
    """POST /subscribe: subscribe an app to a topic filter."""

    url = f"{BASE_URL}/subscribe"
    name = "api:cloudsync:subscribe"

    @_api
    async def post(self, request: web.Request) -> dict[str, Any]:
        """Subscribe at the broker (when the filter is new) and remember the app."""
        body, entry = await _async_request(request, SUBSCRIBE_SCHEMA)
        topic = body["topic"]
        qos = body.get("qos", entry.options.get(CONF_QOS, DEFAULT_QOS))
        new = await entry.runtime_data.registry.async_subscribe(
            body["appid"], topic, qos
        )
        return {
            "Message": f"Successfully subscribed to the topic {topic}",
            "broker": str(entry.runtime_data.url),
            "topic": topic,
            "qos": qos,
            "new_at_broker": new,
        }


class UnsubscribeView(CloudSyncView):
    """POST /unsubscribe: remove an app from a topic filter."""

    url = f"{BASE_URL}/unsubscribe"
    name = "api:cloudsync:unsubscribe"

    @_api
    async def post(self, request: web.Request) -> dict[str, Any]:
        """Forget the app; the last app leaving unsubscribes at the broker."""
        body, entry = await _async_request(request, UNSUBSCRIBE_SCHEMA)
        topic = body["topic"]
        validate_filter(topic)
        gone = await entry.runtime_data.registry.async_unsubscribe(body["appid"], topic)
        return {
            "Message": f"Successfully unsubscribed from the topic {topic}",
            "broker": str(entry.runtime_data.url),
            "topic": topic,
            "unsubscribed_at_broker": gone,
        }


class SubscribeDataView(CloudSyncView):
    """GET /getsubscribedata/[{host}/]{topic}/{appid}: the latest data on a topic."""

    url = f"{BASE_URL}/getsubscribedata/{{topic}}/{{appid}}"
    extra_urls = [f"{BASE_URL}/getsubscribedata/{{host}}/{{topic}}/{{appid}}"]  # noqa: RUF012
    name = "api:cloudsync:getsubscribedata"

    @_api
    async def get(
        self, request: web.Request, topic: str, appid: str, host: str | None = None
    ) -> dict[str, Any]:
        """Answer the newest payload on the topic for a subscribed app."""
        hass = request.app[KEY_HASS]
        try:
            entry: CloudSyncConfigEntry = resolve_broker(hass, host)
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
        data = entry.runtime_data.registry.get(appid, topic)
        return _data_reply(entry, topic, data)


class SubscribeDataPathView(CloudSyncView):
    """Any other /getsubscribedata path: explain the two forms instead of a bare 404."""

    url = f"{BASE_URL}/getsubscribedata/{{path:.*}}"
    name = "api:cloudsync:getsubscribedata:invalid"

    @_api
    async def get(self, request: web.Request, path: str) -> dict[str, Any]:  # noqa: ARG002
        """Reject the path."""
        raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_path", f"use {GET_FORMS}")


@callback
def async_register_views(hass: HomeAssistant) -> None:
    """Register the REST API; the fallback path view must come last."""
    for view in (
        PublishView(),
        SubscribeView(),
        UnsubscribeView(),
        SubscribeDataView(),
        SubscribeDataPathView(),
    ):
        hass.http.register_view(view)
