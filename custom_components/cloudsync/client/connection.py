"""One MQTT broker connection, driven from the asyncio event loop.

paho-mqtt is driven directly, the way Home Assistant's own MQTT client does it: the blocking
DNS/TCP/TLS connect runs in an executor the caller gives, then the socket is watched with
``add_reader``/``add_writer`` and a 1 s timer runs ``loop_misc``. No paho thread is started.
aiomqtt was not used: it connects in the loop's default executor instead of the injected one,
reads one packet per readiness event (TLS records already buffered in the SSL object then wait
for the next packet), and has no reconnect or resubscribe of its own.

Each connection attempt gets a fresh paho client, so nothing from a lost session is resent
behind the caller's back: a publish waiting for its ack when the link drops fails with
``NotConnectedError`` and the caller decides whether to retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
import logging
import random
import socket
import ssl
import threading
from types import MappingProxyType
from typing import Any, TypeVar
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .config import BrokerConfig, Protocol
from .errors import (
    BrokerAuthError,
    BrokerRefusedError,
    BrokerTimeoutError,
    BrokerTLSError,
    BrokerUnreachableError,
    CloudSyncError,
    NotConnectedError,
    PayloadTooLargeError,
    SubscriptionRefusedError,
)
from .tls import build_ssl_context
from .topics import validate_filter, validate_topic

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

type Executor = Callable[..., Awaitable[Any]]
type TaskFactory = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]

MAX_PACKET_SIZE = 268_435_455
RESUBSCRIBE_BATCH = 100
MISC_INTERVAL = 1.0
MAX_PACKETS_PER_READ = 500
# CONNACK codes (v3 return codes mapped by paho, and v5 reason codes) meaning bad credentials.
# 0x85 client id not valid, 0x86 bad user name or password, 0x87 not authorized,
# 0x8A banned, 0x8C bad authentication method (paho maps MQTT 3.1.1 codes onto these).
_AUTH_REASONS = {0x85, 0x86, 0x87, 0x8A, 0x8C}


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message the broker delivered on a subscribed filter."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


def _default_executor(func: Callable[..., _T], *args: Any) -> Awaitable[_T]:
    """Run a blocking call in the loop's default executor."""
    return asyncio.get_running_loop().run_in_executor(None, func, *args)


def _default_task_factory(
    coro: Coroutine[Any, Any, None], name: str
) -> asyncio.Task[None]:
    """Start a task on the running loop."""
    return asyncio.get_running_loop().create_task(coro, name=name)


