"""What the recorder stores of cloudsync: the Home Assistant database over months."""

from __future__ import annotations

from functools import partial
from typing import Any

from homeassistant.components.recorder.history import get_significant_states
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from tests.common import entry_for, setup_entry
from tests.mosquitto import Mosquitto
from tests.test_sensor import _publish_and_wait, _subscribed_sensor

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture
async def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Set the recorder's database up before Home Assistant starts."""


async def test_volatile_attributes_are_not_recorded(
    recorder_mock: Any, hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """The recorder keeps the state and stable attributes, not per-message ones."""
    start = dt_util.utcnow()
    entry = await setup_entry(
        hass, entry_for(plain_broker, options={"state_interval": 0})
    )
    entity_id = await _subscribed_sensor(hass, entry, "rec/#")
    for i in range(3):
        state = await _publish_and_wait(
            hass, plain_broker, entity_id, f"rec/{i}", b"v%d" % i
        )
    assert state.attributes["received"]  # shown in the UI ...
    await async_wait_recording_done(hass)
    history = await hass.async_add_executor_job(
        partial(
            get_significant_states,
            hass,
            start,
            entity_ids=[entity_id],
            significant_changes_only=False,
        )
    )
    recorded = [s for s in history[entity_id] if s.state.startswith("v")]
    assert [s.state for s in recorded] == ["v0", "v1", "v2"]
    for item in recorded:  # ... but not stored with every write
        assert not {"received", "topic", "qos", "payload_length"} & set(item.attributes)
        assert item.attributes["apps"] == ["app1"]
