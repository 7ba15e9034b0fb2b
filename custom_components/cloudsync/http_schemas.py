"""The REST API's request bodies: what each field accepts, as the seed's clients send it."""

from __future__ import annotations

import re
from typing import Any, Final

import voluptuous as vol

from .const import ACK_TIMEOUT, MAX_APP_ID_LENGTH, MAX_TOPIC_LENGTH, MAX_URL_LENGTH
from .payload import ENCODING_UTF8, ENCODINGS

MAX_TIMEOUT: Final = 60.0


def qos(value: Any) -> int:
    """Accept 0, 1, 2 as a JSON number or a string (the seed sends strings)."""
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return int(value)
    if type(value) is int and value in (0, 1, 2):
        return value
    msg = "qos must be 0, 1 or 2"
    raise vol.Invalid(msg)


def flag(value: Any) -> bool:
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


def _text(max_length: int) -> vol.All:
    return vol.All(
        str,
        vol.Length(min=1, max=max_length),
        vol.Match(r"^[^\x00-\x1f\x7f-\x9f]+\Z", msg="control characters"),
    )


APPID = _text(MAX_APP_ID_LENGTH)
TOPIC = vol.All(str, vol.Length(max=MAX_TOPIC_LENGTH))  # the rest: invalid_topic
URL = _text(MAX_URL_LENGTH)
_BASE: dict[vol.Marker, Any] = {
    vol.Required("appid"): APPID,
    vol.Required("topic"): TOPIC,
    vol.Required("url"): URL,
}
# Unknown keys are dropped, as the original ignored them.
PUBLISH_SCHEMA: Final = vol.Schema(
    {
        **_BASE,
        vol.Required("payload"): str,
        vol.Optional("qos"): qos,
        vol.Optional("retain"): flag,
        vol.Optional("encoding", default=ENCODING_UTF8): vol.All(
            str, vol.Lower, vol.In(ENCODINGS)
        ),
        vol.Optional("timeout", default=ACK_TIMEOUT): _seconds,
    },
    extra=vol.REMOVE_EXTRA,
)
SUBSCRIBE_SCHEMA: Final = vol.Schema(
    {**_BASE, vol.Optional("qos"): qos}, extra=vol.REMOVE_EXTRA
)
UNSUBSCRIBE_SCHEMA: Final = vol.Schema(_BASE, extra=vol.REMOVE_EXTRA)
# Each message is checked on its own (batch.py): a bad one refuses only itself.
PUBLISH_BATCH_SCHEMA: Final = vol.Schema(
    {
        vol.Required("appid"): APPID,
        vol.Required("url"): URL,
        vol.Required("messages"): [dict],
        vol.Optional("timeout", default=ACK_TIMEOUT): _seconds,
    },
    extra=vol.REMOVE_EXTRA,
)


# The common body (JSON strings, numbers and booleans; UTF-8 payload) checked without
# voluptuous, which costs about as much as the rest of a publish. Anything else, and
# every error, goes through the schemas above; tests hold the two to the same answers.
_MISSING: Final = object()
_QOS: Final = frozenset((0, 1, 2))
_NO_CONTROL = re.compile(r"[^\x00-\x1f\x7f-\x9f]+\Z")
_CLEAN_TEXTS: dict[str, None] = {}  # strings _NO_CONTROL matched (bounded)
_CLEAN_TEXTS_MAX: Final = 1024


def plain_text(value: Any, max_length: int) -> bool:
    """Return True for a str the _text() schema takes as it is."""
    if type(value) is not str or len(value) > max_length:
        return False
    if value in _CLEAN_TEXTS:  # apps send the same appid and url again and again
        return True
    if _NO_CONTROL.match(value) is None:
        return False
    if len(_CLEAN_TEXTS) >= _CLEAN_TEXTS_MAX:
        _CLEAN_TEXTS.clear()
    _CLEAN_TEXTS[value] = None
    return True


def plain_message(raw: dict[str, Any]) -> dict[str, Any] | None:
    """Return a message's fields as the schema would, or None to use the schema."""
    topic = raw.get("topic")
    payload = raw.get("payload", "")
    qos_value = raw.get("qos", _MISSING)
    retain = raw.get("retain", _MISSING)
    if (
        type(topic) is not str
        or len(topic) > MAX_TOPIC_LENGTH
        or type(payload) is not str
        or raw.get("encoding", ENCODING_UTF8) != ENCODING_UTF8
        or not (qos_value is _MISSING or (type(qos_value) is int and qos_value in _QOS))
        or not (retain is _MISSING or type(retain) is bool)
    ):
        return None
    result = {"topic": topic, "payload": payload, "encoding": ENCODING_UTF8}
    if qos_value is not _MISSING:
        result["qos"] = qos_value
    if retain is not _MISSING:
        result["retain"] = retain
    return result


def plain_publish(raw: dict[str, Any]) -> dict[str, Any] | None:
    """Return a /publish body as PUBLISH_SCHEMA would, or None to use the schema."""
    timeout = raw.get("timeout", ACK_TIMEOUT)
    if (
        "payload" not in raw
        or not plain_text(raw.get("appid"), MAX_APP_ID_LENGTH)
        or not plain_text(raw.get("url"), MAX_URL_LENGTH)
        or type(timeout) not in (int, float)
        or not 0 < timeout <= MAX_TIMEOUT
        or (message := plain_message(raw)) is None
    ):
        return None
    return {
        **message,
        "appid": raw["appid"],
        "url": raw["url"],
        "timeout": float(timeout),
    }
