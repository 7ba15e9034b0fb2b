"""The latest data per concrete topic, within caps on topics and bytes.

A ``#`` subscription on a busy broker would otherwise keep every topic it ever saw. The
least recently updated topic goes first; how many went is counted, and the names of the
most recent evictions are remembered (as many as the topic cap) so a request for one can
be told its data was evicted rather than that none ever came.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .const import (
    CONF_CACHE,
    CONF_MAX_SIZE,
    CONF_MAX_TOPICS,
    DEFAULT_CACHE_MAX_SIZE,
    DEFAULT_CACHE_MAX_TOPICS,
    MIB,
)

if TYPE_CHECKING:
    from .registry import LatestData


@dataclass(frozen=True, slots=True)
class CacheLimits:
    """The caps of one broker's cache."""

    max_topics: int = 10_000
    max_bytes: int = 16 * 1024 * 1024


class LatestCache:
    """Topic -> newest message, least recently updated evicted first."""

    def __init__(self, limits: CacheLimits | None = None) -> None:
        """Start empty."""
        self.limits = limits or CacheLimits()
        self._data: OrderedDict[str, LatestData] = OrderedDict()
        self._evicted_names: OrderedDict[str, None] = OrderedDict()
        self.bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        """Return how many topics have data."""
        return len(self._data)

    def put(self, data: LatestData) -> None:
        """Keep ``data`` as its topic's newest message, evicting to stay in the caps."""
        if (old := self._data.pop(data.topic, None)) is not None:
            self.bytes -= _size(old)
        self._data[data.topic] = data
        self.bytes += _size(data)
        self._evicted_names.pop(data.topic, None)
        while self._data and (
            len(self._data) > self.limits.max_topics
            or self.bytes > self.limits.max_bytes
        ):
            topic, gone = self._data.popitem(last=False)
            self.bytes -= _size(gone)
            self.evicted += 1
            self._evicted_names[topic] = None
            if len(self._evicted_names) > self.limits.max_topics:
                self._evicted_names.popitem(last=False)

    def get(self, topic: str) -> LatestData | None:
        """Return a topic's newest message, if kept."""
        return self._data.get(topic)

    def was_evicted(self, topic: str) -> bool:
        """Return True when the topic's data was evicted recently and not seen since."""
        return topic in self._evicted_names

    def values(self) -> Iterator[LatestData]:
        """Yield every kept message."""
        return iter(self._data.values())

    def discard(self, topic: str) -> None:
        """Forget a topic (its last filter was unsubscribed)."""
        if (gone := self._data.pop(topic, None)) is not None:
            self.bytes -= _size(gone)
        self._evicted_names.pop(topic, None)

    def topics(self) -> list[str]:
        """Return the kept topics."""
        return list(self._data)


def _size(data: LatestData) -> int:
    """Return the bytes a message holds (payload and topic; the rest is fixed)."""
    return len(data.payload) + len(data.topic)


def cache_limits(options: Mapping[str, Any]) -> CacheLimits:
    """Return the latest-data cache's caps an entry's options set."""
    settings: Mapping[str, Any] = options.get(CONF_CACHE, {})
    return CacheLimits(
        max_topics=int(settings.get(CONF_MAX_TOPICS, DEFAULT_CACHE_MAX_TOPICS)),
        max_bytes=round(
            float(settings.get(CONF_MAX_SIZE, DEFAULT_CACHE_MAX_SIZE)) * MIB
        ),
    )
