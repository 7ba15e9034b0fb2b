"""Exceptions raised by the cloudsync MQTT core."""

from __future__ import annotations


class CloudSyncError(Exception):
    """Base class of every error the MQTT core raises."""


class BrokerUnreachableError(CloudSyncError):
    """The broker could not be reached (DNS, TCP or timeout while connecting)."""


class BrokerRefusedError(CloudSyncError):
    """The broker answered CONNECT with a refusal other than bad credentials."""


class BrokerAuthError(CloudSyncError):
    """The broker refused the credentials or the client identity."""


class BrokerTLSError(CloudSyncError):
    """TLS failed: bad certificate, wrong CA, hostname mismatch or rejected client cert."""


class CertificateError(BrokerTLSError):
    """A certificate or key given in the configuration cannot be loaded."""


class NotConnectedError(CloudSyncError):
    """The operation needs a live connection and there is none."""


class BrokerTimeoutError(CloudSyncError):
    """The broker did not acknowledge in time."""


class SubscriptionRefusedError(CloudSyncError):
    """The broker refused a subscription (SUBACK failure code)."""


class PayloadTooLargeError(CloudSyncError):
    """The payload is larger than the broker or MQTT accepts."""


class InvalidTopicError(CloudSyncError, ValueError):
    """A topic name or filter is not valid MQTT."""


class OutboxError(CloudSyncError):
    """The outbox file cannot be opened or written."""


class OutboxFullError(OutboxError):
    """The outbox is full and its overflow policy refuses new messages."""


class OutboxClosedError(NotConnectedError):
    """The outbox is shutting down and takes no new messages."""
