"""QoS 1 publishes and their PUBACKs without paho's per-message objects.

paho's ``publish`` builds an ``MQTTMessage`` and an ``MQTTMessageInfo`` (with a
``threading.Condition``) for every message, keeps it in ``_out_messages`` for a resend
that never happens here (every connection attempt gets a fresh client and the outbox
resends), and its PUBACK handler builds a ``ReasonCode`` and a ``Properties`` and takes
three locks per packet. The lane encodes a QoS 1 PUBLISH itself, numbers it with
paho's own message id counter and queues it in paho's output queue (so order with
everything else paho sends holds), and answers its PUBACK with the message id and
the reason code's value alone.

paho keeps the rest: QoS 0 and 2, subscriptions, keepalive, and PUBACKs of messages in
its own ``_out_messages``. Without the private names this uses (``_last_mid``,
``_packet_queue``, ``_handle_pubackcomp``, ``_in_packet``, ``_out_messages``) there is
no lane and paho does everything.
"""

from __future__ import annotations

from collections.abc import Callable
import struct
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .errors import NotConnectedError

type AckHandler = Callable[[int, int], None]  # (message id, reason code value)

_PUBLISH = PacketTypes.PUBLISH << 4
_SHORT_HEAD = struct.Struct("!BBH")  # fixed header, topic length
_ONE_BYTE_LENGTH = 0x80  # remaining lengths below fit in one byte
_MID = struct.Struct("!H")
# Shared, never changed: what paho would build for a bare PUBACK / PUBCOMP.
_BARE_ACKS: dict[str, tuple[ReasonCode, Properties]] = {
    cmd: (ReasonCode(packet), Properties(packet))  # type: ignore[no-untyped-call]
    for cmd, packet in (
        ("PUBACK", PacketTypes.PUBACK),
        ("PUBCOMP", PacketTypes.PUBCOMP),
    )
}
_CLIENT_CALLS = ("_packet_queue", "_handle_pubackcomp", "_do_on_publish")
_CLIENT_STATE = (
    "_in_packet",
    "_out_messages",
    "_out_message_mutex",
    "_sock",
    "_last_mid",
)


def encode_publish(
    topic: bytes, payload: bytes, mid: int, *, retain: bool, v5: bool
) -> bytes:
    """Return one QoS 1 PUBLISH packet (MQTT 3.1.1, or 5 without properties)."""
    length = 4 + len(topic) + (1 if v5 else 0) + len(payload)
    if length < _ONE_BYTE_LENGTH:  # most telemetry
        return b"".join(
            (
                _SHORT_HEAD.pack(_PUBLISH | 2 | retain, length, len(topic)),
                topic,
                _MID.pack(mid),
                b"\0" if v5 else b"",  # no properties
                payload,
            )
        )
    header = bytearray((_PUBLISH | 2 | retain,))
    while True:  # the remaining length, 7 bits a byte
        byte, length = length & 0x7F, length >> 7
        header.append(byte | 0x80 if length else byte)
        if not length:
            break
    header += _MID.pack(len(topic))
    header += topic
    header += _MID.pack(mid)
    if v5:
        header.append(0)  # no properties
    return bytes(header) + payload


def has_lane(client: Any) -> bool:
    """Return True when ``client`` (a paho client) has what the lane uses."""
    return all(callable(getattr(client, name, None)) for name in _CLIENT_CALLS) and all(
        hasattr(client, name) for name in _CLIENT_STATE
    )


class FastLane:
    """One paho client's QoS 1 publishes and its bare PUBACK/PUBCOMP handling."""

    __slots__ = ("_mqttc", "_on_ack", "_v5")

    def __init__(self, mqttc: mqtt.Client, on_ack: AckHandler) -> None:
        """Take over ``mqttc``'s PUBACK/PUBCOMP handling; acks of ours go to on_ack."""
        self._mqttc = mqttc
        self._on_ack = on_ack
        self._v5 = mqttc.protocol == mqtt.MQTTv5
        paho_handler: Callable[[Any], MQTTErrorCode] = mqttc._handle_pubackcomp  # noqa: SLF001

        def handle_pubackcomp(cmd: str) -> MQTTErrorCode:
            packet = mqttc._in_packet  # noqa: SLF001
            body: bytes = packet["packet"]
            if packet["remaining_length"] == 2:  # noqa: PLR2004 - the message id alone
                self.ack(_MID.unpack_from(body)[0], cmd)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            # MQTT 5 only: a reason code (and maybe properties) after the message id;
            # paho judges anything else (a malformed packet, paho's own messages).
            (mid,) = _MID.unpack_from(body) if len(body) > 2 else (None,)  # noqa: PLR2004
            if (
                not self._v5
                or cmd != "PUBACK"
                or mid is None
                or mid in mqttc._out_messages  # noqa: SLF001
            ):
                return paho_handler(cmd)
            self._on_ack(mid, body[2])
            return MQTTErrorCode.MQTT_ERR_SUCCESS

        mqttc._handle_pubackcomp = handle_pubackcomp  # type: ignore[method-assign]  # noqa: SLF001

    def publish(self, topic: bytes, payload: bytes, *, retain: bool) -> int:
        """Queue a QoS 1 PUBLISH on ``topic`` (UTF-8); return its message id.

        Raise NotConnectedError when paho has no socket (the link just dropped).
        """
        mqttc = self._mqttc
        if mqttc._sock is None:  # noqa: SLF001
            msg = "the connection is closing"
            raise NotConnectedError(msg)
        # paho's _mid_generate without its lock: ids are only made on the loop's
        # thread once connected (the executor ran only the connect).
        mid = mqttc._last_mid % 65535 + 1  # noqa: SLF001 - 1..65535, as paho wraps
        mqttc._last_mid = mid  # noqa: SLF001
        packet = encode_publish(topic, payload, mid, retain=retain, v5=self._v5)
        mqttc._packet_queue(_PUBLISH, packet, mid, 1)  # noqa: SLF001
        return mid

    def ack(self, mid: int, cmd: str = "PUBACK") -> None:
        """Handle a bare PUBACK/PUBCOMP (success without properties)."""
        mqttc = self._mqttc
        if mid in mqttc._out_messages:  # noqa: SLF001 - paho's own (QoS 2, or no lane)
            with mqttc._out_message_mutex:  # noqa: SLF001
                if mid in mqttc._out_messages:  # noqa: SLF001
                    reason, properties = _BARE_ACKS[cmd]
                    mqttc._do_on_publish(mid, reason, properties)  # noqa: SLF001
        elif cmd == "PUBACK":
            self._on_ack(mid, 0)


def install_lane(mqttc: mqtt.Client, on_ack: AckHandler) -> FastLane | None:
    """Return the client's lane, or None (paho does everything) without its names."""
    return FastLane(mqttc, on_ack) if has_lane(mqttc) else None
