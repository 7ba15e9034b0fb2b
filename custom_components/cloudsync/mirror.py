"""Mirror: Home Assistant's states published to the broker, without automations.

One mirror per broker (its config subentry, see mirror_config.py). It listens to
state changes of the entities its filter takes, publishes them through the broker's
outbox in batches (so what changes while the broker is down arrives, in order, once it
is back), keeps to a minimum interval per entity (the newest value wins), sends a full
snapshot on every connect and keeps ``<base>/status`` at ``online`` (the last will says
``offline``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
import contextlib
from typing import TYPE_CHECKING, Any, Final

from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers.json import json_bytes

from .client import CloudSyncError, OutgoingMessage, PublishResult
from .const import LOGGER
from .mirror_config import STATUS_OFFLINE, STATUS_ONLINE, MirrorConfig, MirrorPayload

if TYPE_CHECKING:
    from .broker import CloudSyncBroker

    type TaskStarter = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]

MAX_BATCH: Final = 1_000  # messages per publish_many (the batch API's own limit)
# Changes are collected this long before a batch goes out. A batch costs a task, a
# send and the reads of its PUBACKs whatever its size: 1,000 entities changing once a
# second arrive about ten per loop turn, and sent per turn those fixed costs were most
# of the mirror's CPU (scripts/bench, mirror phase). A cloud app does not notice it.
SEND_WINDOW: Final = 0.1
# Changes waiting for the sender; past this, only the newest per topic is kept.
MAX_WAITING: Final = 20_000
STOP_TIMEOUT: Final = 10.0
_TOPIC_CACHE: Final = 100_000


class Mirror:
    """Publishes the states of the chosen entities to one broker."""

    def __init__(
        self,
        hass: HomeAssistant,
        broker: CloudSyncBroker,
        config: MirrorConfig,
        create_task: TaskStarter,
    ) -> None:
        """Bind the mirror; async_start() begins mirroring."""
        self._hass = hass
        self._broker = broker
        self.config = config
        self._create_task = create_task
        self._wanted: Callable[[str], bool] = config.entity_filter()
        self._topics: dict[str, str] = {}
        self._waiting: list[OutgoingMessage] = []
        self._sender: asyncio.Task[None] | None = None
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, State] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._unsubscribe: list[CALLBACK_TYPE] = []
        self._stopped = False
        self.published = 0
        self.queued = 0
        self.failed = 0
        self.coalesced = 0
        self.last_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------

    @callback
    def async_start(self) -> None:
        """Listen to state changes and the link; snapshot now if the link is up."""
        self._unsubscribe = [
            self._hass.bus.async_listen(
                EVENT_STATE_CHANGED, self._on_state_changed, self._event_wanted
            ),
            self._broker.add_connection_listener(self._on_link),
        ]
        if self._broker.connected:
            self._snapshot()

    async def async_stop(self) -> None:
        """Send what is held or waiting and ``offline``, then stop (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for entity_id, state in list(self._held.items()):
            self._add(entity_id, state)
        self._held.clear()
        self._append(self.config.status_topic, STATUS_OFFLINE, retain=True)
        # Awaited here: the unload, or HA's stop handler, returns only once these are
        # sent or queued in the outbox, and before the broker object closes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT):
                if self._sender is not None and not self._sender.done():
                    await asyncio.shield(self._sender)
                await self._send_waiting()

    def as_diagnostics(self) -> dict[str, Any]:
        """Return the mirror's settings and counters (no payloads)."""
        config = self.config
        return {
            "base_topic": config.base_topic,
            "topic_template": config.topic_template,
            "payload": config.payload.value,
            "qos": config.qos,
            "retain": config.retain,
            "min_interval": config.min_interval,
            "latest_only": config.latest_only,
            "entities": len(self._topics),
            "published": self.published,
            "queued": self.queued,
            "failed": self.failed,
            "coalesced": self.coalesced,
            "held": len(self._held),
            "waiting": len(self._waiting),
            "last_error": self.last_error,
        }

    # -- state changes ----------------------------------------------------------------

    @callback
    def _event_wanted(self, event_data: EventStateChangedData) -> bool:
        return self._wanted(event_data["entity_id"])

    @callback
    def _on_state_changed(self, event: Event[EventStateChangedData]) -> None:
        entity_id = event.data["entity_id"]
        state = event.data["new_state"]
        if state is None:
            self._forget(entity_id)  # removed or renamed: it stops here
            return
        interval = self.config.min_interval
        if interval:
            if entity_id in self._held:
                self._held[entity_id] = state  # the newest value wins
                self.coalesced += 1
                return
            now = self._hass.loop.time()
            last = self._last_sent.get(entity_id)
            if last is not None and now - last < interval:
                self._held[entity_id] = state
                self._timers[entity_id] = self._hass.loop.call_at(
                    last + interval, self._release, entity_id
                )
                return
            self._last_sent[entity_id] = now
        self._add(entity_id, state)

    @callback
    def _release(self, entity_id: str) -> None:
        """Send an entity's held state once its interval has passed."""
        self._timers.pop(entity_id, None)
        if (state := self._held.pop(entity_id, None)) is not None:
            self._last_sent[entity_id] = self._hass.loop.time()
            self._add(entity_id, state)

    @callback
    def _forget(self, entity_id: str) -> None:
        self._topics.pop(entity_id, None)
        self._last_sent.pop(entity_id, None)
        self._drop_held(entity_id)

    @callback
    def _drop_held(self, entity_id: str) -> None:
        """Forget an entity's held state and stop its timer."""
        self._held.pop(entity_id, None)
        if (timer := self._timers.pop(entity_id, None)) is not None:
            timer.cancel()

    @callback
    def _on_link(self, connected: bool) -> None:  # noqa: FBT001
        if connected and not self._stopped:
            self._snapshot()

    @callback
    def _snapshot(self) -> None:
        """Queue ``online`` and the current state of every mirrored entity."""
        self._append(self.config.status_topic, STATUS_ONLINE, retain=True)
        now = self._hass.loop.time()
        interval = self.config.min_interval
        for state in self._hass.states.async_all():
            entity_id = state.entity_id
            if not self._wanted(entity_id):
                continue
            if interval:
                self._last_sent[entity_id] = now
                self._drop_held(entity_id)
            self._add(entity_id, state, snapshot=True)

    # -- sending ----------------------------------------------------------------------

    @callback
    def _add(self, entity_id: str, state: State, *, snapshot: bool = False) -> None:
        """Queue one state for the sender."""
        if self.config.latest_only and not snapshot and not self._broker.connected:
            # "Latest only": nothing piles up offline; the snapshot on connect sends
            # every entity's newest state.
            self.coalesced += 1
            return
        if (topic := self._topics.get(entity_id)) is None:
            if len(self._topics) >= _TOPIC_CACHE:
                self._topics.clear()
            topic = self._topics[entity_id] = self.config.topic_for(entity_id)
        self._append(topic, self._payload(state), retain=self.config.retain)

    def _payload(self, state: State) -> bytes:
        if self.config.payload is MirrorPayload.STATE:
            return state.state.encode()
        excluded = self.config.exclude_attributes
        return json_bytes(
            {
                "state": state.state,
                "attributes": {
                    key: value
                    for key, value in state.attributes.items()
                    if key not in excluded
                },
                "last_changed": state.last_changed,
                "last_updated": state.last_updated,
            }
        )

    @callback
    def _append(self, topic: str, payload: bytes, *, retain: bool) -> None:
        waiting = self._waiting
        waiting.append(OutgoingMessage(topic, payload, self.config.qos, retain))
        if len(waiting) > MAX_WAITING:
            self._coalesce_waiting()
        if self._sender is None or self._sender.done():
            # Started on the next loop turn: every change of this turn goes in one batch.
            self._sender = self._create_task(self._send_waiting(), "cloudsync mirror")

    def _coalesce_waiting(self) -> None:
        """Keep the newest message per topic, in the order of their last change."""
        newest: dict[str, OutgoingMessage] = {}
        for message in self._waiting:
            newest.pop(message.topic, None)
            newest[message.topic] = message
        self.coalesced += len(self._waiting) - len(newest)
        self._waiting = list(newest.values())
        LOGGER.warning(
            "The mirror to %s fell behind; kept the newest of %d waiting states",
            self._broker.url,
            len(newest),
        )

    async def _send_waiting(self) -> None:
        """Publish what is waiting, a batch at a time, in order."""
        if not self._stopped:
            await asyncio.sleep(SEND_WINDOW)  # what changes meanwhile joins the batch
        while self._waiting:
            batch = self._waiting[:MAX_BATCH]
            del self._waiting[:MAX_BATCH]
            await self._publish(batch)

    async def _publish(self, batch: list[OutgoingMessage]) -> None:
        try:
            results = await self._broker.async_publish_own(batch)
        except CloudSyncError as err:
            self._failed(len(batch), batch[0].topic, err)
            return
        for message, result in zip(batch, results, strict=True):
            if isinstance(result, PublishResult):
                if result.queued:
                    self.queued += 1
                else:
                    self.published += 1
            else:
                self._failed(1, message.topic, result)

    def _failed(self, count: int, topic: str, err: Exception) -> None:
        if self.failed == 0:
            LOGGER.warning("The mirror could not publish to %s: %s", topic, err)
        else:
            LOGGER.debug("The mirror could not publish to %s: %s", topic, err)
        self.failed += count
        self.last_error = str(err)
