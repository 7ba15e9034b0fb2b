"""The delivery counter: a separate process subscribed at the broker.

Run as ``python -m bench.subscriber PORT FILTER``. It prints ``ready`` once subscribed,
then answers one JSON line per JSON request line on stdin::

    {"topic": "bench/out/...", "expected": 1234, "timeout": 5, "order": false}
    -> {"topic": ..., "delivered": 1234, "duplicates": 0, "p50_ms": ..., "p99_ms": ...,
        "first_at": ..., "last_at": ..., "out_of_order": 0, "connected_at": ...}

``first_at``/``last_at`` are the ``time.time()`` of the first and the last new message,
``out_of_order`` counts new messages whose sequence number is below one seen before on
the topic, and with ``"order": true`` the reply also lists the sequence numbers in the
order they first arrived. The session is persistent (clean_session false, QoS 1) and
reconnects within a quarter of a second, so it survives the outbox phase's broker restart
(the broker keeps sessions across restarts) without missing a message.

Payloads start with ``<send time> <seq>``: the send time is ``time.time()`` in the load
generator just before the request, so latency is measured from the HTTP send to the
delivery here. A topic's data is dropped once reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import json
import os
import sys
import threading
import time
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .stats import percentile

HOST = "127.0.0.1"


@dataclass
class TopicStats:
    """Deliveries seen on one topic."""

    seqs: set[bytes] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    order: list[int] = field(default_factory=list)
    duplicates: int = 0
    malformed: int = 0
    out_of_order: int = 0
    highest: int = -1
    first_at: float = 0.0
    last_at: float = 0.0


class Counter:
    """Per-topic delivery counts and latencies, fed by paho's network thread."""

    def __init__(self, topic_filter: str) -> None:
        """Start empty; (re)subscribe to ``topic_filter`` on every connect."""
        self.topic_filter = topic_filter
        self._topics: dict[str, TopicStats] = {}
        self._changed = threading.Condition()
        self.connected_at = 0.0

    def on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Count a delivery and its latency."""
        now = time.time()
        with self._changed:
            stats = self._topics.setdefault(msg.topic, TopicStats())
            parts = msg.payload.split(b" ", 2)
            try:
                sent_at = float(parts[0])
                seq = parts[1]
                number = int(seq)
            except (ValueError, IndexError):
                stats.malformed += 1
                return
            if seq in stats.seqs:
                stats.duplicates += 1
            else:
                stats.seqs.add(seq)
                stats.latencies.append(now - sent_at)
                stats.order.append(number)
                if number < stats.highest:
                    stats.out_of_order += 1
                stats.highest = max(stats.highest, number)
                stats.first_at = stats.first_at or now
                stats.last_at = now
            self._changed.notify_all()

    def report(
        self, topic: str, expected: int, timeout: float, *, order: bool = False
    ) -> dict[str, Any]:
        """Wait until ``expected`` distinct messages arrived (or timeout) and report."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                stats = self._topics.get(topic, TopicStats())
                remaining = deadline - time.monotonic()
                if len(stats.seqs) >= expected or remaining <= 0:
                    break
                self._changed.wait(remaining)
            self._topics.pop(topic, None)
        reply = {
            "topic": topic,
            "delivered": len(stats.seqs),
            "duplicates": stats.duplicates,
            "malformed": stats.malformed,
            "p50_ms": percentile(stats.latencies, 0.50) * 1000,
            "p99_ms": percentile(stats.latencies, 0.99) * 1000,
            "max_ms": max(stats.latencies, default=0.0) * 1000,
            "first_at": stats.first_at,
            "last_at": stats.last_at,
            "out_of_order": stats.out_of_order,
            "connected_at": self.connected_at,
        }
        if order:
            reply["order"] = stats.order
        return reply

    def on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        """(Re)subscribe; the broker may have kept the session, which is harmless."""
        self.connected_at = time.time()
        client.subscribe(self.topic_filter, qos=1)


def serve(
    name: str,
    counter: Any,
    answer: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    persistent: bool = False,
) -> None:
    """Run a counting child: subscribe, say ``ready``, answer requests on stdin.

    ``counter`` gives on_message and on_connect; the broker's port is argv[1].
    """
    port = int(sys.argv[1])
    subscribed = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{os.getpid()}",
        clean_session=not persistent,
    )
    if persistent:
        client.reconnect_delay_set(min_delay=0.05, max_delay=0.25)  # type: ignore[arg-type]
    client.on_message = counter.on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = counter.on_connect
    client.connect(HOST, port)
    client.loop_start()
    if not subscribed.wait(10):
        sys.exit(f"{name}: no SUBACK within 10 s")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        sys.stdout.write(json.dumps(answer(json.loads(line))) + "\n")
        sys.stdout.flush()
    client.disconnect()
    client.loop_stop()


def main() -> None:
    """Subscribe, say ready, then answer report requests until stdin closes."""
    counter = Counter(sys.argv[2])
    serve(
        "bench-sub",
        counter,
        lambda request: counter.report(
            request["topic"],
            request["expected"],
            request["timeout"],
            order=request.get("order", False),
        ),
        persistent=True,
    )


if __name__ == "__main__":
    main()
