"""One MQTT broker connection, driven from the asyncio event loop.

paho-mqtt is driven directly, the way Home Assistant's own MQTT client does it: the blocking
DNS/TCP/TLS connect runs in an executor the caller gives, then ``SocketBridge`` watches the
socket from the loop. No paho thread is started. aiomqtt was not used: it connects in the
loop's default executor instead of the injected one, reads one packet per readiness event,
and has no reconnect or resubscribe of its own.

Each connection attempt (``Attempt``) gets a fresh paho client, so nothing from a lost
session is resent behind the caller's back: a publish waiting for its ack when the link
drops fails with ``NotConnectedError`` and the caller decides whether to retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
import logging
import ssl
import time
from types import MappingProxyType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .acks import AckCallback, AckTracker, settle_future
from .attempt import MAX_PACKET_SIZE, Attempt, Connector, PahoCallbacks
from .config import BrokerConfig
from .errors import (
    CloudSyncError,
    NotConnectedError,
    PayloadTooLargeError,
    SubscriptionRefusedError,
)
from .metrics import ConnectionMetrics
from .paho_client import check_rc
from .reconnect import Reconnector
from .resubscribe import Resubscription
from .runtime import (
    Executor,
    Listeners,
    TaskFactory,
    default_executor,
    default_task_factory,
    new_client_id,
)
from .takeover import TakeoverReporter
from .throttle import Throttle
from .topics import validate_filter, validate_topic

_LOGGER = logging.getLogger(__name__)
_PAHO_LOGGER = logging.getLogger(f"{__name__}.paho")

type MessageListener = Callable[[ReceivedMessage], None]
type ConnectionListener = Callable[[bool], None]


# Made per message, so not frozen: a frozen dataclass's __init__ sets each field
# through object.__setattr__, 3-5 times the cost. Nothing changes them.
@dataclass(slots=True)
class ReceivedMessage:
    """A message the broker delivered on a subscribed filter."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class BrokerConnection:
    """A long-lived connection to one broker that reconnects and resubscribes by itself."""

    def __init__(  # noqa: PLR0913
        self,
        config: BrokerConfig,
        *,
        executor: Executor | None = None,
        create_task: TaskFactory | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_connection_change: ConnectionListener | None = None,
        connect_timeout: float = 10.0,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        """Prepare the connection; nothing touches the network until connect()."""
        self.config = config
        self.client_id = config.client_id or new_client_id()
        self._executor: Executor = executor or default_executor
        self._message_listeners = Listeners[ReceivedMessage](
            f"messages from {config.url}"
        )
        self._connection_listeners = Listeners[bool](f"the link to {config.url}")
        self._failure_listeners = Listeners[CloudSyncError](
            f"reconnect failures of {config.url}"
        )
        if on_connection_change is not None:
            self._connection_listeners.add(on_connection_change)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: Attempt | None = None  # the latest attempt, until torn down
        profile = config.profile
        self._reconnector = Reconnector(
            self._attempt,
            create_task or default_task_factory,
            str(config.url),
            (max(backoff_min, profile.connect_interval), backoff_max),
            self._failure_listeners.notify,
            floor=profile.connect_interval,
        )
        self._throttle = Throttle(profile.publish_rate, profile.byte_rate)
        self.metrics = ConnectionMetrics()
        self._takeover = TakeoverReporter(str(config.url), self.client_id)
        self._connected = False
        self._reported = False
        self._closing = False
        self._max_packet = MAX_PACKET_SIZE
        self._subscriptions: dict[str, int] = {}
        self._resubscription = Resubscription(
            str(config.url), profile.max_filters_per_subscribe
        )
        self._acks = AckTracker(str(config.url), self.metrics.record)
        callbacks = PahoCallbacks(
            self._on_connect,
            self._on_paho_message,
            self._acks.on_ack,
            self._acks.lane_ack,
            self._acks.lane_written,
            self._on_suback,
            self._on_disconnect,
        )
        self._connector = Connector(
            config, self.client_id, ssl_context, connect_timeout, callbacks
        )
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
        return len(self._acks)

    def add_connection_listener(
        self, listener: ConnectionListener
    ) -> Callable[[], None]:
        """Call ``listener(connected)`` on every change; return a function that stops it."""
        return self._connection_listeners.add(listener)

    def add_failure_listener(
        self, listener: Callable[[CloudSyncError], None]
    ) -> Callable[[], None]:
        """Call ``listener(error)`` when a background reconnect attempt fails.

        Refused credentials (``BrokerAuthError``) are retried too; only the host can
        get new ones.
        """
        return self._failure_listeners.add(listener)

    def add_takeover_listener(
        self, listener: Callable[[bool], None]
    ) -> Callable[[], None]:
        """Call ``listener(True)`` when another client seems to use our client id.

        ``listener(False)`` follows once a session outlives a short one again.
        """
        return self._takeover.add_listener(listener)

    def check_publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Raise when the topic is not valid or the broker's profile refuses the publish."""
        validate_topic(topic)
        self.config.profile.check_publish(topic, payload, qos)

    def check_subscribe(self, topic_filter: str, qos: int) -> None:
        """Raise when the filter is not valid or the broker's profile refuses it."""
        validate_filter(topic_filter)
        others = len(self._subscriptions) - (topic_filter in self._subscriptions)
        self.config.profile.check_subscribe(topic_filter, qos, others)

    @property
    def throttled(self) -> bool:
        """Return True when the profile caps the outbound rate (see wait_turn)."""
        return self._throttle.active

    async def wait_turn(self, size: int) -> None:
        """Wait until the profile's outbound budget lets a publish of ``size`` go."""
        await self._throttle.acquire(size)

    def add_message_listener(self, listener: MessageListener) -> Callable[[], None]:
        """Call ``listener(message)`` for every message; return a function that stops it.

        A listener that raises is logged and does not affect the others or the link.
        """
        return self._message_listeners.add(listener)

    def track(self, topic_filter: str, qos: int = 0) -> None:
        """Track a filter without sending anything; it is subscribed on the next CONNACK."""
        validate_filter(topic_filter)
        self._subscriptions[topic_filter] = qos

    async def connect(self) -> None:
        """Connect once, raising a typed error; once connected, reconnect forever."""
        self._loop = asyncio.get_running_loop()
        self._closing = False
        await self._connector.prepare(self._executor)
        await self._attempt()
        self._reconnector.enabled = True

    def start_reconnecting(self) -> None:
        """Keep trying in the background after connect() failed (e.g. broker down)."""
        self._reconnector.enabled = True
        self._reconnector.start()

    def reconnect(self, reason: str) -> None:
        """Drop a link that stopped answering and connect again."""
        if self._link is None or self._closing:
            return
        _LOGGER.warning("Reconnecting to %s: %s", self.config.url, reason)
        self._teardown(reason)
        self._reconnector.start()

    async def disconnect(self) -> None:
        """Close the connection and stop reconnecting; safe to call twice."""
        self._closing = True
        await self._reconnector.stop()
        if (link := self._link) is not None and self._connected:
            link.mqttc.disconnect()
            link.mqttc.loop_write()
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
        self.check_publish(topic, payload, qos)
        await self._throttle.acquire(len(payload))
        mid, future = self._send_publish(
            topic, payload, qos, retain=retain, timeout=timeout
        )
        if future is not None:
            try:
                await future
            except asyncio.CancelledError:
                self._acks.forget(mid)
                raise
        return mid

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False
    ) -> asyncio.Future[Any]:
        """Send a publish now; the future resolves on PUBACK/PUBCOMP or the write.

        It fails with NotConnectedError when the link drops first, and with
        BrokerRefusedError when the broker answers with a failure reason code.
        """
        return self.send_publish(topic, payload, qos, retain=retain)[1]

    def send_publish(
        self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False
    ) -> tuple[int, asyncio.Future[Any]]:
        """Send a publish now; return its mid and the future ``publish_nowait`` gives."""
        mid, future = self._send_publish(topic, payload, qos, retain=retain)
        if future is None:
            assert self._loop is not None  # noqa: S101
            future = self._loop.create_future()
            future.set_result(None)
        return mid, future

    def send_publish_then(  # noqa: PLR0913
        self,
        topic: str,
        payload: bytes,
        qos: int,
        done: AckCallback,
        *,
        retain: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Send a publish now and return its mid; ``done(error)`` settles it later.

        ``done`` gets None on PUBACK/PUBCOMP (QoS 1/2) or once written (QoS 0), and
        the error otherwise (as publish_nowait's future would, or BrokerTimeoutError
        once ``timeout`` seconds passed without an answer); it is never called
        before this returns. Raises like publish_nowait (then ``done`` is not called).
        """
        return self._send_publish(
            topic, payload, qos, retain=retain, done=done, timeout=timeout
        )[0]

    def _send_publish(  # noqa: PLR0913
        self,
        topic: str,
        payload: bytes,
        qos: int,
        *,
        retain: bool,
        done: AckCallback | None = None,
        timeout: float | None = None,
    ) -> tuple[int, asyncio.Future[Any] | None]:
        """Hand a publish to the lane or paho; return its mid and its ack's future.

        With ``done`` there is no future: ``done`` is called instead, never before
        this returns. With ``timeout`` the future fails with BrokerTimeoutError when
        no answer came in that many seconds.
        """
        validate_topic(topic)
        topic_bytes = topic.encode()
        if len(payload) + len(topic_bytes) + 7 > self._max_packet:
            msg = f"payload of {len(payload)} bytes exceeds the broker's packet limit"
            raise PayloadTooLargeError(msg)
        mqttc = self._require_connected()
        if qos < 2 and (lane := self._link.lane) is not None:  # type: ignore[union-attr]  # noqa: PLR2004
            mid = lane.publish(topic_bytes, payload, retain=retain, qos=qos)
            self.metrics.sent += 1
            if done is not None:
                self._acks.expect_call(mid, done, timeout, topic)
                return mid, None
            assert self._loop is not None  # noqa: S101
            future: asyncio.Future[Any] = self._loop.create_future()
            self._acks.expect_call(mid, partial(settle_future, future), timeout, topic)
            return mid, future
        info = mqttc.publish(topic, payload, qos, retain)
        check_rc(info.rc, "publish", self.config)
        self.metrics.sent += 1
        if info.is_published():  # a QoS 0 publish, already written
            if done is not None:
                self._loop.call_soon(done, None)  # type: ignore[union-attr]
            return info.mid, None
        assert self._loop is not None  # noqa: S101
        future = (
            self._acks.expect_publish(self._loop, info.mid, timeout, topic)
            if timeout is not None
            else self._expect(info.mid)
        )
        if qos:
            sent_at = time.monotonic()
            future.add_done_callback(lambda acked: self.metrics.acked(sent_at, acked))
        if done is not None:
            future.add_done_callback(lambda settled: done(_ack_error(settled)))
            return info.mid, None
        return info.mid, future

    async def subscribe(
        self, topic_filter: str, qos: int = 0, *, timeout: float = 10.0
    ) -> int:
        """Subscribe, check the SUBACK, track the filter and return the granted QoS."""
        self.check_subscribe(topic_filter, qos)
        mqttc = self._require_connected()
        rc, mid = mqttc.subscribe(topic_filter, qos)
        mid = check_rc(rc, "subscribe", self.config, mid)
        reason: ReasonCode = (
            await self._acks.wait(
                mid, self._expect(mid), timeout, f"subscribe to {topic_filter}"
            )
        )[0]
        if reason.is_failure:
            msg = f"broker refused the subscription to {topic_filter}: {reason}"
            raise SubscriptionRefusedError(msg)
        self._subscriptions[topic_filter] = qos
        return int(reason.value)

    async def unsubscribe(self, topic_filter: str, *, timeout: float = 10.0) -> None:
        """Stop tracking a filter and unsubscribe at the broker when connected."""
        self._subscriptions.pop(topic_filter, None)
        if not self._connected or (link := self._link) is None:
            return
        rc, mid = link.mqttc.unsubscribe(topic_filter)
        mid = check_rc(rc, "unsubscribe", self.config, mid)
        await self._acks.wait(
            mid, self._expect(mid), timeout, f"unsubscribe from {topic_filter}"
        )

    # -- connecting -------------------------------------------------------------

    async def _attempt(self) -> None:
        """Make one connection attempt and wait until CONNACK and resubscription."""
        assert self._loop is not None  # noqa: S101
        self._link = attempt = Attempt(self._loop, self._connector)
        await self._recording(attempt.connect(self._executor))
        if self._closing or attempt is not self._link:
            attempt.close_socket()
            msg = "connection closed while connecting"
            raise NotConnectedError(msg)
        await self._recording(attempt.wait(self._teardown))

    async def _recording(self, step: Awaitable[None]) -> None:
        """Await a step of an attempt; remember its error for diagnostics."""
        try:
            await step
        except CloudSyncError as err:
            self.last_error = str(err)
            raise

    def _teardown(self, reason: str) -> None:
        """Drop the current client, its socket and everything waiting on it."""
        if (link := self._link) is not None:
            self._link = None
            link.close()
        self._resubscription.cancel()
        self._takeover.stop()
        self._acks.fail_all(
            NotConnectedError(f"connection to {self.config.url} {reason}")
        )
        self._set_connected(connected=False)

    # -- paho callbacks (on the loop thread) -------------------------------------

    def _on_connect(
        self,
        mqttc: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Accept or refuse the session, then resubscribe every tracked filter."""
        if (link := self._link) is None or mqttc is not link.mqttc:
            return
        if (max_packet := link.accept(reason, properties)) is None:
            return
        self._connected = True
        self.metrics.connects += 1
        assert self._loop is not None  # noqa: S101
        self._takeover.connected(self._loop)
        # paho formats every line it hands to on_log; a logger is asked its level
        # first, so once connected nothing is formatted per packet.
        mqttc.on_log = None
        mqttc.enable_logger(_PAHO_LOGGER)
        self._max_packet = max_packet
        if self._resubscription.start(mqttc, self._subscriptions):
            self._became_ready(link)

    def _became_ready(self, link: Attempt) -> None:
        """Report the connection as up once resubscription finished."""
        self.last_error = None
        link.resolve(None)
        self._set_connected(connected=True)

    def _on_disconnect(
        self,
        mqttc: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        """Fail what waits on this connection and start reconnecting."""
        if (link := self._link) is None or mqttc is not link.mqttc:
            return
        link.resolve(link.handshake_error(reason))
        was_connected = self._connected
        self._teardown(f"lost ({reason})")
        if was_connected and not self._closing:
            _LOGGER.warning("Lost connection to %s: %s", self.config.url, reason)
            self._takeover.lost(reason, int(reason.value))
            self._reconnector.start(skip=self._takeover.watch.streak)

    def _on_paho_message(
        self, _mqttc: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage
    ) -> None:
        """Pass a delivered message to the listeners; one that raises is logged."""
        self.metrics.received += 1
        self._message_listeners.notify(
            ReceivedMessage(msg.topic, msg.payload, msg.qos, msg.retain)
        )

    def _on_suback(
        self,
        mqttc: mqtt.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        """Resolve a subscribe, or account for one batch of the resubscription."""
        if not self._resubscription.owns(mid):
            self._acks.answer(mid, reasons)
        elif (
            self._resubscription.acknowledged(mid, reasons)
            and (link := self._link) is not None
            and mqttc is link.mqttc
        ):
            self._became_ready(link)

    # -- helpers ----------------------------------------------------------------

    def _require_connected(self) -> mqtt.Client:
        """Return the live paho client or raise NotConnectedError."""
        if not self._connected or self._link is None:
            msg = f"not connected to {self.config.url}"
            if self.last_error:
                msg = f"{msg}: {self.last_error}"
            raise NotConnectedError(msg)
        return self._link.mqttc

    def _expect(self, mid: int) -> asyncio.Future[Any]:
        """Return a future the broker's answer to packet ``mid`` resolves."""
        assert self._loop is not None  # noqa: S101
        return self._acks.expect(self._loop, mid)

    def _set_connected(self, *, connected: bool) -> None:
        """Record the state and tell the listener when it changed."""
        changed = connected != self._reported
        self._connected = connected
        self._reported = connected
        if changed:
            self._connection_listeners.notify(connected)


def _ack_error(future: asyncio.Future[Any]) -> CloudSyncError | None:
    """Return the error a settled ack future carries, as an AckCallback gets it."""
    if future.cancelled():
        return NotConnectedError("cancelled")
    error = future.exception()
    if error is None or isinstance(error, CloudSyncError):
        return error
    return CloudSyncError(str(error))
