"""Errors of the Home Assistant layer and the one table that maps error codes.

Every error an entry point can meet has a stable ``code``: the client's errors carry one,
and so do the HA layer's below. ``ERRORS`` maps each code to its HTTP status, whether it
is the caller's mistake (``ServiceValidationError``) and its translation key; the REST
views, the actions and any new entry point translate through it, never through their own
table.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import ClassVar, Final

from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryError,
    ConfigEntryNotReady,
    HomeAssistantError,
    ServiceValidationError,
)
import voluptuous as vol

from .client import CloudSyncError
from .const import DOMAIN


class CloudSyncRequestError(Exception):
    """A request that cannot be served; ``code`` says why."""

    code: ClassVar[str] = "invalid_request"


class EntryNotFoundError(CloudSyncRequestError):
    """No config entry has the requested ID."""

    code = "entry_not_found"


class ForeignEntryError(CloudSyncRequestError):
    """The config entry belongs to another integration."""

    code = "entry_not_cloudsync"


class UnknownBrokerError(CloudSyncRequestError):
    """No configured broker matches the request."""

    code = "unknown_broker"


class AmbiguousBrokerError(CloudSyncRequestError):
    """More than one configured broker matches the request."""

    code = "ambiguous_broker"


class BrokerNotLoadedError(CloudSyncRequestError):
    """The broker is configured but not set up."""

    code = "broker_not_loaded"


class NotSubscribedError(CloudSyncRequestError):
    """The app is not subscribed to a filter that matches the topic."""

    code = "not_subscribed"


class InvalidPayloadError(CloudSyncRequestError, ValueError):
    """A payload's text does not decode with the encoding it names."""

    code = "invalid_payload"


class UnauthorizedError(CloudSyncRequestError):
    """The request carries no valid token (and no token-less access applies)."""

    code = "unauthorized"


class AppNotOwnedError(CloudSyncRequestError):
    """The app id belongs to another user (app isolation)."""

    code = "app_not_owned"


class LimitReachedError(CloudSyncRequestError):
    """A per-broker cap (apps, subscriptions) is reached."""

    code = "limit_reached"


class InvalidJsonError(CloudSyncRequestError):
    """The body is not a JSON object."""

    code = "invalid_json"


class InvalidPathError(CloudSyncRequestError):
    """The path matches no form of the API."""

    code = "invalid_path"


class RequestTooLargeError(CloudSyncRequestError):
    """The body is larger than Home Assistant's HTTP server takes."""

    code = "request_too_large"


class BatchTooLargeError(CloudSyncRequestError):
    """A batch has more messages or payload bytes than one request takes."""

    code = "batch_too_large"


class ClientTooSlowError(CloudSyncRequestError):
    """A websocket client did not read its stream fast enough and was cut off."""

    code = "client_too_slow"


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """How one error code is answered."""

    status: HTTPStatus
    translation_key: str
    caller_error: bool = False  # ServiceValidationError rather than HomeAssistantError


