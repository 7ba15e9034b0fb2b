"""Broker profiles: the documented limits of hosted brokers, enforced before sending.

A hosted broker disconnects a client that breaks one of its limits; the client then sees a
reconnect loop and a growing outbox instead of an error. A profile holds those limits so
that a publish or subscribe that would break one is refused here, naming the limit.

Sources (checked 2026-12):

- AWS IoT Core: the "AWS IoT Core message broker and protocol limits and quotas" page and
  the ``AwsIotCoreDefaults`` validation of its device SDK: QoS 0 and 1 only; payload up to
  128 KB; topic names and filters up to 256 bytes with at most 7 forward slashes; client
  id up to 128 bytes; at most 8 filters per SUBSCRIBE; per connection at most 100
  publishes/s and 512 KB/s outbound; 1 CONNECT per second per client id; keepalive
  30-1200 s; MQTT over port 443 needs the ALPN protocol ``x-amzn-mqtt-ca``.
- EMQX Cloud Serverless: the "Quotas and Limits" page of the EMQX Platform docs
  (Serverless table): message size 1 MB; client id up to 1024 characters; 10
  subscriptions per client; 10 topic levels per subscription; 10 publishes/s per client;
  no anonymous access.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from .errors import CloudSyncError, PayloadTooLargeError

KB = 1024


class Profile(StrEnum):
    """The broker profiles (values are stored in config entries and translation keys)."""

    GENERIC = "generic"
    AWS_IOT_CORE = "aws_iot_core"
    EMQX_SERVERLESS = "emqx_serverless"


class ProfileLimitError(CloudSyncError, ValueError):
    """A publish, subscribe or setting breaks a limit of the broker's profile."""

    code: ClassVar[str] = "profile_limit"


class ProfilePayloadTooLargeError(PayloadTooLargeError):
    """A payload is larger than the broker's profile allows."""

    code: ClassVar[str] = "profile_payload_too_large"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileLimits:
    """What one kind of broker accepts; None means MQTT's own limit."""

    name: str
    max_qos: int = 2
    max_payload: int | None = None
    max_topic_bytes: int | None = None
    max_topic_slashes: int | None = None
    max_filter_levels: int | None = None
    max_client_id_bytes: int | None = None
    max_subscriptions: int | None = None
    max_filters_per_subscribe: int = 100
    publish_rate: float | None = None  # publishes per second per connection
    byte_rate: float | None = None  # outbound payload bytes per second per connection
    connect_interval: float = 0.0  # seconds between CONNECTs of one client id
    keepalive: tuple[int, int] | None = None
    alpn: tuple[str, ...] = ()
    alpn_ports: frozenset[int] = frozenset()

    def check_publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Raise ProfileLimitError (or the payload's) when the broker would refuse it."""
        self._check_qos(qos)
        self._check_topic(topic, "topic")
        if self.max_payload is not None and len(payload) > self.max_payload:
            msg = (
                f"{self.name} accepts payloads of at most {self.max_payload} bytes; "
                f"this one has {len(payload)}"
            )
            raise ProfilePayloadTooLargeError(msg)

    def check_subscribe(self, topic_filter: str, qos: int, existing: int = 0) -> None:
        """Raise ProfileLimitError for a filter the broker would refuse.

        ``existing`` is how many other filters the connection already subscribes to.
        """
        self._check_qos(qos)
        self._check_topic(topic_filter, "topic filter")
        levels = topic_filter.count("/") + 1
        if self.max_filter_levels is not None and levels > self.max_filter_levels:
            msg = (
                f"{self.name} accepts topic filters of at most "
                f"{self.max_filter_levels} levels; {topic_filter} has {levels}"
            )
            raise ProfileLimitError(msg)
        if self.max_subscriptions is not None and existing >= self.max_subscriptions:
            msg = (
                f"{self.name} accepts at most {self.max_subscriptions} subscriptions "
                "per client"
            )
            raise ProfileLimitError(msg)

    def check_connection(self, client_id: str, keepalive: int) -> None:
        """Raise ProfileLimitError for a client id or keepalive the broker refuses."""
        size = len(client_id.encode())
        if self.max_client_id_bytes is not None and size > self.max_client_id_bytes:
            msg = (
                f"{self.name} accepts client ids of at most "
                f"{self.max_client_id_bytes} bytes; this one has {size}"
            )
            raise ProfileLimitError(msg)
        if self.keepalive is not None and not (
            self.keepalive[0] <= keepalive <= self.keepalive[1]
        ):
            low, high = self.keepalive
            msg = (
                f"{self.name} accepts a keepalive of {low}-{high} s, not {keepalive} s"
            )
            raise ProfileLimitError(msg)

    def alpn_for(self, port: int) -> list[str]:
        """Return the ALPN protocols to offer on ``port`` (empty: none)."""
        return list(self.alpn) if port in self.alpn_ports else []

    def _check_qos(self, qos: int) -> None:
        if qos > self.max_qos:
            allowed = " and ".join(str(q) for q in range(self.max_qos + 1))
            msg = f"{self.name} accepts QoS {allowed} only, not QoS {qos}"
            raise ProfileLimitError(msg)

    def _check_topic(self, topic: str, what: str) -> None:
        size = len(topic.encode())
        if self.max_topic_bytes is not None and size > self.max_topic_bytes:
            msg = (
                f"{self.name} accepts a {what} of at most {self.max_topic_bytes} "
                f"bytes; {topic[:64]}… has {size}"
            )
            raise ProfileLimitError(msg)
        slashes = topic.count("/")
        if self.max_topic_slashes is not None and slashes > self.max_topic_slashes:
            msg = (
                f"{self.name} accepts a {what} with at most {self.max_topic_slashes} "
                f"'/'; {topic} has {slashes}"
            )
            raise ProfileLimitError(msg)


GENERIC = ProfileLimits(name="MQTT")
AWS_IOT_CORE = ProfileLimits(
    name="AWS IoT Core",
    max_qos=1,
    max_payload=128 * KB,
    max_topic_bytes=256,
    max_topic_slashes=7,
    max_client_id_bytes=128,
    max_filters_per_subscribe=8,
    publish_rate=100,
    byte_rate=512 * KB,
    connect_interval=1.0,
    keepalive=(30, 1200),
    alpn=("x-amzn-mqtt-ca",),
    alpn_ports=frozenset({443}),
)
EMQX_SERVERLESS = ProfileLimits(
    name="EMQX Cloud Serverless",
    max_payload=1024 * KB,
    max_client_id_bytes=1024,
    max_subscriptions=10,
    max_filter_levels=10,
    publish_rate=10,
)
PROFILES: dict[Profile, ProfileLimits] = {
    Profile.GENERIC: GENERIC,
    Profile.AWS_IOT_CORE: AWS_IOT_CORE,
    Profile.EMQX_SERVERLESS: EMQX_SERVERLESS,
}
