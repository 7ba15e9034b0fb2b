"""Actions: publish, subscribe, unsubscribe and read the latest data on a broker."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import wraps
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
import voluptuous as vol

from .broker import BrokerNotLoadedError, loaded
from .client import (
    BrokerTimeoutError,
    CloudSyncError,
    InvalidTopicError,
    NotConnectedError,
    OutboxError,
    OutboxFullError,
    PayloadTooLargeError,
    SubscriptionRefusedError,
)
from .const import (
    ACK_TIMEOUT,
    CONF_QOS,
    CONF_RETAIN,
    DEFAULT_QOS,
    DEFAULT_RETAIN,
    DOMAIN,
)
from .payload import (
    ENCODING_BASE64,
    ENCODING_UTF8,
    PayloadEncodingError,
    decode_payload,
    encode_payload,
)
from .registry import LatestData, NotSubscribedError, SensorOptions

if TYPE_CHECKING:
    from .models import CloudSyncConfigEntry

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_TOPIC: Final = "topic"
ATTR_PAYLOAD: Final = "payload"
ATTR_QOS: Final = "qos"
ATTR_RETAIN: Final = "retain"
ATTR_ENCODING: Final = "encoding"
ATTR_APP_ID: Final = "app_id"
ATTR_VALUE_TEMPLATE: Final = "value_template"
ATTR_UNIT_OF_MEASUREMENT: Final = "unit_of_measurement"
ATTR_DEVICE_CLASS: Final = "device_class"

SERVICE_PUBLISH: Final = "publish"
SERVICE_SUBSCRIBE: Final = "subscribe"
SERVICE_UNSUBSCRIBE: Final = "unsubscribe"
SERVICE_GET_DATA: Final = "get_data"

DEFAULT_APP_ID: Final = "homeassistant"

_QOS = vol.All(vol.Coerce(int), vol.In([0, 1, 2]))
_TOPIC_FIELDS = {
    vol.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
    vol.Required(ATTR_TOPIC): cv.string,
    vol.Optional(ATTR_APP_ID, default=DEFAULT_APP_ID): vol.All(
        cv.string, vol.Length(min=1)
    ),
}
TOPIC_SCHEMA = vol.Schema(_TOPIC_FIELDS)
SUBSCRIBE_SCHEMA = TOPIC_SCHEMA.extend({vol.Optional(ATTR_QOS): _QOS})
PUBLISH_SCHEMA = SUBSCRIBE_SCHEMA.extend(
    {
        vol.Optional(ATTR_PAYLOAD, default=""): cv.string,
        vol.Optional(ATTR_RETAIN): cv.boolean,
        vol.Optional(ATTR_ENCODING, default=ENCODING_UTF8): vol.In(
            [ENCODING_UTF8, ENCODING_BASE64]
        ),
    }
)

# The topic sensor's options, like HA's MQTT sensor; only the subscribe action has them.
SUBSCRIBE_ACTION_SCHEMA = SUBSCRIBE_SCHEMA.extend(
    {
        vol.Optional(ATTR_VALUE_TEMPLATE): vol.All(
            cv.string, lambda value: cv.template(value).template
        ),
        vol.Optional(ATTR_UNIT_OF_MEASUREMENT): cv.string,
        vol.Optional(ATTR_DEVICE_CLASS): vol.In(
            [cls.value for cls in SensorDeviceClass]
        ),
    }
)


class _EntryNotFoundError(LookupError):
    """No config entry has the requested ID."""


class _ForeignEntryError(LookupError):
    """The config entry belongs to another integration."""


# Checked along the error's MRO, so a subclass listed here wins over CloudSyncError.
_ERRORS: Final[dict[type[Exception], tuple[type[HomeAssistantError], str]]] = {
    _EntryNotFoundError: (ServiceValidationError, "entry_not_found"),
    _ForeignEntryError: (ServiceValidationError, "entry_not_cloudsync"),
    BrokerNotLoadedError: (ServiceValidationError, "entry_not_loaded"),
    InvalidTopicError: (ServiceValidationError, "invalid_topic"),
    NotSubscribedError: (ServiceValidationError, "not_subscribed"),
    PayloadEncodingError: (ServiceValidationError, "invalid_payload"),
    OutboxFullError: (ServiceValidationError, "outbox_full"),
    OutboxError: (HomeAssistantError, "outbox_error"),
    NotConnectedError: (HomeAssistantError, "not_connected"),
    BrokerTimeoutError: (HomeAssistantError, "broker_timeout"),
    PayloadTooLargeError: (HomeAssistantError, "payload_too_large"),
    SubscriptionRefusedError: (HomeAssistantError, "subscription_refused"),
    CloudSyncError: (HomeAssistantError, "broker_error"),
}
_PLACEHOLDER_FIELDS = (ATTR_CONFIG_ENTRY_ID, ATTR_TOPIC, ATTR_APP_ID, ATTR_ENCODING)

type _Handler = Callable[[ServiceCall], Coroutine[Any, Any, ServiceResponse]]


def _translate_errors(handler: _Handler) -> _Handler:
    """Turn registry and broker errors into translated Home Assistant errors."""

    @wraps(handler)
    async def wrapper(call: ServiceCall) -> ServiceResponse:
        try:
            return await handler(call)
        except tuple(_ERRORS) as err:
            error_class, key = next(
                _ERRORS[cls] for cls in type(err).__mro__ if cls in _ERRORS
            )
            placeholders = {
                field: str(call.data[field])
                for field in _PLACEHOLDER_FIELDS
                if field in call.data
            }
            raise error_class(
                translation_domain=DOMAIN,
                translation_key=key,
                translation_placeholders={**placeholders, "error": str(err)},
            ) from err

    return wrapper


def _async_get_entry(call: ServiceCall) -> CloudSyncConfigEntry:
    """Return the loaded broker entry the call names."""
    entry_id = call.data[ATTR_CONFIG_ENTRY_ID]
    if (entry := call.hass.config_entries.async_get_entry(entry_id)) is None:
        raise _EntryNotFoundError(entry_id)
    if entry.domain != DOMAIN:
        msg = f"it belongs to the {entry.domain} integration"
        raise _ForeignEntryError(msg)
    return loaded(entry)


def _data_response(topic: str, data: LatestData | None) -> dict[str, Any]:
    """Describe the latest data; payloads that are not UTF-8 come back base64."""
    if data is None:
        return dict.fromkeys(
            ("payload", "encoding", "received", "qos", "retained"), None
        ) | {"topic": topic}
    payload, encoding = encode_payload(data.payload)
    return {
        "topic": data.topic,
        "payload": payload,
        "encoding": encoding,
        "received": data.received.isoformat(),
        "qos": data.qos,
        "retained": data.retain,
    }


@_translate_errors
async def _async_publish(call: ServiceCall) -> ServiceResponse:
    """Publish a message (or queue it) and say which when asked."""
    entry = _async_get_entry(call)
    topic = call.data[ATTR_TOPIC]
    qos = call.data.get(ATTR_QOS, int(entry.options.get(CONF_QOS, DEFAULT_QOS)))
    retain = call.data.get(
        ATTR_RETAIN, bool(entry.options.get(CONF_RETAIN, DEFAULT_RETAIN))
    )
    payload = decode_payload(call.data[ATTR_PAYLOAD], call.data[ATTR_ENCODING])
    result = await entry.runtime_data.registry.async_publish(
        call.data[ATTR_APP_ID],
        topic,
        payload,
        qos,
        retain=retain,
        timeout=ACK_TIMEOUT,
        qos_explicit=ATTR_QOS in call.data,
    )
    if not call.return_response:
        return None
    return {
        "queued": result.queued,
        "id": result.id,
        "mid": result.mid,
        "topic": topic,
        "qos": result.qos,
        "retain": retain,
    }


@_translate_errors
async def _async_subscribe(call: ServiceCall) -> ServiceResponse:
    """Subscribe an app to a topic filter."""
    entry = _async_get_entry(call)
    qos = call.data.get(ATTR_QOS, int(entry.options.get(CONF_QOS, DEFAULT_QOS)))
    sensor = SensorOptions(
        call.data.get(ATTR_VALUE_TEMPLATE),
        call.data.get(ATTR_UNIT_OF_MEASUREMENT),
        call.data.get(ATTR_DEVICE_CLASS),
    )
    await entry.runtime_data.registry.async_subscribe(
        call.data[ATTR_APP_ID],
        call.data[ATTR_TOPIC],
        qos,
        sensor=sensor if sensor != SensorOptions() else None,
    )
    return None


@_translate_errors
async def _async_unsubscribe(call: ServiceCall) -> ServiceResponse:
    """Unsubscribe an app from a topic filter."""
    entry = _async_get_entry(call)
    await entry.runtime_data.registry.async_unsubscribe(
        call.data[ATTR_APP_ID], call.data[ATTR_TOPIC]
    )
    return None


@_translate_errors
async def _async_get_data(call: ServiceCall) -> ServiceResponse:
    """Return the latest data on a topic (or filter) the app subscribed to."""
    entry = _async_get_entry(call)
    topic = call.data[ATTR_TOPIC]
    return _data_response(
        topic, entry.runtime_data.registry.get(call.data[ATTR_APP_ID], topic)
    )


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions once for all brokers."""
    register = hass.services.async_register
    register(
        DOMAIN,
        SERVICE_PUBLISH,
        _async_publish,
        schema=PUBLISH_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    register(
        DOMAIN, SERVICE_SUBSCRIBE, _async_subscribe, schema=SUBSCRIBE_ACTION_SCHEMA
    )
    register(DOMAIN, SERVICE_UNSUBSCRIBE, _async_unsubscribe, schema=TOPIC_SCHEMA)
    register(
        DOMAIN,
        SERVICE_GET_DATA,
        _async_get_data,
        schema=TOPIC_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