class BrokerConnection:
    """A long-lived connection to one broker that reconnects and resubscribes by itself."""

    def __init__(  # noqa: PLR0913
        self,
        config: BrokerConfig,
        *,
        executor: Executor | None = None,
        create_task: TaskFactory | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_message: Callable[[ReceivedMessage], None] | None = None,
        on_connection_change: Callable[[bool], None] | None = None,
        connect_timeout: float = 10.0,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        """Prepare the connection; nothing touches the network until connect()."""
        self.config = config
        self.client_id = config.client_id or f"cloudsync-{uuid.uuid4().hex[:12]}"
        self._executor: Executor = executor or _default_executor
        self._create_task: TaskFactory = create_task or _default_task_factory
        self._ssl_context = ssl_context
        self.on_message = on_message
        self._connection_listeners: list[Callable[[bool], None]] = (
            [on_connection_change] if on_connection_change is not None else []
        )
        self._connect_timeout = connect_timeout
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._mqttc: mqtt.Client | None = None
        self._fd: int | None = None
        self._misc_timer: asyncio.TimerHandle | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._connected = False
        self._read_pending = False
        self._reported = False
        self._closing = False
        self._auto_reconnect = False
        self._max_packet = MAX_PACKET_SIZE
        self._subscriptions: dict[str, int] = {}
        self._resubscribe_mids: dict[int, list[str]] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._connect_log: list[str] = []
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        """Return True while CONNACK was accepted and the socket is up."""
        return self._connected

    @property
    def subscriptions(self) -> Mapping[str, int]:
        """Return the tracked filters and their QoS (resubscribed after each reconnect)."""
        return MappingProxyType(self._subscriptions)

    @property
    def pending_acks(self) -> int:
        """Return how many publishes and (un)subscribes wait for the broker."""
        return len(self._pending)

    def add_connection_listener(
        self, listener: Callable[[bool], None]
    ) -> Callable[[], None]:
        """Call ``listener(connected)`` on every change; return a function that stops it."""
        self._connection_listeners.append(listener)
        return lambda: self._connection_listeners.remove(listener)

    def track(self, topic_filter: str, qos: int = 0) -> None:
        """Track a filter without sending anything; it is subscribed on the next CONNACK."""
        validate_filter(topic_filter)
        self._subscriptions[topic_filter] = qos

    async def connect(self) -> None:
        """Connect once, raising a typed error; once connected, reconnect forever."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closing = False
        if self._ssl_context is None and self.config.tls:
            self._ssl_context = await self._executor(build_ssl_context, self.config)
        await self._attempt()
        self._auto_reconnect = True

    def start_reconnecting(self) -> None:
        """Keep trying in the background after connect() failed (e.g. broker down)."""
        self._auto_reconnect = True
        self._start_reconnect()

    def reconnect(self, reason: str) -> None:
        """Drop a link that stopped answering and connect again."""
        if self._mqttc is None or self._closing:
            return
        _LOGGER.warning("Reconnecting to %s: %s", self.config.url, reason)
        self._teardown(reason)
        self._start_reconnect()

    async def disconnect(self) -> None:
        """Close the connection and stop reconnecting; safe to call twice."""
        self._closing = True
        self._auto_reconnect = False
        if (task := self._reconnect_task) is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._reconnect_task = None
        if (mqttc := self._mqttc) is not None and self._connected:
            mqttc.disconnect()
            mqttc.loop_write()
        self._teardown("disconnected")

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        retain: bool = False,
        timeout: float = 10.0,
    ) -> int:
        """Publish and wait for PUBACK/PUBCOMP (QoS 1/2) or the write (QoS 0)."""
        mid, future = self._send_publish(topic, payload, qos, retain=retain)
        if future is None:
            return mid
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError as err:
            msg = f"{self.config.url} did not acknowledge the publish to {topic} within {timeout:g} s"
            raise BrokerTimeoutError(msg) from err
        finally:
            if self._pending.get(mid) is future:
                del self._pending[mid]
        return mid

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False
    ) -> asyncio.Future[Any]:
        """Send a publish now; the future resolves on PUBACK/PUBCOMP or the write.

        It fails with NotConnectedError when the link drops first, and with
        BrokerRefusedError when the broker answers with a failure reason code.
        """
        _mid, future = self._send_publish(topic, payload, qos, retain=retain)
        if future is None:
            assert self._loop is not None  # noqa: S101
            future = self._loop.create_future()
            future.set_result(None)
        return future

    def _send_publish(
        self, topic: str, payload: bytes, qos: int, *, retain: bool
    ) -> tuple[int, asyncio.Future[Any] | None]:
        """Hand a publish to paho; return its mid and the future of its ack (if any)."""
        validate_topic(topic)
        if len(payload) + len(topic.encode()) + 7 > self._max_packet:
            msg = f"payload of {len(payload)} bytes exceeds the broker's packet limit"
            raise PayloadTooLargeError(msg)
        mqttc = self._require_connected()
        info = mqttc.publish(topic, payload, qos, retain)
        self._check_rc(info.rc, "publish")
        if info.is_published():
            return info.mid, None
        assert self._loop is not None  # noqa: S101
        future = self._pending[info.mid] = self._loop.create_future()
        return info.mid, future

    async def subscribe(
        self, topic_filter: str, qos: int = 0, *, timeout: float = 10.0
    ) -> int:
        """Subscribe, check the SUBACK, track the filter and return the granted QoS."""
        validate_filter(topic_filter)
        mqttc = self._require_connected()
        rc, mid = mqttc.subscribe(topic_filter, qos)
        mid = self._check_rc(rc, "subscribe", mid)
        reason: ReasonCode = (
            await self._wait(mid, timeout, f"subscribe to {topic_filter}")
        )[0]
        if reason.is_failure:
            msg = f"broker refused the subscription to {topic_filter}: {reason}"
            raise SubscriptionRefusedError(msg)
        self._subscriptions[topic_filter] = qos
        return int(reason.value)

    async def unsubscribe(self, topic_filter: str, *, timeout: float = 10.0) -> None:
        """Stop tracking a filter and unsubscribe at the broker when connected."""
        self._subscriptions.pop(topic_filter, None)
        if not self._connected or self._mqttc is None:
            return
        rc, mid = self._mqttc.unsubscribe(topic_filter)
        mid = self._check_rc(rc, "unsubscribe", mid)
        await self._wait(mid, timeout, f"unsubscribe from {topic_filter}")

    # -- connecting -------------------------------------------------------------

    async def _attempt(self) -> None:
        """Make one connection attempt and wait until CONNACK and resubscription."""
        assert self._loop is not None  # noqa: S101
        mqttc = self._new_client()
        self._mqttc = mqttc
        self._ready = ready = self._loop.create_future()
        self._connect_log.clear()
        try:
            await self._executor(self._blocking_connect, mqttc)
        except (ssl.SSLError, ssl.CertificateError) as err:
            raise self._fail(BrokerTLSError(f"TLS handshake failed: {err}")) from err
        except OSError as err:
            msg = f"cannot reach {self.config.url}: {err.strerror or err}"
            raise self._fail(BrokerUnreachableError(msg)) from err
        if self._closing or mqttc is not self._mqttc:
            self._close_socket(mqttc)
            msg = "connection closed while connecting"
            raise NotConnectedError(msg)
        self._watch_socket(mqttc)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await ready
        except TimeoutError as err:
            self._teardown("no CONNACK in time")
            msg = f"{self.config.url} did not answer CONNECT in time"
            raise self._fail(BrokerTimeoutError(msg)) from err
        except CloudSyncError as err:
            self._teardown(str(err))
            raise self._fail(err) from None
        finally:
            mqttc.on_log = None

    def _fail(self, err: CloudSyncError) -> CloudSyncError:
        """Remember an attempt's error for diagnostics and return it."""
        self.last_error = str(err)
        return err

    def _new_client(self) -> mqtt.Client:
        """Create a paho client for one attempt with our callbacks."""
        v5 = self.config.protocol is Protocol.MQTTV5
        mqttc = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else True,
        )
        mqttc.connect_timeout = self._connect_timeout
        mqttc.max_inflight_messages_set(65535)
        if self.config.username:
            mqttc.username_pw_set(self.config.username, self.config.password)
        if self.config.tls:
            mqttc.tls_set_context(self._ssl_context)
        mqttc.on_log = self._on_log
        mqttc.on_connect = self._on_connect
        mqttc.on_message = self._on_paho_message
        mqttc.on_publish = self._on_ack
        mqttc.on_subscribe = self._on_suback
        mqttc.on_unsubscribe = self._on_ack
        return mqttc

    def _blocking_connect(self, mqttc: mqtt.Client) -> None:
        """Resolve, connect, do the TLS handshake and send CONNECT (runs in the executor)."""
        mqttc.connect(self.config.host, self.config.port, self.config.keepalive)
        sock = mqttc.socket()
        if isinstance(sock, socket.socket):
            # paho leaves Nagle on, which delays small publishes by tens of ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _watch_socket(self, mqttc: mqtt.Client) -> None:
        """Hand the connected socket to the event loop."""
        assert self._loop is not None  # noqa: S101
        sock = mqttc.socket()
        if not isinstance(sock, socket.socket):
            # paho closed it while sending CONNECT in the executor (e.g. a reset).
            raise self._fail(
                self._handshake_error("connection closed while connecting")
            )
        # Set only now: paho would call it from the executor thread during connect().
        mqttc.on_disconnect = self._on_disconnect
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._on_readable, mqttc)
        mqttc.on_socket_register_write = self._on_register_write
        mqttc.on_socket_unregister_write = self._on_unregister_write
        mqttc.on_socket_close = self._on_socket_close
        if mqttc.want_write():
            self._loop.add_writer(self._fd, self._on_writable, mqttc)
        self._schedule_misc(mqttc)

    def _schedule_misc(self, mqttc: mqtt.Client) -> None:
        """Run paho's keepalive bookkeeping every second."""
        assert self._loop is not None  # noqa: S101
        self._misc_timer = self._loop.call_later(MISC_INTERVAL, self._on_misc, mqttc)

    def _on_misc(self, mqttc: mqtt.Client) -> None:
        """Send PINGREQ when due and drop a connection whose PINGRESP is overdue."""
        self._misc_timer = None
        if mqttc is self._mqttc and mqttc.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._schedule_misc(mqttc)

    def _on_readable(self, mqttc: mqtt.Client) -> None:
        """Read every packet that arrived, up to a bound, then yield to the loop.

        paho's public ``loop_read`` handles one packet per call when nothing is in
        flight, which makes a burst cost one event-loop turn per message (brokers drop
        messages for clients that lag) and leaves TLS records buffered in the SSL object
        unread. paho's own loop calls ``_packet_read`` until it reports no more data;
        so does this (paho is pinned below 3).
        """
        for _ in range(MAX_PACKETS_PER_READ):
            rc = mqttc._packet_read()  # noqa: SLF001
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                mqttc._loop_rc_handle(rc)  # noqa: SLF001
                return
            if mqttc.socket() is None:
                return
        else:
            self._read_buffered_later(mqttc)
        if mqttc.want_write():
            # Send the PUBACKs now: the broker's in-flight window waits for them.
            mqttc.loop_write()

    def _read_buffered_later(self, mqttc: mqtt.Client) -> None:
        """Come back next turn for TLS data the selector cannot see.

        A plain socket with unread data stays readable, so the selector calls again;
        decrypted bytes left in the SSL object do not, so schedule one read for them,
        and never more than one (a pile of pending reads would starve the loop).
        """
        sock = mqttc.socket()
        if (
            self._read_pending
            or self._loop is None
            or mqttc is not self._mqttc
            or not isinstance(sock, ssl.SSLSocket)
            or not sock.pending()
        ):
            return
        self._read_pending = True
        self._loop.call_soon(self._read_buffered, mqttc)

    def _read_buffered(self, mqttc: mqtt.Client) -> None:
        """Run the scheduled read of buffered TLS data."""
        self._read_pending = False
        if mqttc is self._mqttc:
            self._on_readable(mqttc)

    def _on_writable(self, mqttc: mqtt.Client) -> None:
        """Write queued packets."""
        mqttc.loop_write()

    def _on_register_write(
        self, mqttc: mqtt.Client, _userdata: Any, _sock: Any
    ) -> None:
        """Watch the socket for writability while paho has data queued."""
        if self._loop is not None and self._fd is not None and mqttc is self._mqttc:
            self._loop.add_writer(self._fd, self._on_writable, mqttc)

    def _on_unregister_write(
        self, _mqttc: mqtt.Client, _userdata: Any, _sock: Any
    ) -> None:
        """Stop watching for writability."""
        if self._loop is not None and self._fd is not None:
            self._loop.remove_writer(self._fd)

    def _on_socket_close(self, mqttc: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        """Forget the socket paho is closing (always called on the loop thread)."""
        if mqttc is self._mqttc:
            self._unwatch()

    def _unwatch(self) -> None:
        """Remove the socket from the loop and stop the misc timer."""
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = None
        if self._misc_timer is not None:
            self._misc_timer.cancel()
            self._misc_timer = None

    def _close_socket(self, mqttc: mqtt.Client) -> None:
        """Close a client's socket without paho's callbacks."""
        mqttc.on_socket_close = None
        if (sock := mqttc.socket()) is not None:
            sock.close()

    def _teardown(self, reason: str) -> None:
        """Drop the current client, its socket and everything waiting on it."""
        self._unwatch()
        if (mqttc := self._mqttc) is not None:
            self._mqttc = None
            self._close_socket(mqttc)
        self._fail_pending(
            NotConnectedError(f"connection to {self.config.url} {reason}")
        )
        self._set_connected(connected=False)

    # -- paho callbacks (all on the loop thread except on_log) --------------------

    def _on_log(
        self, _mqttc: mqtt.Client, _userdata: Any, level: int, buf: str
    ) -> None:
        """Keep paho's errors while connecting to explain a dropped handshake."""
        if level == mqtt.MQTT_LOG_ERR:
            self._connect_log.append(buf)

    def _on_connect(
        self,
        mqttc: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Accept or refuse the session, then resubscribe every tracked filter."""
        if mqttc is not self._mqttc:
            return
        if reason.is_failure:
            error_cls = (
                BrokerAuthError if reason.value in _AUTH_REASONS else BrokerRefusedError
            )
            self._resolve_ready(
                error_cls(f"{self.config.url} refused the connection: {reason}")
            )
            return
        self._connected = True
        limit = getattr(properties, "MaximumPacketSize", None)
        self._max_packet = int(limit) if limit else MAX_PACKET_SIZE
        self._resubscribe(mqttc)

    def _resubscribe(self, mqttc: mqtt.Client) -> None:
        """Send SUBSCRIBE for all tracked filters, in batches."""
        self._resubscribe_mids.clear()
        items = list(self._subscriptions.items())
        for start in range(0, len(items), RESUBSCRIBE_BATCH):
            batch = items[start : start + RESUBSCRIBE_BATCH]
            rc, mid = mqttc.subscribe(batch)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._resubscribe_mids[mid] = [flt for flt, _qos in batch]
        if not self._resubscribe_mids:
            self._became_ready()

    def _became_ready(self) -> None:
        """Report the connection as up once resubscription finished."""
        self.last_error = None
        self._resolve_ready(None)
        self._set_connected(connected=True)

    def _resolve_ready(self, error: CloudSyncError | None) -> None:
        """Finish the pending connection attempt."""
        if (ready := self._ready) is None or ready.done():
            return
        if error is None:
            ready.set_result(None)
        else:
            ready.set_exception(error)

    def _on_disconnect(
        self,
        mqttc: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        """Fail what waits on this connection and start reconnecting."""
        if mqttc is not self._mqttc:
            return
        self._resolve_ready(self._handshake_error(reason))
        was_connected = self._connected
        self._teardown(f"lost ({reason})")
        if was_connected and not self._closing:
            _LOGGER.warning("Lost connection to %s: %s", self.config.url, reason)
            self._start_reconnect()

    def _handshake_error(self, reason: ReasonCode | str) -> CloudSyncError:
        """Explain a connection that closed before CONNACK."""
        detail = "; ".join(self._connect_log) or str(reason)
        if self.config.tls:
            # A TLS broker that drops the session before CONNACK has, in practice, rejected
            # the client certificate (TLS 1.3 reports that only after the handshake).
            hint = (
                ""
                if self.config.client_cert
                else " (does it require a client certificate?)"
            )
            msg = f"{self.config.url} closed the TLS session before CONNACK{hint}: {detail}"
            return BrokerTLSError(msg)
        return BrokerRefusedError(f"{self.config.url} closed the connection: {detail}")

    def _on_paho_message(
        self, _mqttc: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage
    ) -> None:
        """Pass a delivered message to the listener; a listener error never kills the link."""
        if self.on_message is None:
            return
        try:
            self.on_message(
                ReceivedMessage(msg.topic, msg.payload, msg.qos, msg.retain)
            )
        except Exception:
            _LOGGER.exception("Error handling a message from %s", self.config.url)

    def _on_ack(
        self,
        _mqttc: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason: ReasonCode | list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        """Resolve the future waiting for a PUBACK/PUBCOMP/UNSUBACK (or a QoS 0 write)."""
        if (future := self._pending.pop(mid, None)) is None or future.done():
            return
        first = reason[0] if isinstance(reason, list) and reason else reason
        if isinstance(first, ReasonCode) and first.is_failure:
            future.set_exception(BrokerRefusedError(f"the broker refused it: {first}"))
        else:
            future.set_result(reason)

    def _on_suback(
        self,
        mqttc: mqtt.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        """Resolve a subscribe, or account for one batch of the resubscription."""
        if (filters := self._resubscribe_mids.pop(mid, None)) is None:
            if (
                future := self._pending.pop(mid, None)
            ) is not None and not future.done():
                future.set_result(reasons)
            return
        for topic_filter, reason in zip(filters, reasons, strict=False):
            if reason.is_failure:
                _LOGGER.warning(
                    "%s refused the resubscription to %s: %s",
                    self.config.url,
                    topic_filter,
                    reason,
                )
        if not self._resubscribe_mids and mqttc is self._mqttc:
            self._became_ready()

    # -- helpers ----------------------------------------------------------------

    def _require_connected(self) -> mqtt.Client:
        """Return the live paho client or raise NotConnectedError."""
        if not self._connected or self._mqttc is None:
            msg = f"not connected to {self.config.url}"
            if self.last_error:
                msg = f"{msg}: {self.last_error}"
            raise NotConnectedError(msg)
        return self._mqttc

    def _check_rc(self, rc: MQTTErrorCode, action: str, mid: int | None = 0) -> int:
        """Turn a paho return code into a typed error; return the packet's mid."""
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            return mid
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            msg = f"cannot {action}: not connected to {self.config.url}"
            raise NotConnectedError(msg)
        msg = f"cannot {action}: {mqtt.error_string(rc)}"
        raise CloudSyncError(msg)

    async def _wait(self, mid: int, timeout: float, what: str) -> Any:
        """Wait for the broker's answer to packet ``mid``."""
        assert self._loop is not None  # noqa: S101
        future = self._pending[mid] = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError as err:
            msg = (
                f"{self.config.url} did not acknowledge the {what} within {timeout:g} s"
            )
            raise BrokerTimeoutError(msg) from err
        finally:
            if self._pending.get(mid) is future:
                del self._pending[mid]

    def _fail_pending(self, error: CloudSyncError) -> None:
        """Fail every future waiting for an ack."""
        pending, self._pending = self._pending, {}
        self._resubscribe_mids.clear()
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _set_connected(self, *, connected: bool) -> None:
        """Record the state and tell the listener when it changed."""
        changed = connected != self._reported
        self._connected = connected
        self._reported = connected
        if changed:
            for listener in list(self._connection_listeners):
                listener(connected)

    def _start_reconnect(self) -> None:
        """Start the reconnect loop unless closing or already running."""
        if self._closing or not self._auto_reconnect:
            return
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = self._create_task(
                self._reconnect_loop(), f"cloudsync reconnect {self.config.url}"
            )

    async def _reconnect_loop(self) -> None:
        """Reconnect with exponential backoff and full jitter until it works."""
        for attempt in _count():
            delay = min(self._backoff_max, self._backoff_min * 2**attempt)
            await asyncio.sleep(random.uniform(delay / 2, delay))  # noqa: S311
            if self._closing:
                return
            try:
                await self._attempt()
            except CloudSyncError as err:
                _LOGGER.debug("Reconnect to %s failed: %s", self.config.url, err)
            else:
                _LOGGER.info("Reconnected to %s", self.config.url)
                return


def _count() -> Iterable[int]:
    """Count 0, 1, 2, … capped so the power of two stays small."""
    attempt = 0
    while True:
        yield attempt
        attempt = min(attempt + 1, 16)
