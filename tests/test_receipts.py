"""Receipt events are batched: the recorder gets one row per batch, not per message."""

from __future__ import annotations

from datetime import timedelta

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.cloudsync.receipts import MAX_IDS, ReceiptBatcher

EVENT = "cloudsync_test_receipts"


async def test_burst_becomes_two_events(hass: HomeAssistant) -> None:
    """100,000 drops in one tick: the first at once, the rest in one capped event."""
    events = async_capture_events(hass, EVENT)
    batcher = ReceiptBatcher(hass, EVENT, {"entry_id": "e"})
    for i in range(100_000):
        batcher.add(f"id{i}", "expired" if i % 2 else "overflow")
    await hass.async_block_till_done()
    assert [e.data["count"] for e in events] == [1]
    assert events[0].data == {
        "entry_id": "e",
        "count": 1,
        "ids": ["id0"],
        "ids_truncated": False,
        "reasons": {"overflow": 1},
    }
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=1.1))
    await hass.async_block_till_done()
    assert [e.data["count"] for e in events] == [1, 99_999]
    second = events[1].data
    assert second["ids"] == [f"id{i}" for i in range(1, MAX_IDS + 1)]
    assert second["ids_truncated"] is True
    assert second["reasons"] == {"expired": 50_000, "overflow": 49_999}
    # Quiet again: the next one is announced at once, after the timer ran dry.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=2.2))
    await hass.async_block_till_done()
    batcher.add("late")
    await hass.async_block_till_done()
    assert events[-1].data["ids"] == ["late"]
    batcher.flush()
    assert len(events) == 3


async def test_flush_fires_what_is_gathered(hass: HomeAssistant) -> None:
    """Unloading fires the pending batch instead of losing it."""
    events = async_capture_events(hass, EVENT)
    batcher = ReceiptBatcher(hass, EVENT, {})
    for i in range(3):
        batcher.add(str(i))
    batcher.flush()
    await hass.async_block_till_done()
    assert [e.data["ids"] for e in events] == [["0"], ["1", "2"]]
