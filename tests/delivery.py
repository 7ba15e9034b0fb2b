"""Helpers for store-and-forward tests: brokers that keep a subscriber's session, and
what a subscriber received compared with what was sent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.mosquitto import BrokerFactory, Mosquitto


def persistent_broker(factory: BrokerFactory, *, start: bool = True) -> Mosquitto:
    """Start a private broker that keeps sessions across restarts and SIGKILL.

    A subscriber with a persistent session (``-c``) then gets what was published while
    it was reconnecting, whoever reconnects first after a restart. A graceful stop saves
    the state; before a SIGKILL call ``save_state`` (the periodic save is not timely
    enough, see there). What the broker took after its last save dies with it, PUBACKed
    or not. With ``start=False`` add to ``_extra_config`` and call ``_write_config()``
    and ``start()``.
    """
    broker = factory(start=False)
    store = broker._dir / "persistence"
    store.mkdir()
    store.chmod(0o777)  # mosquitto writes it as user mosquitto
    broker._extra_config += [
        "persistence true",
        f"persistence_location {store}/",
        "autosave_interval 1",
        "max_queued_messages 0",
        "queue_qos0_messages true",
    ]
    broker._write_config()
    if start:
        broker.start()
    return broker


async def save_state(broker: Mosquitto, timeout: float = 10.0) -> None:
    """Make mosquitto write its persistence file now (SIGUSR1) and wait until it did.

    mosquitto 2.0 runs its periodic save when ``last save + autosave_interval < now``
    in whole seconds of a monotonic clock: with ``autosave_interval 1`` that is every
    2 s, the first one 1 to 2 s after it started. A session subscribed a second before
    a SIGKILL may therefore never have been saved, and the restarted broker then
    queues nothing for it. The save is logged when it starts; the broker's single
    thread finishes it before it handles another packet.
    """
    since = broker.log_offset()
    broker._signal(signal.SIGUSR1)
    async with asyncio.timeout(timeout):
        while not broker.log_contains("Saving in-memory database", since):
            await asyncio.sleep(0.02)


SUBSCRIBER_ARGS = ("-c",)  # mosquitto_sub: keep the session (needs a fixed client id)


@dataclass(frozen=True)
class DeliveryReport:
    """What arrived compared with what was sent."""

    missing: list[bytes]
    duplicates: int
    out_of_order: int
    received: int

    @property
    def complete(self) -> bool:
        """Return True when every message arrived at least once."""
        return not self.missing


def compare(sent: Sequence[bytes], received: Sequence[bytes]) -> DeliveryReport:
    """Count missing and duplicate payloads, and first arrivals out of order."""
    position = {payload: index for index, payload in enumerate(sent)}
    seen: set[bytes] = set()
    duplicates = out_of_order = 0
    last = -1
    for payload in received:
        if payload in seen:
            duplicates += 1
            continue
        seen.add(payload)
        index = position.get(payload, -1)
        if index < last:
            out_of_order += 1
        last = max(last, index)
    missing = [payload for payload in sent if payload not in seen]
    return DeliveryReport(missing, duplicates, out_of_order, len(received))
