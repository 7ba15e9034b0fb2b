"""Payload encoding between MQTT bytes and JSON/HA text."""

from __future__ import annotations

import base64

from .errors import InvalidPayloadError

ENCODING_UTF8 = "utf-8"
ENCODING_BASE64 = "base64"
ENCODINGS = (ENCODING_UTF8, ENCODING_BASE64)

# Leading bytes of common binary formats, for a readable sensor state.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"RIFF", "audio/wav"),
)


def encode_payload(payload: bytes) -> tuple[str, str]:
    """Return (text, encoding): UTF-8 text when valid, base64 otherwise."""
    try:
        return payload.decode(ENCODING_UTF8), ENCODING_UTF8
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), ENCODING_BASE64


def decode_payload(text: str, encoding: str) -> bytes:
    """Return the bytes a payload's text stands for; base64 may be wrapped in lines."""
    try:
        if encoding == ENCODING_UTF8:
            return text.encode(ENCODING_UTF8)
        if encoding == ENCODING_BASE64:
            return base64.b64decode("".join(text.split()), validate=True)
    except ValueError as err:  # binascii.Error, UnicodeError, non-ASCII base64
        msg = f"payload is not valid {encoding}: {err}"
        raise InvalidPayloadError(msg) from err
    msg = f"unknown encoding {encoding!r}: use {' or '.join(ENCODINGS)}"
    raise InvalidPayloadError(msg)


def describe_binary(payload: bytes) -> dict[str, str]:
    """Return the guessed media type of a binary payload."""
    for signature, media_type in _SIGNATURES:
        if payload.startswith(signature):
            return {"payload_type": media_type}
    return {"payload_type": "application/octet-stream"}
