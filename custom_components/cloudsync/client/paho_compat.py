"""paho-mqtt's private calls, kept in one place, each with a public fallback.

Reading a burst through paho's public ``loop_read`` costs one event-loop turn per packet
when nothing is in flight, and leaves TLS records already decrypted in the SSL object
unread until the next packet arrives. paho's own thread loop calls ``_packet_read`` until
it reports no more data; so does ``read_packets`` while paho still has that method.

QoS 1 publishes and their PUBACKs bypass paho's per-message objects (fastlane.py);
``read_packets`` hands the bare PUBACKs it finds in a BufferedRecv's memory to the lane
without paho's reader.

paho writes every queued packet with a ``send`` of its own. ``write_packets`` sends the
packets at the head of the queue that need nothing from paho once written (acks,
QoS 1/2 publishes, (un)subscribes, pings) with one ``send`` (plain TCP), then lets paho's
``loop_write`` write the rest (QoS 0 publishes, DISCONNECT, what did not fit); when
nothing is left it ends as loop_write would, telling the host the socket needs no
writing.

paho also reads every packet with two or three ``recv`` calls (type, length, body).
``install_buffered_reads`` gives the client a reader that takes what the
socket holds with one ``recv`` and hands paho its bytes from memory.

For every message paho also walks its matcher of per-filter callbacks before calling
``on_message``; ``install_fast_messages`` calls ``on_message`` directly while no
per-filter callback is registered (cloudsync registers none).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, auto
import logging
import socket
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes

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


def read_packets(
    mqttc: mqtt.Client, limit: int, bare_ack: Callable[[int], None] | None = None
) -> ReadOutcome:
    """Read and handle up to ``limit`` packets that are waiting on the socket.

    With ``bare_ack``, bare PUBACKs already in a BufferedRecv's memory go to it
    (``bare_ack(mid)``) without paho; ``ACKS_PER_PACKET`` of them count as one packet.
    """
    if not USE_PRIVATE_READER:
        return _read_public(mqttc)
    reader = mqttc.__dict__.get("_sock_recv") if bare_ack is not None else None
    if not isinstance(reader, BufferedRecv):
        reader = None
    budget = limit * ACKS_PER_PACKET
    acked = False
    if reader is not None:
        reader.drained = False  # the selector says the socket has data again
    try:
        while budget > 0:
            if reader is not None and not mqttc._in_packet["command"]:  # noqa: SLF001 - between packets
                if (taken := reader.head_acks(bare_ack, budget)) is None:  # type: ignore[arg-type]
                    return ReadOutcome.DRAINED
                if taken:
                    budget -= taken
                    acked = True
                    continue
            rc = mqttc._packet_read()  # noqa: SLF001
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                # paho also stops a huge packet's body after 100 reads, maybe from memory.
                return ReadOutcome.MORE if has_buffered(mqttc) else ReadOutcome.DRAINED
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                mqttc._loop_rc_handle(rc)  # noqa: SLF001
                return ReadOutcome.CLOSED
            if mqttc.socket() is None:
                return ReadOutcome.CLOSED
            budget -= ACKS_PER_PACKET
    finally:
        if acked:  # what paho's reads record, for its keepalive
            mqttc._last_msg_in = time.monotonic()  # noqa: SLF001
    return ReadOutcome.MORE


def _read_public(mqttc: mqtt.Client) -> ReadOutcome:
    """Read through the public API (paho handles its own errors there)."""
    rc = mqttc.loop_read()
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mqttc.socket() is None:
        return ReadOutcome.CLOSED
    return ReadOutcome.MORE


_CHUNK = 65536
_PUBACK = PacketTypes.PUBACK << 4
_BARE = 2  # the remaining length of a PUBACK with the message id alone
# Bare PUBACKs handled from memory per packet of read_packets' limit: one costs
# about a twentieth of a packet paho reads and handles.
ACKS_PER_PACKET = 16


class BufferedRecv:
    """paho's ``_sock_recv`` with one large recv, then the bytes from memory.

    The socket is still read by paho's own ``_sock_recv`` (``recv``), which turns a
    TLS socket's want-read/want-write into paho's BlockingIOError.

    ``drained`` is True once a recv of a plain socket returned less than it asked for:
    the socket held no more then, so the next recv would most likely block (the
    selector calls again when more arrives). A TLS socket returns one record a recv,
    so it never says so.
    """

    __slots__ = ("_data", "_end", "_plain", "_pos", "_recv", "drained")

    def __init__(self, recv: Callable[[int], bytes], *, plain: bool = False) -> None:
        """Read through ``recv``, paho's ``_sock_recv`` of the client.

        ``plain``: the socket is plain TCP (a short recv means it was emptied).
        """
        self._recv = recv
        self._plain = plain
        self._data = b""
        self._pos = 0
        # How the socket ended when fill() read it (b"": closed), for paho's next read.
        self._end: OSError | bytes | None = None
        self.drained = False

    @property
    def buffered(self) -> bool:
        """Return True while bytes read from the socket wait for paho."""
        return self._pos < len(self._data)

    def fill(self) -> bool:
        """Read what the socket holds into the empty buffer; False when it holds none.

        A closed or failed socket returns True: paho's next read meets the end (an
        empty read, or the error) as it would have from the socket.
        """
        try:
            data = self._recv(_CHUNK)
        except BlockingIOError:
            return False
        except OSError as err:
            data, self._end = b"", err
        else:
            if not data:
                self._end = data
        self._keep(data)
        return True

    def _keep(self, data: bytes) -> None:
        self._data, self._pos = data, 0
        self.drained = self._plain and 0 < len(data) < _CHUNK

    def __call__(self, bufsize: int) -> bytes:
        """Return up to ``bufsize`` bytes; raise BlockingIOError when none are there."""
        data, pos = self._data, self._pos
        if pos >= len(data):
            if (ended := self._end) is not None:
                self._end = None
                if isinstance(ended, OSError):
                    raise ended
                return ended  # closed by the broker: paho handles it
            if bufsize >= _CHUNK:
                self.drained = False
                return self._recv(bufsize)  # a large body: straight into paho's packet
            data = self._recv(_CHUNK)
            if not data:
                return data  # closed by the broker: paho handles it
            self._keep(data)
            pos = 0
        end = pos + bufsize
        self._pos = min(end, len(data))
        return data[pos:end]

    def head_acks(self, ack: Callable[[int], None], limit: int) -> int | None:
        """Take the bare PUBACKs at the head, reading the socket if nothing is buffered.

        Return how many were taken, or None when the socket had nothing (or the last
        recv emptied it: another one would only block).
        """
        if not self.buffered and (self.drained or not self.fill()):
            return None
        return self.take_acks(ack, limit)

    def take_acks(self, ack: Callable[[int], None], limit: int) -> int:
        """Hand up to ``limit`` bare PUBACKs at the head of the buffer to ``ack``.

        Return how many were taken; the first other byte (or a PUBACK not read whole
        yet) stops it, and paho reads from there.
        """
        data, pos = self._data, self._pos
        end = len(data) - 3
        taken = 0
        while (
            taken < limit
            and pos < end
            and data[pos] == _PUBACK
            and data[pos + 1] == _BARE
        ):
            self._pos = pos + 4  # before the call: it may raise
            ack((data[pos + 2] << 8) | data[pos + 3])
            pos += 4
            taken += 1
        return taken


def install_buffered_reads(mqttc: mqtt.Client) -> bool:
    """Read the client's packets through a BufferedRecv; False when not used.

    A TLS socket returns at most one record (16 KiB) a recv; the bridge also watches
    what its SSL object holds.
    """
    recv = getattr(mqttc, "_sock_recv", None)
    if not (
        USE_PRIVATE_READER
        and callable(recv)
        and not isinstance(recv, BufferedRecv)
        and type(getattr(mqttc, "_sock", None)) in (socket.socket, ssl.SSLSocket)
    ):
        return False
    mqttc._sock_recv = BufferedRecv(  # type: ignore[method-assign]  # noqa: SLF001
        recv,
        plain=type(mqttc._sock) is socket.socket,  # noqa: SLF001
    )
    return True


def has_buffered(mqttc: mqtt.Client) -> bool:
    """Return True when a BufferedRecv holds bytes paho has not read yet."""
    reader = mqttc.__dict__.get("_sock_recv")
    return isinstance(reader, BufferedRecv) and reader.buffered


def has_private_writer(client_class: type[Any] = mqtt.Client) -> bool:
    """Return True when ``client_class`` has the private calls ``write_packets`` uses."""
    return all(
        callable(getattr(client_class, name, None))
        for name in ("_sock_send", "_call_socket_unregister_write")
    )


USE_PRIVATE_WRITER = has_private_writer()
# Packet types (high nibble) paho does nothing for once their bytes are written; a
# publish is one of them at QoS 1/2 (its PUBACK/PUBCOMP completes it).
_PUBLISH = PacketTypes.PUBLISH << 4
_QUIET_WRITES = frozenset(
    packet << 4
    for packet in (
        PacketTypes.PUBACK,
        PacketTypes.PUBREC,
        PacketTypes.PUBREL,
        PacketTypes.PUBCOMP,
        PacketTypes.SUBSCRIBE,
        PacketTypes.UNSUBSCRIBE,
        PacketTypes.PINGREQ,
    )
)


def write_packets(mqttc: mqtt.Client) -> MQTTErrorCode:
    """Write what paho has queued, the quiet packets at its head with one send."""
    # Plain TCP only: after a partial TLS write OpenSSL wants the same buffer again,
    # and paho would retry with the first packet alone.
    if USE_PRIVATE_WRITER and type(getattr(mqttc, "_sock", None)) is socket.socket:
        _send_joined(mqttc)
        if not mqttc._out_packet:  # noqa: SLF001 - all written: what loop_write ends with
            mqttc._call_socket_unregister_write()  # noqa: SLF001
            return MQTTErrorCode.MQTT_ERR_SUCCESS
    return mqttc.loop_write()


def _send_joined(mqttc: mqtt.Client) -> None:
    """Send the head's quiet packets in one call; leave any error to loop_write."""
    queue = getattr(mqttc, "_out_packet", None)
    if not queue:
        return
    chunks = []
    for packet in queue:
        command = packet["command"] & 0xF0
        if command not in _QUIET_WRITES and not (command == _PUBLISH and packet["qos"]):
            break
        pos = packet["pos"]
        chunks.append(packet["packet"][pos:] if pos else packet["packet"])
    if not chunks:
        return
    try:
        sent = mqttc._sock_send(b"".join(chunks))  # noqa: SLF001
    except OSError:
        return  # would block, or the link broke: paho's loop_write meets it too
    while sent > 0:
        packet = queue[0]
        step = min(sent, packet["to_process"])
        packet["pos"] += step
        packet["to_process"] -= step
        sent -= step
        if not packet["to_process"]:
            queue.popleft()


