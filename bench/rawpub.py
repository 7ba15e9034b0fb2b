"""The raw paho QoS 1 rate: what one plain MQTT client gets through the same broker.

Run as ``python -m bench.rawpub PORT COUNT TOPIC WINDOW``. One paho client (TCP_NODELAY,
like cloudsync's) publishes COUNT QoS 1 messages in order with at most WINDOW of them
waiting for their PUBACK, as fast as paho goes; payloads are ``<time> <seq> raw``, so the
delivery counter counts them like the others. It prints one JSON line::

    {"sent": N, "acked": N, "start": <time.time()>, "end": <last PUBACK>, "rate": ...}
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
_TIMEOUT = 120.0


def run(port: int, count: int, topic: str, window: int) -> dict[str, Any]:
    """Publish ``count`` QoS 1 messages and wait for every PUBACK."""
    connected, done = threading.Event(), threading.Event()
    acked = 0
    end = 0.0

    def on_publish(*_args: Any) -> None:
        nonlocal acked, end
        acked += 1
        if acked == count:
            end = time.time()
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{os.getpid()}"
    )
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.on_connect = lambda *_args: connected.set()
    client.on_publish = on_publish
    client.connect(HOST, port)
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    if not connected.wait(10):
        sys.exit("bench.rawpub: no CONNACK within 10 s")
    start = time.time()
    for seq in range(count):
        client.publish(topic, f"{time.time():.6f} {seq} raw", qos=1)
    done.wait(_TIMEOUT)
    client.disconnect()
    client.loop_stop()
    seconds = (end or time.time()) - start
    return {
        "sent": count,
        "acked": acked,
        "start": start,
        "end": end,
        "rate": acked / seconds if seconds > 0 else 0.0,
    }


def main() -> None:
    """Parse the arguments, publish, print the JSON summary."""
    port, count, topic, window = sys.argv[1:]
    result = run(int(port), int(count), topic, int(window))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
