"""The ingest burst: a separate process that publishes N QoS 0 messages as fast as it can.

Run as ``python -m bench.publisher PORT COUNT TAG TOPIC...``. It speaks MQTT 3.1.1 over a
plain socket with prebuilt packets, so the burst costs almost no CPU next to the Home
Assistant it loads. Message ``seq`` goes to ``TOPIC[seq % len(TOPIC)]`` with the payload
``<time> <seq> <TAG>``. With ``--distinct N PREFIX`` instead of the topics, the topics are
``PREFIX/0`` ... ``PREFIX/<N-1>`` (too many for the command line). After the last PUBLISH it waits for a PINGRESP: the broker answers
in order, so by then it has routed every message. It prints one JSON line::

    {"sent": N, "start": <time.time()>, "routed": <time.time()>}
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

HOST = "127.0.0.1"
_BATCH = 500
_CONNACK = b"\x20\x02\x00\x00"
_PINGREQ = b"\xc0\x00"
_PINGRESP = b"\xd0\x00"
_DISCONNECT = b"\xe0\x00"
_VARINT_BITS = 7
_VARINT_MASK = 0x7F


def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _packet(first_byte: int, body: bytes) -> bytes:
    """Return a packet with the remaining length encoded as a variable-byte integer."""
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & _VARINT_MASK, length >> _VARINT_BITS
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([first_byte, *encoded]) + body


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            sys.exit("bench.publisher: the broker closed the connection")
        data += chunk
    return data


def burst(port: int, count: int, tag: str, topics: list[str]) -> dict[str, float]:
    """Connect, publish ``count`` messages, wait until the broker routed them."""
    with socket.create_connection((HOST, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connect = b"\x00\x04MQTT\x04\x02\x00\x3c" + _string(f"bench-pub-{os.getpid()}")
        sock.sendall(_packet(0x10, connect))
        if _read_exactly(sock, 4) != _CONNACK:
            sys.exit("bench.publisher: CONNECT refused")
        names = [_string(topic) for topic in topics]
        start = time.time()
        for first in range(0, count, _BATCH):
            now = f"{time.time():.6f}"
            sock.sendall(
                b"".join(
                    _packet(
                        0x30, names[seq % len(names)] + f"{now} {seq} {tag}".encode()
                    )
                    for seq in range(first, min(first + _BATCH, count))
                )
            )
        sock.sendall(_PINGREQ)
        if _read_exactly(sock, 2) != _PINGRESP:
            sys.exit("bench.publisher: unexpected reply to PINGREQ")
        routed = time.time()
        sock.sendall(_DISCONNECT)
    return {"sent": count, "start": start, "routed": routed}


def main() -> None:
    """Parse the arguments, burst, print the JSON summary."""
    port, count, tag, *topics = sys.argv[1:]
    if topics[0] == "--distinct":
        _, distinct, prefix = topics
        topics = [f"{prefix}/{index}" for index in range(int(distinct))]
    sys.stdout.write(json.dumps(burst(int(port), int(count), tag, topics)) + "\n")


if __name__ == "__main__":
    main()
