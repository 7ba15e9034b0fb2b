"""Broker configuration and URL handling."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
import ipaddress
import re
from urllib.parse import urlsplit

from .profiles import GENERIC, ProfileLimits

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
SCHEME_PLAIN = "mqtt"
SCHEME_TLS = "mqtts"
_TLS_SCHEMES = {"mqtts", "ssl", "tls", "tcps", "mqtt+ssl"}
_PLAIN_SCHEMES = {"mqtt", "tcp"}
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


class Protocol(StrEnum):
    """MQTT protocol versions the core speaks (values are HA translation keys too)."""

    MQTTV311 = "mqttv311"
    MQTTV5 = "mqttv5"


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A normalized broker address."""

    host: str
    port: int
    tls: bool
    # The canonical form, built once: every REST request compares and names it.
    _text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Build the canonical form."""
        scheme = SCHEME_TLS if self.tls else SCHEME_PLAIN
        host = f"[{self.host}]" if ":" in self.host else self.host
        object.__setattr__(self, "_text", f"{scheme}://{host}:{self.port}")

    def __str__(self) -> str:
        """Return the canonical form, e.g. ``mqtts://host:8883``."""
        return self._text


def _valid_host(host: str) -> bool:
    """Return True for an IP address or a DNS name (letters, digits, -, _ and dots)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _HOST_RE.fullmatch(host) is not None
    return True


def parse_broker_url(text: str) -> BrokerUrl:
    """Parse ``host``, ``host:port`` or ``scheme://host[:port]`` into a BrokerUrl."""
    raw = text.strip()
    if not raw:
        msg = "broker URL is empty"
        raise ValueError(msg)
    split = urlsplit(raw if "://" in raw else f"//{raw}")
    scheme = split.scheme.lower()
    if scheme and scheme not in _TLS_SCHEMES | _PLAIN_SCHEMES:
        msg = f"unsupported scheme {split.scheme!r}: use mqtt:// or mqtts://"
        raise ValueError(msg)
    if split.path not in ("", "/") or split.query or split.fragment:
        msg = "broker URL must not contain a path, query or fragment"
        raise ValueError(msg)
    if split.username is not None:
        msg = "put credentials in the username and password fields, not the URL"
        raise ValueError(msg)
    host = (split.hostname or "").lower()
    if not host:
        msg = f"no host in broker URL {text!r}"
        raise ValueError(msg)
    if not _valid_host(host):
        msg = f"not a host name or IP address: {host!r}"
        raise ValueError(msg)
    try:
        port = split.port
    except ValueError as err:
        msg = f"invalid port in broker URL {text!r}"
        raise ValueError(msg) from err
    if port == 0:
        msg = f"invalid port in broker URL {text!r}"
        raise ValueError(msg)
    tls = scheme in _TLS_SCHEMES or (not scheme and port == DEFAULT_TLS_PORT)
    if port is None:
        port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    return BrokerUrl(host=host, port=port, tls=tls)


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for us when the link ends without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """Everything needed to connect to one broker; certificates are PEM text."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = field(default=None, repr=False)
    key_password: str | None = field(default=None, repr=False)
    verify_hostname: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = ""
    keepalive: int = 60
    protocol: Protocol = Protocol.MQTTV311
    profile: ProfileLimits = GENERIC
    will: Will | None = None

    @property
    def url(self) -> BrokerUrl:
        """Return the broker's normalized URL."""
        return BrokerUrl(host=self.host, port=self.port, tls=self.tls)
