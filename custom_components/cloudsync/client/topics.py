"""MQTT topic name and topic filter validation."""

from __future__ import annotations

from collections.abc import Iterator
import re

from paho.mqtt.client import topic_matches_sub
from paho.mqtt.matcher import MQTTMatcher

from .errors import InvalidTopicError

MAX_TOPIC_BYTES = 65535

# What MQTT forbids (U+0000) or lets brokers refuse (MQTT 3.1.1 1.5.3, 5.0 1.5.4):
# control characters and Unicode non-characters. mosquitto closes the connection on
# them ("malformed packet"), so they are refused before anything is sent.
_NONCHARACTERS = "".join(
    chr(plane << 16 | last) for plane in range(17) for last in (0xFFFE, 0xFFFF)
)
_FORBIDDEN = re.compile(f"[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef{_NONCHARACTERS}]")


def forbidden_character(text: str) -> str | None:
    """Return the first character MQTT brokers refuse in a topic, or None."""
    match = _FORBIDDEN.search(text)
    return match.group() if match else None


def _check_common(text: str, kind: str) -> None:
    """Check what topic names and filters share: non-empty, allowed characters, size."""
    if not isinstance(text, str) or not text:
        msg = f"{kind} must be a non-empty string"
        raise InvalidTopicError(msg)
    if (char := forbidden_character(text)) is not None:
        msg = (
            f"{kind} must not contain control characters or Unicode non-characters "
            f"(found U+{ord(char):04X})"
        )
        raise InvalidTopicError(msg)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as err:
        msg = f"{kind} is not valid UTF-8"
        raise InvalidTopicError(msg) from err
    if size > MAX_TOPIC_BYTES:
        msg = f"{kind} is {size} bytes long; MQTT allows at most {MAX_TOPIC_BYTES}"
        raise InvalidTopicError(msg)


# A publish's topic is checked by the broker object, the outbox and the connection, and
# most publishes go to a few topics: remember short ones found valid (bounded).
_VALID_TOPICS: dict[str, None] = {}
_VALID_TOPICS_MAX = 1024
_VALID_TOPIC_MAX_LENGTH = 256


def validate_topic(topic: str) -> None:
    """Raise InvalidTopicError unless ``topic`` is a valid topic name to publish to."""
    if type(topic) is str and topic in _VALID_TOPICS:
        return
    _check_common(topic, "topic")
    if "+" in topic or "#" in topic:
        msg = f"topic {topic!r} contains a wildcard (+ or #); publish needs a concrete topic"
        raise InvalidTopicError(msg)
    if len(topic) <= _VALID_TOPIC_MAX_LENGTH:
        if len(_VALID_TOPICS) >= _VALID_TOPICS_MAX:
            _VALID_TOPICS.clear()
        _VALID_TOPICS[topic] = None


def validate_filter(topic_filter: str) -> None:
    """Raise InvalidTopicError unless ``topic_filter`` is a valid subscription filter."""
    _check_common(topic_filter, "topic filter")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            msg = f"in {topic_filter!r}, # must be a whole level and the last one"
            raise InvalidTopicError(msg)
        if "+" in level and level != "+":
            msg = f"in {topic_filter!r}, + must be a whole level"
            raise InvalidTopicError(msg)


def is_wildcard(topic_filter: str) -> bool:
    """Return True when the filter contains + or #."""
    return "+" in topic_filter or "#" in topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Return True when a concrete topic matches a filter (MQTT's rules)."""
    return bool(topic_matches_sub(topic_filter, topic))


class FilterTrie[V]:
    """Topic filters and their values, found by the concrete topics they match.

    A typed face of paho's MQTTMatcher, a trie: matching costs the topic's depth, not
    the number of filters.
    """

    def __init__(self) -> None:
        """Start empty."""
        self._matcher = MQTTMatcher()  # type: ignore[no-untyped-call]

    def __setitem__(self, topic_filter: str, value: V) -> None:
        """Store ``value`` under a filter."""
        self._matcher[topic_filter] = value

    def __delitem__(self, topic_filter: str) -> None:
        """Remove a filter."""
        del self._matcher[topic_filter]  # type: ignore[no-untyped-call]

    def iter_match(self, topic: str) -> Iterator[V]:
        """Yield the values of the filters that match a concrete topic."""
        return self._matcher.iter_match(topic)  # type: ignore[no-any-return,no-untyped-call]
