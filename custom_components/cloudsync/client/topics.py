"""MQTT topic name and topic filter validation."""

from __future__ import annotations

from collections.abc import Iterator
import re

from paho.mqtt.client import topic_matches_sub

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


class _Node[V]:
    """One level of a FilterTrie: the levels below it, and a filter's value ending here."""

    __slots__ = ("children", "filled", "value")

    def __init__(self) -> None:
        self.children: dict[str, _Node[V]] = {}
        self.filled = False
        self.value: V | None = None


class FilterTrie[V]:
    """Topic filters and their values, found by the concrete topics they match.

    A trie: matching costs the topic's depth, not the number of filters. paho's
    MQTTMatcher does the same with a recursive closure made per match, a reference
    cycle only the garbage collector frees: one per received message kept gen 0
    collections running through a burst, which moved live objects on to gen 2 and
    brought on full collections of all of Home Assistant (250 ms each here). This walks
    with a list and leaves nothing behind, yielding in paho's order: the exact level's
    filters, then ``+``, then ``#``.
    """

    def __init__(self) -> None:
        """Start empty."""
        self._root: _Node[V] = _Node()

    def __setitem__(self, topic_filter: str, value: V) -> None:
        """Store ``value`` under a filter (replacing the one it had)."""
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        node.filled = True
        node.value = value

    def __delitem__(self, topic_filter: str) -> None:
        """Remove a filter; KeyError when it is not stored."""
        path: list[tuple[_Node[V], str]] = []
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                raise KeyError(topic_filter)
            path.append((node, level))
            node = child
        if not node.filled:
            raise KeyError(topic_filter)
        node.filled = False
        node.value = None
        for parent, level in reversed(path):  # drop the levels nothing needs now
            child = parent.children[level]
            if child.filled or child.children:
                break
            del parent.children[level]

    def match(self, topic: str) -> list[V]:
        """Return the values of the filters that match a concrete topic.

        Wildcards at the first level do not match a topic starting with ``$``.
        """
        levels = topic.split("/")
        depth = len(levels)
        wild_first = not topic.startswith("$")
        found: list[V] = []
        # (node, index of the level below it); index -1: a "#" node, yield its value.
        stack: list[tuple[_Node[V], int]] = [(self._root, 0)]
        while stack:
            node, index = stack.pop()
            if index < 0:
                found.append(node.value)  # type: ignore[arg-type]
                continue
            children = node.children
            wild = index > 0 or wild_first
            if wild and (rest := children.get("#")) is not None and rest.filled:
                stack.append((rest, -1))  # after the levels below, as paho
            if index == depth:
                if node.filled:
                    found.append(node.value)  # type: ignore[arg-type]
                continue
            if wild and (one := children.get("+")) is not None:
                stack.append((one, index + 1))
            if (exact := children.get(levels[index])) is not None:
                stack.append((exact, index + 1))
        return found

    def iter_match(self, topic: str) -> Iterator[V]:
        """Iterate over the values of the filters that match a concrete topic."""
        return iter(self.match(topic))
