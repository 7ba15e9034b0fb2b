"""A steady publisher: QoS 0 messages at a fixed rate, for the websocket push phase.

Run as ``python -m bench.ratepub PORT RATE SECONDS TOPIC``. It speaks MQTT 3.1.1 over a
plain socket (bench.publisher's packets) and sends every 5 ms the messages due by then,
payloads ``<time> <seq> push``. It prints ``{"sent": N, "start": ..., "end": ...}``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from .publisher import _CONNACK, _DISCONNECT, _packet, _read_exactly, _string

HOST = "127.0.0.1"
TICK = 0.005


def run(port: int, rate: float, seconds: float, topic: str) -> dict[str, float]:
    """Publish ``rate`` messages a second for ``seconds``."""
    with socket.create_connection((HOST, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connect = b"\x00\x04MQTT\x04\x02\x00\x3c" + _string(f"bench-rate-{os.getpid()}")
        sock.sendall(_packet(0x10, connect))
        if _read_exactly(sock, 4) != _CONNACK:
            sys.exit("bench.ratepub: CONNECT refused")
        name = _string(topic)
        total = int(rate * seconds)
        start = time.time()
        sent = 0
        while sent < total:
            due = min(total, int((time.time() - start) * rate) + 1)
            if due > sent:
                now = time.time()
                sock.sendall(
                    b"".join(
                        _packet(0x30, name + f"{now:.6f} {seq} push".encode())
                        for seq in range(sent, due)
                    )
                )
                sent = due
            time.sleep(TICK)
        end = time.time()
        sock.sendall(_DISCONNECT)
    return {"sent": sent, "start": start, "end": end}


def main() -> None:
    """Parse the arguments, publish, print the JSON summary."""
    port, rate, seconds, topic = sys.argv[1:]
    result = run(int(port), float(rate), float(seconds), topic)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
