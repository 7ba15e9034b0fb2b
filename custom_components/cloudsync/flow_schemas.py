"""The forms of the config, reconfigure, reauth and options flows."""

from __future__ import annotations

from typing import Any, Final

from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.data_entry_flow import section
from homeassistant.helpers.selector import (
    BooleanSelector,
    FileSelector,
    FileSelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import voluptuous as vol

from .client import (
    OverflowPolicy,
    Profile,
    Protocol,
)
from .const import (
    CONF_ALLOW_LOCAL_UNAUTHENTICATED,
    CONF_APP_ISOLATION,
    CONF_CA_CERT,
    CONF_CACHE,
    CONF_CLIENT_CERT,
    CONF_CLIENT_ID,
    CONF_CLIENT_KEY,
    CONF_DRAIN_RATE,
    CONF_KEEPALIVE,
    CONF_KEY_PASSWORD,
    CONF_MAX_AGE,
    CONF_MAX_MESSAGES,
    CONF_MAX_SIZE,
    CONF_MAX_TOPICS,
    CONF_MESSAGE_EVENTS,
    CONF_OUTBOX,
    CONF_OVERFLOW,
    CONF_PROFILE,
    CONF_PROTOCOL,
    CONF_QOS,
    CONF_QUEUED_MESSAGES,
    CONF_RETAIN,
    CONF_STATE_INTERVAL,
    CONF_TOPIC_SENSORS,
    CONF_URL,
    CONF_VERIFY_HOSTNAME,
    DEFAULT_CACHE_MAX_SIZE,
    DEFAULT_CACHE_MAX_TOPICS,
    DEFAULT_DRAIN_RATE,
    DEFAULT_KEEPALIVE,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_MESSAGES,
    DEFAULT_MAX_SIZE,
    DEFAULT_MESSAGE_EVENTS,
    DEFAULT_OVERFLOW,
    DEFAULT_QOS,
    DEFAULT_RETAIN,
    DEFAULT_STATE_INTERVAL,
    DEFAULT_TOPIC_SENSORS,
)

# hassfest forbids URLs in translations: the example comes in as a placeholder.
URL_PLACEHOLDERS = {"example_url": "mqtts://broker.example.com:8883"}
_PASSWORD = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_CERT_FILE = FileSelector(FileSelectorConfig(accept=".pem,.crt,.cer,.der,.key"))

USER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_PROFILE, default=Profile.GENERIC.value): SelectSelector(
            SelectSelectorConfig(
                options=[profile.value for profile in Profile],
                mode=SelectSelectorMode.DROPDOWN,
                translation_key=CONF_PROFILE,
            )
        ),
        vol.Required(CONF_URL): TextSelector(),
        vol.Optional(CONF_USERNAME): TextSelector(
            TextSelectorConfig(autocomplete="username")
        ),
        vol.Optional(CONF_PASSWORD): _PASSWORD,
        vol.Optional(CONF_CLIENT_ID): TextSelector(),
        vol.Required(CONF_PROTOCOL, default=Protocol.MQTTV311.value): SelectSelector(
            SelectSelectorConfig(
                options=[protocol.value for protocol in Protocol],
                translation_key=CONF_PROTOCOL,
            )
        ),
    }
)
TLS_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_CA_CERT): _CERT_FILE,
        vol.Optional(CONF_CLIENT_CERT): _CERT_FILE,
        vol.Optional(CONF_CLIENT_KEY): _CERT_FILE,
        vol.Optional(CONF_KEY_PASSWORD): _PASSWORD,
        vol.Required(CONF_VERIFY_HOSTNAME, default=True): BooleanSelector(),
    }
)
REAUTH_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_USERNAME): TextSelector(
            TextSelectorConfig(autocomplete="username")
        ),
        vol.Optional(CONF_PASSWORD): _PASSWORD,
    }
)


def number_box(
    minimum: float, maximum: float, unit: str | None = None, step: float = 1
) -> vol.All:
    """Return a number box; whole steps are stored as int, fractional ones as float."""
    config = NumberSelectorConfig(
        min=minimum, max=maximum, step=step, mode=NumberSelectorMode.BOX
    )
    if unit:
        config["unit_of_measurement"] = unit
    return vol.All(NumberSelector(config), vol.Coerce(int if step == 1 else float))


