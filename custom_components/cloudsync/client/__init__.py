"""The cloudsync MQTT core: broker connections without Home Assistant."""

from .config import (
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    BrokerConfig,
    BrokerUrl,
    Protocol,
    parse_broker_url,
)
from .connection import BrokerConnection, ReceivedMessage
from .errors import (
    BrokerAuthError,
    BrokerRefusedError,
    BrokerTimeoutError,
    BrokerTLSError,
    BrokerUnreachableError,
    CertificateError,
    CloudSyncError,
    InvalidTopicError,
    NotConnectedError,
    OutboxClosedError,
    OutboxError,
    OutboxFullError,
    PayloadTooLargeError,
    SubscriptionRefusedError,
)
from .outbox import Outbox, OutboxStats, PublishResult
from .outbox_store import (
    DroppedMessage,
    DropReason,
    OutboxLimits,
    OverflowPolicy,
    QueuedMessage,
    remove_files,
)
from .tls import build_ssl_context, certificate_to_pem, private_key_to_pem
from .topics import is_wildcard, validate_filter, validate_topic

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TLS_PORT",
    "BrokerAuthError",
    "BrokerConfig",
    "BrokerConnection",
    "BrokerRefusedError",
    "BrokerTLSError",
    "BrokerTimeoutError",
    "BrokerUnreachableError",
    "BrokerUrl",
    "CertificateError",
    "CloudSyncError",
    "DropReason",
    "DroppedMessage",
    "InvalidTopicError",
    "NotConnectedError",
    "Outbox",
    "OutboxClosedError",
    "OutboxError",
    "OutboxFullError",
    "OutboxLimits",
    "OutboxStats",
    "OverflowPolicy",
    "PayloadTooLargeError",
    "Protocol",
    "PublishResult",
    "QueuedMessage",
    "ReceivedMessage",
    "SubscriptionRefusedError",
    "build_ssl_context",
    "certificate_to_pem",
    "is_wildcard",
    "parse_broker_url",
    "private_key_to_pem",
    "remove_files",
    "validate_filter",
    "validate_topic",
]
