"""paho-mqtt's private calls, kept in one place, each with a public fallback.

Reading a burst through paho's public ``loop_read`` costs one event-loop turn per packet
when nothing is in flight, and leaves TLS records already decrypted in the SSL object
unread until the next packet arrives. paho's own thread loop calls ``_packet_read`` until
it reports no more data; so does ``read_packets`` while paho still has that method.
"""

from __future__ import annotations

from enum import Enum, auto
import logging
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_LOGGER = logging.getLogger(__name__)


class ReadOutcome(Enum):
    """How a read ended."""

    DRAINED = auto()  # no more data on the socket for now
    MORE = auto()  # the packet bound was reached; data may be left
    CLOSED = auto()  # paho closed the connection (its on_disconnect has run)


def has_private_reader(client_class: type[Any] = mqtt.Client) -> bool:
    """Return True when ``client_class`` has the private calls ``read_packets`` uses."""
    return callable(getattr(client_class, "_packet_read", None)) and callable(
        getattr(client_class, "_loop_rc_handle", None)
    )


USE_PRIVATE_READER = has_private_reader()
if not USE_PRIVATE_READER:  # pragma: no cover - depends on the installed paho
    _LOGGER.warning(
        "paho-mqtt %s lacks _packet_read; reading one packet per loop turn",
        getattr(mqtt, "__version__", "?"),
    )


def read_packets(mqttc: mqtt.Client, limit: int) -> ReadOutcome:
    """Read and handle up to ``limit`` packets that are waiting on the socket."""
    if not USE_PRIVATE_READER:
        return _read_public(mqttc)
    for _ in range(limit):
        rc = mqttc._packet_read()  # noqa: SLF001
        if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
            return ReadOutcome.DRAINED
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            mqttc._loop_rc_handle(rc)  # noqa: SLF001
            return ReadOutcome.CLOSED
        if mqttc.socket() is None:
            return ReadOutcome.CLOSED
    return ReadOutcome.MORE


def _read_public(mqttc: mqtt.Client) -> ReadOutcome:
    """Read through the public API (paho handles its own errors there)."""
    rc = mqttc.loop_read()
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mqttc.socket() is None:
        return ReadOutcome.CLOSED
    return ReadOutcome.MORE
