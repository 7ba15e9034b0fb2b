"""The asyncio side of one paho client's socket: readers, writers and the misc timer.

This is how Home Assistant's own MQTT client drives paho without a paho thread: the
connected socket is watched with ``add_reader`` and a 1 s timer runs ``loop_misc``
(keepalive pings, overdue PINGRESP). What paho queues is written once at the end of
the loop turn, many packets with one send (paho_compat.write_packets); ``add_writer``
waits only while the socket's buffer is full. One bridge serves one connection
attempt; stopping it leaves the socket to its owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import socket
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from .paho_compat import (
    ReadOutcome,
    has_buffered,
    install_buffered_reads,
    read_packets,
    write_packets,
)

MISC_INTERVAL = 1.0
# Packets read per event-loop turn. Each turn of a burst delays every other callback of
# the loop by its length, and an HTTP request takes several turns: at 500 (≈12 ms a turn)
# GET /api/ p99 during a 20,000-message burst was 192 ms; at 64 (≈1.5 ms) it was 12 ms
# in a quick bench, and ingest did not slow (scripts/bench, recorder phase).
MAX_PACKETS_PER_READ = 64
# Linux delays the ACK of some small segments by up to 40 ms (one as large as the one
# before it; any while the socket counts as interactive), and a broker with Nagle on
# (mosquitto's default) keeps its next write back until that ACK: a steady stream then
# stalls for 40 ms now and then (websocket push p99 was ~40 ms in scripts/bench).
# Asking for the ACK after each read (one setsockopt) removes the holds.
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class SocketBridge:
    """Feeds one paho client from the event loop until stopped."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        mqttc: mqtt.Client,
        bare_ack: Callable[[int], None] | None = None,
        written: Callable[[], None] | None = None,
    ) -> None:
        """Bridge ``mqttc``, whose socket is connected; call start() to begin.

        ``bare_ack(mid)`` takes the bare PUBACKs read_packets finds in memory;
        ``written()`` is called whenever paho's queue has been written out.
        """
        self._loop = loop
        self._mqttc = mqttc
        self._bare_ack = bare_ack
        self._written = written
        self._fd: int | None = None
        self._sock: socket.socket | None = None
        self._misc_timer: asyncio.TimerHandle | None = None
        self._read_pending = False
        self._flush: asyncio.Handle | None = None
        self._watching_write = False  # add_writer is on (the socket's buffer was full)

    @property
    def active(self) -> bool:
        """Return True while the socket is watched."""
        return self._fd is not None

    def start(self, sock: socket.socket) -> None:
        """Watch the socket and start the misc timer."""
        mqttc = self._mqttc
        self._fd = sock.fileno()
        self._sock = sock if _TCP_QUICKACK is not None else None
        install_buffered_reads(mqttc)
        self._loop.add_reader(self._fd, self._on_readable)
        mqttc.on_socket_register_write = self._on_register_write
        mqttc.on_socket_unregister_write = self._on_unregister_write
        mqttc.on_socket_close = self._on_socket_close
        if mqttc.want_write():
            self._write_soon()
        self._schedule_misc()

    def stop(self) -> None:
        """Stop watching the socket and cancel the timer; safe to call twice."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._watching_write = False
            self._fd = None
            self._sock = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._misc_timer is not None:
            self._misc_timer.cancel()
            self._misc_timer = None

    def _schedule_misc(self) -> None:
        self._misc_timer = self._loop.call_later(MISC_INTERVAL, self._on_misc)

    def _on_misc(self) -> None:
        """Send PINGREQ when due; paho drops a connection whose PINGRESP is overdue."""
        self._misc_timer = None
        if self.active and self._mqttc.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._schedule_misc()

    def _on_readable(self) -> None:
        """Read every packet that arrived, up to a bound, then yield to the loop."""
        outcome = read_packets(self._mqttc, MAX_PACKETS_PER_READ, self._bare_ack)
        if outcome is ReadOutcome.CLOSED:
            return
        self._ack_now()
        if outcome is ReadOutcome.MORE:
            self._read_buffered_later()
        if self._mqttc.want_write():
            # Send the PUBACKs now: the broker's in-flight window waits for them.
            self._write()

    def _ack_now(self) -> None:
        """Acknowledge what was read now, not after the kernel's delayed-ACK timer."""
        if (sock := self._sock) is None or _TCP_QUICKACK is None:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:
            self._sock = None  # not TCP (or not Linux's): the kernel's timing stays

    def _read_buffered_later(self) -> None:
        """Come back next turn for data the selector cannot see.

        A socket with unread data stays readable, so the selector calls again; bytes
        already taken from it (decrypted ones in the SSL object, or the plain
        socket's read buffer) do not, so schedule one read for them, and never more
        than one (a pile of pending reads would starve the loop).
        """
        sock = self._mqttc.socket()
        if (
            self._read_pending
            or not self.active
            or not (
                has_buffered(self._mqttc)
                or (isinstance(sock, ssl.SSLSocket) and sock.pending())
            )
        ):
            return
        self._read_pending = True
        self._loop.call_soon(self._read_buffered)

    def _read_buffered(self) -> None:
        self._read_pending = False
        if self.active:
            self._on_readable()

    def _write_soon(self) -> None:
        """Write at the end of this loop turn, with what else gets queued until then."""
        if self._flush is None and self.active:
            self._flush = self._loop.call_soon(self._write)

    def _write(self) -> None:
        """Write what paho has queued; watch for writability if the socket is full."""
        if self._flush is not None:
            self._flush.cancel()  # when called directly, before the scheduled write
            self._flush = None
        if not self.active:
            return
        write_packets(self._mqttc)
        if self._fd is not None and self._mqttc.want_write():
            self._loop.add_writer(self._fd, self._on_writable)
            self._watching_write = True

    def _on_writable(self) -> None:
        write_packets(self._mqttc)

    def _on_register_write(
        self, _mqttc: mqtt.Client, _userdata: Any, _sock: Any
    ) -> None:
        """Paho queued data (it says so once until its queue is empty again)."""
        self._write_soon()

    def _on_unregister_write(
        self, _mqttc: mqtt.Client, _userdata: Any, _sock: Any
    ) -> None:
        if self._watching_write and self._fd is not None:
            self._loop.remove_writer(self._fd)
        self._watching_write = False
        if self._written is not None:
            self._written()

    def _on_socket_close(self, _mqttc: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        """Paho is closing the socket (always on the loop thread)."""
        self.stop()
