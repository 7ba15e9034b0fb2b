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
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import config_validation as cv
import voluptuous as vol

from .apps import SYSTEM, Principal
from .batch import STATUS_REFUSED, async_publish_batch, counts, parse_messages
from .const import DOMAIN, MAX_APP_ID_LENGTH, MAX_TOPIC_LENGTH
from .errors import HANDLED, as_ha_error
from .lookup import broker_by_entry_id
from .payload import ENCODING_BASE64, ENCODING_UTF8, decode_payload
from .registry import SensorOptions, latest_reply

if TYPE_CHECKING:
    from .broker import CloudSyncBroker

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
ATTR_MESSAGES: Final = "messages"

SERVICE_PUBLISH: Final = "publish"
SERVICE_SUBSCRIBE: Final = "subscribe"
SERVICE_UNSUBSCRIBE: Final = "unsubscribe"
SERVICE_GET_DATA: Final = "get_data"

DEFAULT_APP_ID: Final = "homeassistant"

_QOS = vol.All(vol.Coerce(int), vol.In([0, 1, 2]))
_TOPIC_FIELDS = {
    vol.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
    vol.Required(ATTR_TOPIC): vol.All(cv.string, vol.Length(max=MAX_TOPIC_LENGTH)),
    vol.Optional(ATTR_APP_ID, default=DEFAULT_APP_ID): vol.All(
        cv.string, vol.Length(min=1, max=MAX_APP_ID_LENGTH)
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
# One message (topic, payload, …) or a batch: ``messages``, each checked on its own.
PUBLISH_ACTION_SCHEMA = vol.All(
    PUBLISH_SCHEMA.extend(
        {
            vol.Exclusive(ATTR_TOPIC, "message"): PUBLISH_SCHEMA.schema[ATTR_TOPIC],
            vol.Exclusive(ATTR_MESSAGES, "message"): vol.All(cv.ensure_list, list),
        }
    ),
    cv.has_at_least_one_key(ATTR_TOPIC, ATTR_MESSAGES),
)

# The topic sensor's options, like HA's MQTT sensor; only the subscribe action has them.
SUBSCRIBE_ACTION_SCHEMA = SUBSCRIBE_SCHEMA.extend(
    {
        vol.Optional(ATTR_VALUE_TEMPLATE): vol.All(
            cv.string, lambda value: cv.template(value).template
        ),
        vol.Optional(ATTR_UNIT_OF_MEASUREMENT): cv.string,
        # The sensor's value is then a number: classes of dates and enums do not fit.
        vol.Optional(ATTR_DEVICE_CLASS): vol.In(
            [
                cls.value
                for cls in SensorDeviceClass
                if cls
                not in (
                    SensorDeviceClass.DATE,
                    SensorDeviceClass.ENUM,
                    SensorDeviceClass.TIMESTAMP,
                )
            ]
        ),
    }
)


_PLACEHOLDER_FIELDS = (ATTR_CONFIG_ENTRY_ID, ATTR_TOPIC, ATTR_APP_ID, ATTR_ENCODING)

type _Handler = Callable[[ServiceCall], Coroutine[Any, Any, ServiceResponse]]


def _translate_errors(handler: _Handler) -> _Handler:
    """Turn every known error into a translated Home Assistant error."""

    @wraps(handler)
    async def wrapper(call: ServiceCall) -> ServiceResponse:
        try:
            return await handler(call)
        except HANDLED as err:
            placeholders = {
                field: str(call.data[field])
                for field in _PLACEHOLDER_FIELDS
                if field in call.data
            }
            raise as_ha_error(err, placeholders) from err

    return wrapper


def _broker(call: ServiceCall) -> CloudSyncBroker:
    """Return the loaded broker the call names."""
    return broker_by_entry_id(call.hass, call.data[ATTR_CONFIG_ENTRY_ID])


async def _async_principal(call: ServiceCall) -> Principal:
    """Return who runs the action: its user, or the system (automations) as admin."""
    if (user_id := call.context.user_id) is None:
        return SYSTEM
    user = await call.hass.auth.async_get_user(user_id)
    return Principal(user_id, is_admin=user is not None and user.is_admin)


@_translate_errors
async def _async_publish(call: ServiceCall) -> ServiceResponse:
    """Publish a message (or queue it) and say which when asked."""
    if ATTR_MESSAGES in call.data:
        return await _async_publish_batch(call)
    published = await _broker(call).async_publish(
        call.data[ATTR_APP_ID],
        call.data[ATTR_TOPIC],
        decode_payload(call.data[ATTR_PAYLOAD], call.data[ATTR_ENCODING]),
        qos=call.data.get(ATTR_QOS),
        retain=call.data.get(ATTR_RETAIN),
        principal=await _async_principal(call),
    )
    if not call.return_response:
        return None
    return {
        "queued": published.queued,
        "id": published.id,
        "mid": published.mid,
        "topic": published.topic,
        "qos": published.qos,
        "retain": published.retain,
    }


async def _async_publish_batch(call: ServiceCall) -> ServiceResponse:
    """Publish messages in order; without a response, raise when any was refused."""
    statuses = await async_publish_batch(
        _broker(call),
        parse_messages(call.data[ATTR_MESSAGES], call.data[ATTR_APP_ID], "app_id"),
        principal=await _async_principal(call),
    )
    if call.return_response:
        response: dict[str, Any] = {**counts(statuses), "results": statuses}
        return response
    refused = [item for item in statuses if item["status"] == STATUS_REFUSED]
    if refused:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="batch_refused",
            translation_placeholders={
                "refused": str(len(refused)),
                "total": str(len(statuses)),
                "error": refused[0]["message"],
            },
        )
    return None


@_translate_errors
async def _async_subscribe(call: ServiceCall) -> ServiceResponse:
    """Subscribe an app to a topic filter."""
    sensor = SensorOptions(
        call.data.get(ATTR_VALUE_TEMPLATE),
        call.data.get(ATTR_UNIT_OF_MEASUREMENT),
        call.data.get(ATTR_DEVICE_CLASS),
    )
    await _broker(call).async_subscribe(
        call.data[ATTR_APP_ID],
        call.data[ATTR_TOPIC],
        qos=call.data.get(ATTR_QOS),
        sensor=sensor if sensor != SensorOptions() else None,
        principal=await _async_principal(call),
    )
    return None


@_translate_errors
async def _async_unsubscribe(call: ServiceCall) -> ServiceResponse:
    """Unsubscribe an app from a topic filter."""
    await _broker(call).async_unsubscribe(
        call.data[ATTR_APP_ID],
        call.data[ATTR_TOPIC],
        principal=await _async_principal(call),
    )
    return None


@_translate_errors
async def _async_get_data(call: ServiceCall) -> ServiceResponse:
    """Return the latest data on a topic (or filter) the app subscribed to."""
    topic = call.data[ATTR_TOPIC]
    broker = _broker(call)
    principal = await _async_principal(call)
    data = broker.latest(call.data[ATTR_APP_ID], topic, principal)
    return latest_reply(topic, data, evicted=data is None and broker.was_evicted(topic))


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions once for all brokers."""
    register = hass.services.async_register
    register(
        DOMAIN,
        SERVICE_PUBLISH,
        _async_publish,
        schema=PUBLISH_ACTION_SCHEMA,
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
