"""Creating and connecting paho clients, and reading CONNACK refusals."""

from __future__ import annotations

from datetime import UTC, datetime
import logging
import socket
import ssl
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from .config import BrokerConfig, Protocol
from .errors import (
    BrokerAuthError,
    BrokerRefusedError,
    BrokerTLSError,
    BrokerUnreachableError,
    CertificateError,
    CloudSyncError,
    ConnectionRefusedByHostError,
    ConnectTimeoutError,
    NotConnectedError,
    UnknownHostError,
)
from .tls import certificate_expiry

# CONNACK codes (v3 return codes mapped by paho, and v5 reason codes) meaning bad credentials.
# 0x85 client id not valid, 0x86 bad user name or password, 0x87 not authorized,
# 0x8A banned, 0x8C bad authentication method (paho maps MQTT 3.1.1 codes onto these).
_LOGGER = logging.getLogger(__name__)

AUTH_REASONS = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C})
# 0: no limit in paho (the outbox keeps its own window). Any limit makes paho scan
# every message in flight on each PUBACK, looking for queued ones to send.
MAX_INFLIGHT = 0


def create_client(
    config: BrokerConfig,
    client_id: str,
    ssl_context: ssl.SSLContext | None,
    connect_timeout: float,
) -> mqtt.Client:
    """Return a paho client for one connection attempt (callbacks not yet set)."""
    v5 = config.protocol is Protocol.MQTTV5
    mqttc = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else True,
    )
    mqttc.connect_timeout = connect_timeout
    # A raising callback is reported through on_log instead of escaping through paho.
    mqttc.suppress_exceptions = True
    mqttc.max_inflight_messages_set(MAX_INFLIGHT)
    if config.username:
        mqttc.username_pw_set(config.username, config.password)
    if config.tls:
        mqttc.tls_set_context(ssl_context)
    if (will := config.will) is not None:
        mqttc.will_set(will.topic, will.payload, will.qos, retain=will.retain)
    return mqttc


def blocking_connect(mqttc: mqtt.Client, config: BrokerConfig) -> None:
    """Resolve, connect, do the TLS handshake and send CONNECT (run in an executor)."""
    mqttc.connect(config.host, config.port, config.keepalive)
    sock = mqttc.socket()
    if isinstance(sock, socket.socket):
        # paho leaves Nagle on, which delays small publishes by tens of ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connack_error(config: BrokerConfig, reason: ReasonCode) -> CloudSyncError:
    """Return the error a refused CONNACK stands for."""
    error_cls = BrokerAuthError if reason.value in AUTH_REASONS else BrokerRefusedError
    return error_cls(f"{config.url} refused the connection: {reason}")


# TLS alerts the broker sends about our client certificate, and what they mean.
# OpenSSL names them "sslv3 alert certificate expired" or "SSLV3_ALERT_CERTIFICATE_EXPIRED".
_CLIENT_CERT_ALERTS: Final = (
    ("alert certificate required", "requires a client certificate"),
    ("alert certificate expired", "rejected the client certificate: it has expired"),
    (
        "alert unknown ca",
        "rejected the client certificate: its CA is not one it trusts",
    ),
    ("alert certificate revoked", "rejected the client certificate: it was revoked"),
    ("alert bad certificate", "rejected the client certificate"),
    ("alert certificate unknown", "rejected the client certificate"),
)


def certificate_problem(config: BrokerConfig, detail: str) -> str | None:
    """Say which certificate a TLS failure is about, when its text tells."""
    text = detail.lower().replace("_", " ")
    if "certificate verify failed" in text:
        if "hostname" in text or "ip address mismatch" in text:
            return f"the broker's certificate is not for {config.host}"
        return (
            "the broker's certificate does not verify against the CA certificate "
            "configured (or the system's CAs when none is)"
        )
    return next(
        (
            f"{config.url} {meaning}"
            for alert, meaning in _CLIENT_CERT_ALERTS
            if alert in text
        ),
        None,
    )