_BAD = HTTPStatus.BAD_REQUEST
ERRORS: Final[dict[str, ErrorKind]] = {
    # The caller's mistakes.
    "invalid_request": ErrorKind(_BAD, "invalid_request", caller_error=True),
    "invalid_json": ErrorKind(_BAD, "invalid_request", caller_error=True),
    "invalid_path": ErrorKind(_BAD, "invalid_request", caller_error=True),
    "invalid_topic": ErrorKind(_BAD, "invalid_topic", caller_error=True),
    "invalid_payload": ErrorKind(_BAD, "invalid_payload", caller_error=True),
    "unauthorized": ErrorKind(
        HTTPStatus.UNAUTHORIZED, "unauthorized", caller_error=True
    ),
    "app_not_owned": ErrorKind(
        HTTPStatus.FORBIDDEN, "app_not_owned", caller_error=True
    ),
    "limit_reached": ErrorKind(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "limit_reached", caller_error=True
    ),
    "batch_too_large": ErrorKind(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "batch_too_large", caller_error=True
    ),
    "client_too_slow": ErrorKind(
        HTTPStatus.TOO_MANY_REQUESTS, "client_too_slow", caller_error=True
    ),
    "entry_not_found": ErrorKind(
        HTTPStatus.NOT_FOUND, "entry_not_found", caller_error=True
    ),
    "entry_not_cloudsync": ErrorKind(
        HTTPStatus.NOT_FOUND, "entry_not_cloudsync", caller_error=True
    ),
    "unknown_broker": ErrorKind(
        HTTPStatus.NOT_FOUND, "entry_not_found", caller_error=True
    ),
    "not_subscribed": ErrorKind(
        HTTPStatus.NOT_FOUND, "not_subscribed", caller_error=True
    ),
    "ambiguous_broker": ErrorKind(
        HTTPStatus.CONFLICT, "ambiguous_broker", caller_error=True
    ),
    "request_too_large": ErrorKind(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large", caller_error=True
    ),
    "outbox_full": ErrorKind(
        HTTPStatus.INSUFFICIENT_STORAGE, "outbox_full", caller_error=True
    ),
    "broker_not_loaded": ErrorKind(
        HTTPStatus.SERVICE_UNAVAILABLE, "entry_not_loaded", caller_error=True
    ),
    # The broker's or the link's.
    "not_connected": ErrorKind(HTTPStatus.SERVICE_UNAVAILABLE, "not_connected"),
    "timeout": ErrorKind(HTTPStatus.GATEWAY_TIMEOUT, "broker_timeout"),
    # A broker profile's limit (client/profiles.py): refused before sending.
    "profile_limit": ErrorKind(_BAD, "profile_limit", caller_error=True),
    "profile_payload_too_large": ErrorKind(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "profile_limit", caller_error=True
    ),
    "payload_too_large": ErrorKind(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large"
    ),
    "subscription_refused": ErrorKind(HTTPStatus.FORBIDDEN, "subscription_refused"),
    "broker_refused": ErrorKind(HTTPStatus.FORBIDDEN, "broker_error"),
    "outbox_error": ErrorKind(HTTPStatus.INTERNAL_SERVER_ERROR, "outbox_error"),
    "broker_error": ErrorKind(HTTPStatus.BAD_GATEWAY, "broker_error"),
}
HANDLED: Final = (CloudSyncError, CloudSyncRequestError, vol.Invalid)


def error_code(err: Exception) -> str:
    """Return the stable code of an error ``HANDLED`` covers."""
    if isinstance(err, vol.Invalid):
        return "invalid_request"
    # A subclass with a code of its own (e.g. unknown_host) answers like its parent.
    for cls in type(err).__mro__:
        if (code := getattr(cls, "code", None)) in ERRORS:
            return str(code)
    return "broker_error"


def error_kind(err: Exception) -> ErrorKind:
    """Return how an error is answered."""
    return ERRORS[error_code(err)]


def as_ha_error(err: Exception, placeholders: dict[str, str]) -> HomeAssistantError:
    """Return the translated Home Assistant error for an action that failed."""
    kind = error_kind(err)
    error_class = ServiceValidationError if kind.caller_error else HomeAssistantError
    return error_class(
        translation_domain=DOMAIN,
        translation_key=kind.translation_key,
        translation_placeholders={**placeholders, "error": str(err)},
    )


def as_setup_error(
    err: CloudSyncError, url: str
) -> ConfigEntryAuthFailed | ConfigEntryError | ConfigEntryNotReady:
    """Return what a failed first connect means for the entry's setup."""
    error_class, key = _SETUP_ERRORS.get(
        err.code, (ConfigEntryNotReady, "cannot_connect")
    )
    return error_class(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders={"url": url, "error": str(err)},
    )


# Refused credentials start a re-authentication; certificates need the user.
_SETUP_ERRORS: Final[
    dict[
        str,
        tuple[
            type[ConfigEntryAuthFailed | ConfigEntryError | ConfigEntryNotReady], str
        ],
    ]
] = {
    "invalid_auth": (ConfigEntryAuthFailed, "invalid_auth"),
    "invalid_certificate": (ConfigEntryError, "invalid_certificate"),
}
