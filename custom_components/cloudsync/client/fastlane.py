"""QoS 0 and 1 publishes and their PUBACKs without paho's per-message objects.

paho's ``publish`` builds an ``MQTTMessage`` and an ``MQTTMessageInfo`` (with a
``threading.Condition``) for every message, keeps it in ``_out_messages`` for a resend
that never happens here (every connection attempt gets a fresh client and the outbox
resends), writes a QoS 0 PUBLISH with a ``send`` of its own and tells of it with a new
``ReasonCode`` and ``Properties``, and its PUBACK handler builds those too and takes
three locks per packet. The lane encodes a QoS 0 or 1 PUBLISH itself, numbers it with
paho's own message id counter and queues it in paho's output queue as a packet paho
leaves alone once written (so order with everything else paho sends holds, and the
bridge joins it with the others into one ``send``). It answers a PUBACK with the
message id and the reason code's value alone, and a QoS 0 publish once paho's queue
has been written out.

paho keeps the rest: QoS 2, subscriptions, keepalive, and PUBACKs of messages in its
own ``_out_messages``. Without the private names this uses (``_last_mid``,
``_packet_queue``, ``_handle_pubackcomp``, ``_in_packet``, ``_out_messages``,
``_out_packet``) there is no lane and paho does everything.
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
type WrittenHandler = Callable[[list[int]], None]  # message ids of QoS 0 publishes

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
    "_out_packet",
    "_sock",
    "_last_mid",
)


def encode_publish(  # noqa: PLR0913
    topic: bytes, payload: bytes, mid: int, *, retain: bool, v5: bool, qos: int = 1
) -> bytes:
    """Return one QoS 0 or 1 PUBLISH (MQTT 3.1.1, or 5 without properties).

    A QoS 0 PUBLISH carries no message id (``mid`` is not written).
    """
    first = _PUBLISH | qos << 1 | retain
    length = 2 + len(topic) + (2 if qos else 0) + (1 if v5 else 0) + len(payload)
    if length < _ONE_BYTE_LENGTH:  # most telemetry
        return b"".join(
            (
                _SHORT_HEAD.pack(first, length, len(topic)),
                topic,
                _MID.pack(mid) if qos else b"",
                b"\0" if v5 else b"",  # no properties
                payload,
            )
        )
    header = bytearray((first,))
    while True:  # the remaining length, 7 bits a byte
        byte, length = length & 0x7F, length >> 7
        header.append(byte | 0x80 if length else byte)
        if not length:
            break
    header += _MID.pack(len(topic))
    header += topic
    if qos:
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
    """One paho client's QoS 0/1 publishes and its bare PUBACK/PUBCOMP handling."""

    __slots__ = ("_mqttc", "_on_ack", "_on_written", "_unwritten", "_v5")

    def __init__(
        self, mqttc: mqtt.Client, on_ack: AckHandler, on_written: WrittenHandler
    ) -> None:
        """Take over ``mqttc``'s PUBACK/PUBCOMP handling; acks of ours go to on_ack.

        ``on_written`` gets the ids of QoS 0 publishes once they are written.
        """
        self._mqttc = mqttc
        self._on_ack = on_ack
        self._on_written = on_written
        self._unwritten: list[int] = []
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

    def publish(
        self, topic: bytes, payload: bytes, *, retain: bool, qos: int = 1
    ) -> int:
        """Queue a QoS 0 or 1 PUBLISH on ``topic`` (UTF-8); return its message id.

        A QoS 0 publish's id is only ours (it is not sent): ``written`` tells it.
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
        packet = encode_publish(
            topic, payload, mid, retain=retain, v5=self._v5, qos=qos
        )
        # Queued as QoS 1 whatever it is: paho then does nothing once it is written
        # (for a QoS 0 one it would call on_publish with an MQTTMessageInfo).
        mqttc._packet_queue(_PUBLISH, packet, mid, 1)  # noqa: SLF001
        if not qos:
            self._unwritten.append(mid)
        return mid

    def written(self) -> None:
        """Tell of the QoS 0 publishes sent, once paho's queue is written out.

        paho calls ``on_socket_unregister_write`` then, and also while closing the
        socket: whatever is still queued was not sent, and its waiters learn of the
        lost link instead.
        """
        mqttc = self._mqttc
        if not self._unwritten or mqttc._out_packet or mqttc._sock is None:  # noqa: SLF001
            return
        mids, self._unwritten = self._unwritten, []
        self._on_written(mids)

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


def install_lane(
    mqttc: mqtt.Client, on_ack: AckHandler, on_written: WrittenHandler
) -> FastLane | None:
    """Return the client's lane, or None (paho does everything) without its names."""
    return FastLane(mqttc, on_ack, on_written) if has_lane(mqttc) else None
