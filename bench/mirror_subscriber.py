"""The mirror phase's counter: a separate process subscribed to the mirror's topics.

Run as ``python -m bench.mirror_subscriber PORT FILTER``. It prints ``ready`` once
subscribed (QoS 1), then answers one JSON line per request line on stdin::

    {"expected": 30000, "timeout": 20}
    -> {"messages": ..., "distinct": ..., "duplicates": ..., "out_of_order": ...,
        "malformed": ..., "last": {topic: value}, "status": {topic: payload}}

It waits until ``expected`` distinct states arrived since the previous request (or the
timeout passed), answers, and starts counting afresh. A state message's value is its
payload (``state``) or the payload's ``"state"`` (``json``), an integer the bench set;
the same value twice on a topic is a duplicate, a smaller one out of order. Messages on
``.../status`` are kept apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import sys
import threading
import time
from typing import Any

from paho.mqtt import client as mqtt

from .subscriber import serve

STATUS = "/status"


@dataclass
class Counts:
    """What arrived since the last report."""

    values: dict[str, set[int]] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    messages: int = 0
    distinct: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    malformed: int = 0


def _value(payload: bytes) -> int:
    """Return the integer a mirrored state carries, either payload form."""
    if payload.startswith(b"{"):
        return int(json.loads(payload)["state"])
    return int(payload)


class MirrorCounter:
    """Counts fed by paho's network thread, reported to the bench on request."""

    def __init__(self, topic_filter: str) -> None:
        """Start empty; (re)subscribe to ``topic_filter`` on every connect."""
        self.topic_filter = topic_filter
        self._counts = Counts()
        self._changed = threading.Condition()

    def on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Count one message."""
        with self._changed:
            counts = self._counts
            if msg.topic.endswith(STATUS):
                counts.status[msg.topic] = msg.payload.decode(errors="replace")
                return
            counts.messages += 1
            try:
                value = _value(msg.payload)
            except (ValueError, KeyError, TypeError):
                counts.malformed += 1
                return
            seen = counts.values.setdefault(msg.topic, set())
            if value in seen:
                counts.duplicates += 1
                return
            seen.add(value)
            counts.distinct += 1
            if value < counts.last.get(msg.topic, value):
                counts.out_of_order += 1
            else:
                counts.last[msg.topic] = value
            self._changed.notify_all()

    def report(self, expected: int, timeout: float) -> dict[str, Any]:
        """Wait for ``expected`` distinct states (or the timeout); report and reset."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._counts.distinct < expected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            counts, self._counts = self._counts, Counts()
        return {
            "messages": counts.messages,
            "distinct": counts.distinct,
            "duplicates": counts.duplicates,
            "out_of_order": counts.out_of_order,
            "malformed": counts.malformed,
            "last": counts.last,
            "status": counts.status,
        }

    def on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        """Subscribe (again after a reconnect)."""
        client.subscribe(self.topic_filter, qos=1)


def main() -> None:
    """Subscribe, say ready, then answer report requests until stdin closes."""
    counter = MirrorCounter(sys.argv[2])
    serve(
        "bench-mirror-sub",
        counter,
        lambda request: counter.report(request["expected"], request["timeout"]),
    )


if __name__ == "__main__":
    main()