def install_fast_messages(mqttc: mqtt.Client) -> bool:
    """Call on_message without paho's matcher walk while no filter callback exists.

    Return False (paho's handler stays) when this paho lacks the private names.
    """
    root = getattr(getattr(mqttc, "_on_message_filtered", None), "_root", None)
    if not (
        callable(getattr(mqttc, "_handle_on_message", None))
        and isinstance(getattr(root, "_children", None), dict)
        and hasattr(mqttc, "_in_callback_mutex")
        and callable(getattr(mqttc, "_easy_log", None))
    ):
        return False
    paho_handler: Callable[[mqtt.MQTTMessage], None] = mqttc._handle_on_message  # noqa: SLF001
    children: dict[Any, Any] = root._children  # type: ignore[union-attr]  # noqa: SLF001

    def handle_on_message(message: mqtt.MQTTMessage) -> None:
        on_message = mqttc.on_message
        if children or on_message is None:
            paho_handler(message)
            return
        with mqttc._in_callback_mutex:  # noqa: SLF001
            try:
                on_message(mqttc, mqttc.user_data_get(), message)
            except Exception as err:
                mqttc._easy_log(  # noqa: SLF001
                    mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err
                )
                if not mqttc.suppress_exceptions:
                    raise

    mqttc._handle_on_message = handle_on_message  # type: ignore[method-assign]  # noqa: SLF001
    return True
