"""The latest-data cache stays within its caps and says what it evicted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from homeassistant.core import HomeAssistant
import pytest

from custom_components.cloudsync.cache import CacheLimits, LatestCache
from custom_components.cloudsync.registry import LatestData
from tests.common import entry_for, setup_entry
from tests.mosquitto import Mosquitto, mqtt_publish
from tests.test_http import get, post

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _data(topic: str, payload: bytes = b"x") -> LatestData:
    return LatestData(topic, payload, NOW, 0, retain=False)


def test_topic_cap_evicts_least_recently_updated() -> None:
    """Past the topic cap the oldest update goes; updating a topic makes it young."""
    cache = LatestCache(CacheLimits(max_topics=3))
    for topic in ("a", "b", "c"):
        cache.put(_data(topic))
    cache.put(_data("a", b"again"))
    cache.put(_data("d"))
    assert sorted(cache.topics()) == ["a", "c", "d"]
    assert cache.evicted == 1
    assert cache.was_evicted("b")
    assert not cache.was_evicted("a")
    cache.put(_data("b"))  # seen again: no longer evicted
    assert not cache.was_evicted("b")
    assert len(cache) == 3


def test_byte_cap_and_bookkeeping() -> None:
    """The byte count follows puts, replacements and discards; the cap evicts."""
    cache = LatestCache(CacheLimits(max_topics=100, max_bytes=30))
    cache.put(_data("t1", b"0123456789"))  # 12 bytes
    cache.put(_data("t2", b"0123456789"))  # 24
    cache.put(_data("t1", b"01234"))  # 7 + 12 = 19
    assert cache.bytes == 19
    cache.put(_data("t3", b"0123456789"))  # 31 > 30: t2 (least recent) goes
    assert cache.topics() == ["t1", "t3"]
    assert cache.bytes == 19
    cache.discard("t1")
    assert cache.bytes == 12
    # A single message over the cap is not kept at all.
    cache.put(_data("big", b"x" * 100))
    assert cache.get("big") is None
    assert cache.was_evicted("big")


def test_evicted_names_are_bounded() -> None:
    """Remembered evictions are capped too: no structure grows without a cap."""
    cache = LatestCache(CacheLimits(max_topics=10))
    for i in range(10_000):
        cache.put(_data(f"t/{i}"))
    assert len(cache) == 10
    assert cache.evicted == 9_990
    assert len(cache._evicted_names) == 10


@pytest.mark.usefixtures("socket_enabled")
async def test_rest_says_evicted(
    hass: HomeAssistant, hass_client: Any, plain_broker: Mosquitto
) -> None:
    """With a cap of 3 topics, GET on an evicted topic says so; the newest answer."""
    entry = await setup_entry(
        hass,
        entry_for(plain_broker, options={"cache": {"max_topics": 3, "max_size": 1}}),
    )
    client = await hass_client()
    body = {"appid": "app", "topic": "cache/#", "url": plain_broker.url}
    assert (await post(client, "subscribe", body))[0] == 200
    for i in range(5):
        await mqtt_publish(plain_broker, f"cache/{i}", f"v{i}", qos=1)
    async with asyncio.timeout(5):
        while entry.runtime_data.latest("app", "cache/4") is None:
            await asyncio.sleep(0.02)
    status, reply = await get(client, "cache/0", "app")
    assert (status, reply["Message"], reply["evicted"]) == (200, "", True)
    status, reply = await get(client, "cache/4", "app")
    assert (status, reply["Message"]) == (200, "v4")
    assert "evicted" not in reply
    counts = entry.runtime_data.diagnostics()["registry"]
    assert counts["topics_with_data"] == 3
    assert counts["evicted_topics"] == 2