def _count(maximum: int, unit: str | None = None) -> vol.All:
    """Return a whole-number box from 1 to ``maximum``."""
    return number_box(1, maximum, unit)


OUTBOX_FIELDS: dict[vol.Marker, Any] = {
    vol.Required(CONF_MAX_MESSAGES, default=DEFAULT_MAX_MESSAGES): _count(100_000_000),
    vol.Required(CONF_MAX_SIZE, default=DEFAULT_MAX_SIZE): _count(1_048_576, "MiB"),
    # Hours in a number box: the duration selector shows "7:0:00:00" without units.
    vol.Required(CONF_MAX_AGE, default=DEFAULT_MAX_AGE): _count(87_600, "h"),
    vol.Required(CONF_OVERFLOW, default=DEFAULT_OVERFLOW): SelectSelector(
        SelectSelectorConfig(
            options=[policy.value for policy in OverflowPolicy],
            mode=SelectSelectorMode.DROPDOWN,
            translation_key=CONF_OVERFLOW,
        )
    ),
    vol.Required(CONF_DRAIN_RATE, default=DEFAULT_DRAIN_RATE): _count(
        1_000_000, "messages/s"
    ),
}
# QoS offered as text (a select's values), stored as a number.
QOS_SELECTOR: Final = vol.All(
    SelectSelector(
        SelectSelectorConfig(
            options=["0", "1", "2"],
            mode=SelectSelectorMode.DROPDOWN,
            translation_key=CONF_QOS,
        )
    ),
    vol.Coerce(int),
)
OPTIONS_FIELDS: dict[vol.Marker, Any] = {
    vol.Required(CONF_QOS, default=str(DEFAULT_QOS)): QOS_SELECTOR,
    vol.Required(CONF_RETAIN, default=DEFAULT_RETAIN): BooleanSelector(),
    vol.Required(CONF_KEEPALIVE, default=DEFAULT_KEEPALIVE): number_box(10, 3600, "s"),
    vol.Required(CONF_STATE_INTERVAL, default=DEFAULT_STATE_INTERVAL): number_box(
        0, 3600, "s", step=0.1
    ),
    vol.Required(CONF_TOPIC_SENSORS, default=DEFAULT_TOPIC_SENSORS): BooleanSelector(),
    vol.Required(
        CONF_MESSAGE_EVENTS, default=DEFAULT_MESSAGE_EVENTS
    ): BooleanSelector(),
    vol.Required(CONF_ALLOW_LOCAL_UNAUTHENTICATED, default=False): BooleanSelector(),
    vol.Required(CONF_APP_ISOLATION, default=False): BooleanSelector(),
}
CACHE_FIELDS: dict[vol.Marker, Any] = {
    vol.Required(CONF_MAX_TOPICS, default=DEFAULT_CACHE_MAX_TOPICS): _count(
        10_000_000, "topics"
    ),
    vol.Required(CONF_MAX_SIZE, default=DEFAULT_CACHE_MAX_SIZE): _count(65_536, "MiB"),
}


def options_schema() -> vol.Schema:
    """Return a fresh options schema (HA writes suggested values into sections)."""
    outbox = section(vol.Schema(OUTBOX_FIELDS), {"collapsed": True})
    cache = section(vol.Schema(CACHE_FIELDS), {"collapsed": True})
    return vol.Schema(
        {
            **OPTIONS_FIELDS,
            vol.Required(CONF_OUTBOX): outbox,
            vol.Required(CONF_CACHE): cache,
        }
    )


QUEUE_SEND = "send"
QUEUE_DISCARD = "discard"
QUEUE_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_QUEUED_MESSAGES): SelectSelector(
            SelectSelectorConfig(
                options=[QUEUE_SEND, QUEUE_DISCARD],
                mode=SelectSelectorMode.LIST,
                translation_key=CONF_QUEUED_MESSAGES,
            )
        )
    }
)
