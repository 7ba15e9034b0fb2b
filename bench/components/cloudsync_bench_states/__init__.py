"""Bench only: many sensor states changed at an even pace, inside Home Assistant.

scripts/bench links this next to cloudsync (``cloudsync_bench_states:`` in the
configuration) for its mirror phase. ``cloudsync_bench_states.run`` sets
``sensor.<prefix>_<n>`` for n < entities, ``rate`` times a second each for ``duration``
seconds: every TICK a slice, change i going to entity ``i % entities`` with the value
``start + i`` (so every change is distinct and the last value of each entity is known).
It answers when done with the number of changes, how late the pacing ran (and when),
and the garbage collector's passes meanwhile (the process's, whoever allocated).

With ``listen`` a no-op ``state_changed`` listener takes the sensors while it runs, as
the recorder or an automation would in a real installation: HA builds the Event object
only for a listener that wants it, and that Event, its Context and the new State form a
reference cycle (``Context.origin_event``) that only the garbage collector frees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib
import gc
import time
from typing import Any

from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import (
    Event,
    EventStateChangedData,
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
import homeassistant.helpers.config_validation as cv
from homeassistant.helpers.typing import ConfigType
import voluptuous as vol

DOMAIN = "cloudsync_bench_states"
TICK = 0.01  # seconds between slices
CONFIG_SCHEMA = cv.empty_config_schema(DOMAIN)
RUN_SCHEMA = vol.Schema(
    {
        vol.Required("entities"): vol.All(vol.Coerce(int), vol.Range(min=1)),
        vol.Required("rate"): vol.All(vol.Coerce(float), vol.Range(min=0.001)),
        vol.Required("duration"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Required("prefix"): cv.slug,
        vol.Optional("start", default=0): vol.Coerce(int),
        vol.Optional("listen", default=False): cv.boolean,
    }
)


async def async_setup(hass: HomeAssistant, _config: ConfigType) -> bool:
    """Register the ``run`` action."""

    async def run(call: ServiceCall) -> ServiceResponse:
        return await _async_run(hass, **call.data)

    hass.services.async_register(
        DOMAIN, "run", run, RUN_SCHEMA, supports_response=SupportsResponse.ONLY
    )
    return True


async def _async_run(  # noqa: PLR0913
    hass: HomeAssistant,
    *,
    entities: int,
    rate: float,
    duration: float,
    prefix: str,
    start: int,
    listen: bool,
) -> ServiceResponse:
    """Make the changes, a slice every TICK; return what was done."""
    if listen:
        ours = f"sensor.{prefix}_"

        @callback
        def wanted(data: EventStateChangedData) -> bool:
            return data["entity_id"].startswith(ours)

        @callback
        def ignore(_event: Event[EventStateChangedData]) -> None:
            """Take the event and do nothing with it."""

        stop_listening = hass.bus.async_listen(EVENT_STATE_CHANGED, ignore, wanted)
    try:
        return await _async_changes(hass, entities, rate, duration, prefix, start)
    finally:
        if listen:
            stop_listening()


async def _async_changes(  # noqa: PLR0913
    hass: HomeAssistant,
    entities: int,
    rate: float,
    duration: float,
    prefix: str,
    start: int,
) -> ServiceResponse:
    """Set the states, a slice every TICK."""
    entity_ids = [f"sensor.{prefix}_{n}" for n in range(entities)]
    total = round(entities * rate * duration)
    ticks = max(1, round(duration / TICK))
    set_state = hass.states.async_set
    loop = hass.loop
    began = loop.time()
    done = 0
    late, late_at = 0.0, 0.0
    with _gc_watch() as collections:
        for tick in range(ticks):
            if (behind := loop.time() - (began + tick * TICK)) > late:
                late, late_at = behind, tick * TICK
            due = total * (tick + 1) // ticks
            for i in range(done, due):
                set_state(entity_ids[i % entities], str(start + i))
            done = due
            await asyncio.sleep(max(0.0, began + (tick + 1) * TICK - loop.time()))
    return {
        "changes": done,
        "seconds": loop.time() - began,
        "max_late_ms": late * 1000,
        "max_late_at_s": late_at,
        "last": start + done - 1,
        "gc": collections,
    }


@contextlib.contextmanager
def _gc_watch() -> Iterator[dict[str, Any]]:
    """Count the collections per generation while the block runs, and their time."""
    found: dict[str, Any] = {"count": [0, 0, 0], "ms": [0.0, 0.0, 0.0], "max_ms": 0.0}
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = (time.perf_counter() - started[0]) * 1000
        generation = info["generation"]
        found["count"][generation] += 1
        found["ms"][generation] += took
        found["max_ms"] = max(found["max_ms"], took)

    gc.callbacks.append(on_gc)
    try:
        yield found
    finally:
        gc.callbacks.remove(on_gc)