def _client_certificate_guess(config: BrokerConfig) -> str:
    """Say what about the client certificate most likely made the broker hang up."""
    if not config.client_cert:
        return "it probably requires a client certificate, and none is configured"
    try:
        expiry = certificate_expiry(config.client_cert)
    except CertificateError:
        return "it probably does not accept the client certificate"
    if expiry <= datetime.now(UTC):
        return f"it rejected the client certificate: it has expired ({expiry:%Y-%m-%d})"
    return (
        "it probably does not accept the client certificate "
        "(is it signed by a CA the broker trusts?)"
    )


def handshake_error(config: BrokerConfig, detail: str) -> CloudSyncError:
    """Explain a connection that closed before CONNACK."""
    if config.tls:
        if problem := certificate_problem(config, detail):
            return BrokerTLSError(f"{problem} ({detail})")
        # A TLS broker that drops the session before CONNACK has, in practice, rejected
        # the client certificate: under TLS 1.3 its alert comes after the handshake and
        # is often lost with the connection, so what we know of the certificate decides.
        return BrokerTLSError(
            f"{config.url} closed the TLS session before CONNACK: "
            f"{_client_certificate_guess(config)} ({detail})"
        )
    return BrokerRefusedError(f"{config.url} closed the connection: {detail}")


def connect_error(config: BrokerConfig, err: OSError) -> CloudSyncError:
    """Return the error a failed DNS/TCP/TLS connect stands for."""
    if isinstance(err, (ssl.SSLError, ssl.CertificateError)):
        problem = certificate_problem(config, str(err))
        prefix = f"{problem}: " if problem else ""
        return BrokerTLSError(f"{prefix}TLS handshake with {config.url} failed: {err}")
    detail = err.strerror or str(err)
    if config.tls and isinstance(err, (ConnectionResetError, BrokenPipeError)):
        # A listener without TLS reads the ClientHello as a bad packet and drops it.
        msg = f"{config.url} closed the connection during the TLS handshake (does this port speak TLS?): {detail}"
        return BrokerTLSError(msg)
    if isinstance(err, socket.gaierror):
        return UnknownHostError(f"unknown host {config.host}: {detail}")
    if isinstance(err, ConnectionRefusedError):
        return ConnectionRefusedByHostError(f"{config.url} refused the TCP connection")
    if isinstance(err, TimeoutError):
        return ConnectTimeoutError(f"{config.url} did not answer in time: {detail}")
    return BrokerUnreachableError(f"cannot reach {config.url}: {detail}")


def check_rc(
    rc: MQTTErrorCode, action: str, config: BrokerConfig, mid: int | None = 0
) -> int:
    """Turn a paho return code into a typed error; return the packet's mid."""
    if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
        return mid
    if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
        msg = f"cannot {action}: not connected to {config.url}"
        raise NotConnectedError(msg)
    msg = f"cannot {action}: {mqtt.error_string(rc)}"
    raise CloudSyncError(msg)


class PahoLog:
    """paho's error lines: kept while connecting (they explain a dropped handshake).

    Afterwards the exceptions paho suppressed in our callbacks are logged as errors.
    """

    def __init__(self, url: str) -> None:
        """Log for the broker at ``url``."""
        self._url = url
        self._lines: list[str] | None = None

    def connecting(self, *, active: bool) -> None:
        """Start or stop keeping the lines of a connection attempt."""
        self._lines = [] if active else None

    def detail(self, reason: object) -> str:
        """Return the kept lines, or ``reason`` when there are none."""
        return "; ".join(self._lines or ()) or str(reason)

    def on_log(self, _mqttc: mqtt.Client, _userdata: Any, level: int, buf: str) -> None:
        """Handle one of paho's log lines (also called from the executor thread)."""
        if level != mqtt.MQTT_LOG_ERR:
            return
        if self._lines is not None:
            self._lines.append(buf)
        elif buf.startswith("Caught exception"):
            _LOGGER.error("%s: %s", self._url, buf)
        else:
            _LOGGER.debug("%s: %s", self._url, buf)
