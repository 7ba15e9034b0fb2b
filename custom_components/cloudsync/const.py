"""Constants for cloudsync."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "cloudsync"
LOGGER = logging.getLogger(__package__)

CONF_URL: Final = "url"
CONF_CLIENT_ID: Final = "client_id"
CONF_PROTOCOL: Final = "protocol"
CONF_PROFILE: Final = "profile"
# Config entry version; minor 2: protocol values "mqttv311"/"mqttv5" (were "3.1.1"/"5");
# minor 3: a broker profile ("generic" for older entries).
ENTRY_VERSION: Final = 1
ENTRY_MINOR_VERSION: Final = 3
# Stored protocol values of config entries before minor version 2 -> current ones.
LEGACY_PROTOCOLS: Final = {"3.1.1": "mqttv311", "5": "mqttv5"}
CONF_CA_CERT: Final = "ca_cert"
CONF_CLIENT_CERT: Final = "client_cert"
CONF_CLIENT_KEY: Final = "client_key"
CONF_KEY_PASSWORD: Final = "key_password"  # noqa: S105 - a config key
CONF_VERIFY_HOSTNAME: Final = "verify_hostname"

CONF_QOS: Final = "qos"
CONF_RETAIN: Final = "retain"
CONF_KEEPALIVE: Final = "keepalive"
CONF_STATE_INTERVAL: Final = "state_interval"
CONF_TOPIC_SENSORS: Final = "topic_sensors"
CONF_ALLOW_LOCAL_UNAUTHENTICATED: Final = "allow_local_unauthenticated"
CONF_MESSAGE_EVENTS: Final = "message_events"
CONF_QUEUED_MESSAGES: Final = "queued_messages"
CONF_CACHE: Final = "cache"
CONF_MAX_TOPICS: Final = "max_topics"
CONF_APP_ISOLATION: Final = "app_isolation"

CONF_OUTBOX: Final = "outbox"
CONF_MAX_MESSAGES: Final = "max_messages"
CONF_MAX_SIZE: Final = "max_size"
CONF_MAX_AGE: Final = "max_age"
CONF_OVERFLOW: Final = "overflow"
CONF_DRAIN_RATE: Final = "drain_rate"

DEFAULT_QOS: Final = 0
DEFAULT_RETAIN: Final = False
DEFAULT_KEEPALIVE: Final = 60
DEFAULT_STATE_INTERVAL: Final = 1.0
DEFAULT_TOPIC_SENSORS: Final = True
DEFAULT_MESSAGE_EVENTS: Final = False  # the recorder stores every bus event
DEFAULT_CACHE_MAX_TOPICS: Final = 10_000
DEFAULT_CACHE_MAX_SIZE: Final = 16  # MiB
DEFAULT_MAX_MESSAGES: Final = 100_000
DEFAULT_MAX_SIZE: Final = 64  # MiB
DEFAULT_MAX_AGE: Final = 168  # hours (entries before 0.2 stored a duration dict)
DEFAULT_OVERFLOW: Final = "drop_oldest"
DEFAULT_DRAIN_RATE: Final = 1000

EVENT_MESSAGE_RECEIVED: Final = "cloudsync_message_received"
EVENT_MESSAGES_DELIVERED: Final = "cloudsync_messages_delivered"
EVENT_MESSAGES_DROPPED: Final = "cloudsync_messages_dropped"

MIB: Final = 1024 * 1024
# Caps on what callers choose (REST and actions); documented in docs/rest-api.md.
MAX_APP_ID_LENGTH: Final = 128
MAX_URL_LENGTH: Final = 512
MAX_TOPIC_LENGTH: Final = 1024
MAX_SUBSCRIPTIONS: Final = 100_000

CONNECT_TIMEOUT: Final = 10.0
ACK_TIMEOUT: Final = 10.0


def signal_outbox(entry_id: str) -> str:
    """Return the dispatcher signal fired when a broker's outbox counts change."""
    return f"{DOMAIN}_{entry_id}_outbox"
