"""One connection attempt: a fresh paho client, its connect, and the wait for CONNACK.

Each attempt gets a fresh client, so nothing from a lost session is resent behind the
caller's back. The attempt owns that client and, once its socket is up, the
``SocketBridge`` watching it from the loop; ``BrokerConnection`` keeps the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
import socket
import ssl

from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .bridge import SocketBridge
from .config import BrokerConfig
from .errors import BrokerTimeoutError, CloudSyncError
from .fastlane import FastLane, install_lane
from .paho_client import (
    PahoLog,
    blocking_connect,
    connack_error,
    connect_error,
    create_client,
    handshake_error,
)
from .paho_compat import install_fast_messages
from .runtime import Executor
from .tls import build_ssl_context

MAX_PACKET_SIZE = 268_435_455


@dataclass(frozen=True, slots=True)
class PahoCallbacks:
    """The connection's paho callbacks, set on each attempt's client."""

    on_connect: Callable[..., None]
    on_message: Callable[..., None]
    on_ack: Callable[..., None]  # PUBACK/PUBCOMP/UNSUBACK and QoS 0 writes
    on_lane_ack: Callable[[int, int], None]  # the fast lane's PUBACKs: mid, reason
    on_lane_written: Callable[[list[int]], None]  # the lane's QoS 0 publishes, written
    on_suback: Callable[..., None]
    on_disconnect: Callable[..., None]  # set once the socket is on the loop


class Connector:
    """What every attempt of one connection shares: client id, TLS, timeout, callbacks."""

    def __init__(
        self,
        config: BrokerConfig,
        client_id: str,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
        callbacks: PahoCallbacks,
    ) -> None:
        """Keep the settings; the TLS context is built by prepare() when not given."""
        self.config = config
        self.client_id = client_id
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.callbacks = callbacks
        self.paho_log = PahoLog(str(config.url))

    async def prepare(self, executor: Executor) -> None:
        """Check the profile's CONNECT rules; build the TLS context once, off the loop."""
        self.config.profile.check_connection(self.client_id, self.config.keepalive)
        if self.ssl_context is None and self.config.tls:
            self.ssl_context = await executor(build_ssl_context, self.config)


class Attempt:
    """One paho client, from CONNECT until the connection drops it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connector: Connector) -> None:
        """Create the attempt's client with the connection's callbacks."""
        self.config = config = connector.config
        self._loop = loop
        self._timeout = connector.timeout
        self._paho_log = connector.paho_log
        callbacks = connector.callbacks
        self._on_disconnect = callbacks.on_disconnect
        self._ready: asyncio.Future[None] = loop.create_future()
        self._bridge: SocketBridge | None = None
        self.mqttc = mqttc = create_client(
            config, connector.client_id, connector.ssl_context, self._timeout
        )
        mqttc.on_log = self._paho_log.on_log
        # QoS 0/1 publishes go through the lane (paho's client when it is None).
        self.lane: FastLane | None = install_lane(
            mqttc, callbacks.on_lane_ack, callbacks.on_lane_written
        )
        install_fast_messages(mqttc)
        mqttc.on_connect = callbacks.on_connect
        mqttc.on_message = callbacks.on_message
        mqttc.on_publish = callbacks.on_ack
        mqttc.on_subscribe = callbacks.on_suback
        mqttc.on_unsubscribe = callbacks.on_ack

    async def connect(self, executor: Executor) -> None:
        """Resolve, connect, do the TLS handshake and send CONNECT (in the executor)."""
        self._paho_log.connecting(active=True)
        try:
            await executor(blocking_connect, self.mqttc, self.config)
        except OSError as err:  # ssl.SSLError and CertificateError are OSErrors too
            raise connect_error(self.config, err) from err

    async def wait(self, teardown: Callable[[str], None]) -> None:
        """Hand the socket to the loop and wait for CONNACK and resubscription.

        ``teardown`` drops the connection's state when the attempt fails.
        """
        self._watch_socket()
        try:
            async with asyncio.timeout(self._timeout):
                await self._ready
        except TimeoutError as err:
            teardown("no CONNACK in time")
            msg = f"{self.config.url} did not answer CONNECT in time"
            raise BrokerTimeoutError(msg) from err
        except CloudSyncError as err:
            teardown(str(err))
            raise err from None
        finally:
            self._paho_log.connecting(active=False)

    def accept(self, reason: ReasonCode, properties: Properties | None) -> int | None:
        """Judge CONNACK: the broker's packet limit, or None when it refused us."""
        if reason.is_failure:
            self.resolve(connack_error(self.config, reason))
            return None
        limit = getattr(properties, "MaximumPacketSize", None)
        return int(limit) if limit else MAX_PACKET_SIZE

    def resolve(self, error: CloudSyncError | None) -> None:
        """Finish the attempt: connected (None) or failed."""
        if self._ready.done():
            return
        if error is None:
            self._ready.set_result(None)
        else:
            self._ready.set_exception(error)

    def handshake_error(self, reason: ReasonCode | str) -> CloudSyncError:
        """Explain a connection that closed before CONNACK."""
        return handshake_error(self.config, self._paho_log.detail(reason))

    def close(self) -> None:
        """Stop watching the socket and close it."""
        if (bridge := self._bridge) is not None:
            self._bridge = None
            bridge.stop()
        self.close_socket()

    def close_socket(self) -> None:
        """Close the client's socket without paho's callbacks."""
        self.mqttc.on_socket_close = None
        if (sock := self.mqttc.socket()) is not None:
            sock.close()

    def _watch_socket(self) -> None:
        """Hand the connected socket to the event loop."""
        sock = self.mqttc.socket()
        if not isinstance(sock, socket.socket):
            # paho closed it while sending CONNECT in the executor (e.g. a reset).
            msg = "connection closed while connecting"
            raise self.handshake_error(msg)
        # Set only now: paho would call it from the executor thread during connect().
        self.mqttc.on_disconnect = self._on_disconnect
        lane = self.lane
        self._bridge = SocketBridge(
            self._loop,
            self.mqttc,
            lane.ack if lane is not None else None,
            lane.written if lane is not None else None,
        )
        self._bridge.start(sock)
