"""Helpers for store-and-forward tests: brokers that keep a subscriber's session, and
what a subscriber received compared with what was sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.mosquitto import BrokerFactory, Mosquitto


def persistent_broker(factory: BrokerFactory, *, start: bool = True) -> Mosquitto:
    """Start a private broker that keeps sessions across restarts and SIGKILL.

    A subscriber with a persistent session (``-c``) then gets what was published while
    it was reconnecting, whoever reconnects first after a restart. The state is saved
    every second, so wait a second after subscribing before killing the broker. With
    ``start=False`` add to ``_extra_config`` and call ``_write_config()`` and ``start()``.
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
