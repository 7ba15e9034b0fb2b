"""The cloudsync trigger: automations on cloud messages without a bus event per message.

```yaml
triggers:
  - trigger: cloudsync
    config_entry_id: 01JD0EXAMPLE0000000000000
    topic: home1/commands/#
    payload: "on"                              # optional
    value_template: "{{ value_json.state }}"   # optional, compared with payload
```

Like Home Assistant's own MQTT trigger: the filter is subscribed at the broker while an
automation uses it (also before the broker entry is loaded, and across its reloads).
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

from homeassistant.const import CONF_PAYLOAD, CONF_PLATFORM, CONF_VALUE_TEMPLATE
from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.exceptions import TemplateError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.template import Template
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType
from homeassistant.util.json import json_loads
import voluptuous as vol

from .client import InvalidTopicError, validate_filter
from .const import DOMAIN, LOGGER
from .hub import async_get_hub
from .payload import encode_payload
from .registry import LatestData

CONF_CONFIG_ENTRY_ID: Final = "config_entry_id"
CONF_TOPIC: Final = "topic"
CONF_QOS: Final = "qos"


def _topic_filter(value: Any) -> str:
    """Accept a valid MQTT topic filter."""
    text = cv.string(value)
    try:
        validate_filter(text)
    except InvalidTopicError as err:
        raise vol.Invalid(str(err)) from err
    return text


TRIGGER_SCHEMA = cv.TRIGGER_BASE_SCHEMA.extend(
    {
        vol.Required(CONF_PLATFORM): DOMAIN,
        vol.Required(CONF_CONFIG_ENTRY_ID): cv.string,
        vol.Required(CONF_TOPIC): _topic_filter,
        vol.Optional(CONF_PAYLOAD): cv.string,
        vol.Optional(CONF_VALUE_TEMPLATE): cv.template,
        vol.Optional(CONF_QOS, default=0): vol.All(vol.Coerce(int), vol.In([0, 1, 2])),
    }
)


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Run the action for every message on the filter that matches the payload."""
    trigger_data = trigger_info["trigger_data"]
    entry_id: str = config[CONF_CONFIG_ENTRY_ID]
    topic_filter: str = config[CONF_TOPIC]
    wanted: str | None = config.get(CONF_PAYLOAD)
    template: Template | None = config.get(CONF_VALUE_TEMPLATE)
    job = HassJob(action)

    @callback
    def _message(data: LatestData) -> None:
        payload, encoding = encode_payload(data.payload)
        if wanted is not None and _value(template, payload, data.topic) != wanted:
            return
        variables: dict[str, Any] = {
            **trigger_data,
            "platform": DOMAIN,
            "config_entry_id": entry_id,
            "topic": data.topic,
            "payload": payload,
            "encoding": encoding,
            "qos": data.qos,
            "retained": data.retain,
            "description": f"cloudsync topic {data.topic}",
        }
        with contextlib.suppress(ValueError):
            variables["payload_json"] = json_loads(payload)
        hass.async_run_hass_job(job, {"trigger": variables})

    LOGGER.debug("Attaching a trigger on %s of %s", topic_filter, entry_id)
    return async_get_hub(hass, entry_id).add(topic_filter, config[CONF_QOS], _message)


def _value(template: Template | None, payload: str, topic: str) -> str | None:
    """Return the payload, or what the value template makes of it."""
    if template is None:
        return payload
    variables: dict[str, Any] = {"value": payload, "topic": topic}
    with contextlib.suppress(ValueError):
        variables["value_json"] = json_loads(payload)
    try:
        return str(template.async_render(variables, parse_result=False))
    except TemplateError as err:
        LOGGER.warning("The value template of a cloudsync trigger failed: %s", err)
        return None
