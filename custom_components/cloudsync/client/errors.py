"""Exceptions raised by the cloudsync MQTT core.

Each carries a stable ``code``: hosts map codes, not classes, to their own terms (an HTTP
status, a translated message), so a new subclass needs no change there unless it wants a
code of its own.
"""

from __future__ import annotations

from typing import ClassVar


class CloudSyncError(Exception):
    """Base class of every error the MQTT core raises."""

    code: ClassVar[str] = "broker_error"


class BrokerUnreachableError(CloudSyncError):
    """The broker could not be reached (DNS, TCP or timeout while connecting)."""

    code: ClassVar[str] = "broker_unreachable"


class ConnectionRefusedByHostError(BrokerUnreachableError):
    """Nothing listens at the broker's address and port (TCP connection refused)."""

    code: ClassVar[str] = "connection_refused"


class UnknownHostError(BrokerUnreachableError):
    """The broker's host name does not resolve."""

    code: ClassVar[str] = "unknown_host"


class ConnectTimeoutError(BrokerUnreachableError):
    """Opening the TCP connection (or the TLS handshake) did not finish in time."""

    code: ClassVar[str] = "connect_timeout"


class BrokerRefusedError(CloudSyncError):
    """The broker answered CONNECT with a refusal other than bad credentials."""

    code: ClassVar[str] = "broker_refused"


class BrokerAuthError(CloudSyncError):
    """The broker refused the credentials or the client identity."""

    code: ClassVar[str] = "invalid_auth"


class BrokerTLSError(CloudSyncError):
    """TLS failed: bad certificate, wrong CA, hostname mismatch or rejected client cert."""

    code: ClassVar[str] = "tls_error"


class CertificateError(BrokerTLSError):
    """A certificate or key given in the configuration cannot be loaded."""

    code: ClassVar[str] = "invalid_certificate"


class NotConnectedError(CloudSyncError):
    """The operation needs a live connection and there is none."""

    code: ClassVar[str] = "not_connected"


class BrokerTimeoutError(CloudSyncError):
    """The broker did not acknowledge in time."""

    code: ClassVar[str] = "timeout"


class SubscriptionRefusedError(CloudSyncError):
    """The broker refused a subscription (SUBACK failure code)."""

    code: ClassVar[str] = "subscription_refused"


class PayloadTooLargeError(CloudSyncError):
    """The payload is larger than the broker or MQTT accepts."""

    code: ClassVar[str] = "payload_too_large"


class InvalidTopicError(CloudSyncError, ValueError):
    """A topic name or filter is not valid MQTT."""

    code: ClassVar[str] = "invalid_topic"


class OutboxError(CloudSyncError):
    """The outbox file cannot be opened or written."""

    code: ClassVar[str] = "outbox_error"


class OutboxFullError(OutboxError):
    """The outbox is full and its overflow policy refuses new messages."""

    code: ClassVar[str] = "outbox_full"


class OutboxClosedError(NotConnectedError):
    """The outbox is shutting down and takes no new messages."""
