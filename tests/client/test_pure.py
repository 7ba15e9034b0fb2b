"""Logic of the client core that needs no broker: URLs, topics, certificates, imports."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path
import socket
import ssl

import pytest

from custom_components.cloudsync.client import (
    BrokerConfig,
    BrokerTLSError,
    BrokerUnreachableError,
    CertificateError,
    ConnectionRefusedByHostError,
    ConnectTimeoutError,
    InvalidTopicError,
    UnknownHostError,
    build_ssl_context,
    certificate_to_pem,
    paho_client,
    parse_broker_url,
    private_key_to_pem,
    topics as topics_module,
    validate_filter,
    validate_topic,
)
from custom_components.cloudsync.client.paho_client import connect_error
from tests.pki import Pki

CLIENT_DIR = Path(__file__).parents[2] / "custom_components" / "cloudsync" / "client"


def test_client_imports_nothing_from_homeassistant() -> None:
    """The MQTT core stays independent of Home Assistant."""
    offenders = []
    for path in CLIENT_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] == "homeassistant"
            ]
    assert offenders == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("broker.example.com", "mqtt://broker.example.com:1883"),
        ("10.0.0.5", "mqtt://10.0.0.5:1883"),
        ("Broker.Example.com:1884", "mqtt://broker.example.com:1884"),
        ("host:8883", "mqtts://host:8883"),
        ("mqtts://host", "mqtts://host:8883"),
        ("mqtt://host", "mqtt://host:1883"),
        ("tcp://host:1883", "mqtt://host:1883"),
        ("ssl://host:9999", "mqtts://host:9999"),
        ("  mqtt://host:1/  ", "mqtt://host:1"),
        ("[::1]:1883", "mqtt://[::1]:1883"),
    ],
)
def test_parse_broker_url(text: str, expected: str) -> None:
    """Users may type host, host:port or a URL; the result is normalized."""
    assert str(parse_broker_url(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "http://host",
        "mqtt://",
        "host:notaport",
        "host:0",
        "host:70000",
        "mqtt://user:pw@host",
        "mqtt://host/path",
        "mqtt://host?x=1",
        "mqtt://no such host",
        "mqtt://a..b:1883",
        "-host",
    ],
)
def test_parse_broker_url_rejects(text: str) -> None:
    """Bad URLs raise ValueError with a message, never a silent default."""
    with pytest.raises(ValueError, match=r"\w"):
        parse_broker_url(text)


def test_secrets_not_in_repr() -> None:
    """A config's repr shows no password or key."""
    config = BrokerConfig(
        host="h",
        username="u",
        password="hunter2",
        client_key="KEYDATA",
        key_password="kp",
    )
    assert "hunter2" not in repr(config)
    assert "KEYDATA" not in repr(config)
    assert "kp'" not in repr(config)


@pytest.mark.parametrize("topic", ["a", "a/b", "/", "a//b", "$SYS/x", "ü/ß"])
def test_valid_topics(topic: str) -> None:
    """Concrete topics pass."""
    validate_topic(topic)
    validate_filter(topic)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "a/+",
        "#",
        "a\x00b",
        "x" * 65536,
        "a\x07b",
        "a\x1f",
        "\x7f",
        "a\x85b",
        "\x9f",
        "a\ufffe",
        "a\uffff",
        "\ufdd0",
        "\ufdef",
        "a\U0001ffff",
        "\U0010fffe",
        "a\ud800",
    ],
)
def test_invalid_publish_topics(topic: str) -> None:
    """Wildcards, empty, NUL and oversized topics are refused for publishing."""
    with pytest.raises(InvalidTopicError):
        validate_topic(topic)


def test_valid_topics_are_remembered_within_a_bound() -> None:
    """A topic found valid is not checked again; the memory of them stays bounded."""
    for i in range(3000):
        validate_topic(f"remembered/{i}")
    assert 0 < len(topics_module._VALID_TOPICS) <= topics_module._VALID_TOPICS_MAX
    validate_topic("remembered/2999")
    assert "remembered/2999" in topics_module._VALID_TOPICS
    validate_topic("long/" + "x" * 300)
    assert "long/" + "x" * 300 not in topics_module._VALID_TOPICS
    for _ in range(2):  # refused every time, never remembered
        with pytest.raises(InvalidTopicError):
            validate_topic("remembered/+")


@pytest.mark.parametrize(
    "topic_filter", ["#", "+", "a/+/b", "a/#", "+/+/#", "$share/g/a/#"]
)
def test_valid_filters(topic_filter: str) -> None:
    """Wildcards where MQTT allows them pass."""
    validate_filter(topic_filter)


@pytest.mark.parametrize(
    "topic_filter",
    ["a/#/b", "a#", "a/b+", "+a", "##", "", "a\x00", "a\x07/#", "+/\ufffe", "\x9f"],
)
def test_invalid_filters(topic_filter: str) -> None:
    """Wildcards inside levels or # before the end are refused."""
    with pytest.raises(InvalidTopicError):
        validate_filter(topic_filter)


def test_certificate_conversion(pki: Pki) -> None:
    """PEM and DER certificates convert to the same PEM; garbage is refused."""
    assert certificate_to_pem(pki.ca_der) == certificate_to_pem(pki.ca_pem.encode())
    assert certificate_to_pem(pki.ca_der).startswith("-----BEGIN CERTIFICATE-----")
    with pytest.raises(CertificateError):
        certificate_to_pem(b"not a certificate")


def test_private_key_conversion(pki: Pki) -> None:
    """DER keys convert to PEM; encrypted keys need the right password."""
    assert "PRIVATE KEY" in private_key_to_pem(pki.client_key_der, None)
    encrypted = pki.client_key_encrypted_pem.encode()
    converted = private_key_to_pem(encrypted, pki.client_key_password)
    assert "ENCRYPTED PRIVATE KEY" in converted
    with pytest.raises(CertificateError, match="password"):
        private_key_to_pem(encrypted, None)
    with pytest.raises(CertificateError):
        private_key_to_pem(encrypted, "wrong")
    with pytest.raises(CertificateError, match="not encrypted"):
        private_key_to_pem(pki.client_key_pem.encode(), "unneeded")


def test_ssl_context_rejects_mismatched_key(pki: Pki) -> None:
    """A client key that does not belong to the certificate is a CertificateError."""
    config = BrokerConfig(
        host="127.0.0.1",
        tls=True,
        ca_cert=pki.ca_pem,
        client_cert=pki.client_cert_pem,
        client_key=pki.other_client_key_pem,
    )
    with pytest.raises(CertificateError):
        build_ssl_context(config)


def test_ssl_context_verifies_by_default(pki: Pki) -> None:
    """Hostname checking is on unless turned off; the chain is always required."""
    config = BrokerConfig(host="127.0.0.1", tls=True, ca_cert=pki.ca_pem)
    assert build_ssl_context(config).check_hostname is True
    relaxed = build_ssl_context(BrokerConfig(host="h", tls=True, verify_hostname=False))
    assert relaxed.check_hostname is False
    import ssl

    assert relaxed.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("error", "expected", "code"),
    [
        (
            ConnectionRefusedError(111, "Connection refused"),
            ConnectionRefusedByHostError,
            "connection_refused",
        ),
        (
            socket.gaierror(-2, "Name or service not known"),
            UnknownHostError,
            "unknown_host",
        ),
        (TimeoutError("timed out"), ConnectTimeoutError, "connect_timeout"),
        (
            ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
            BrokerTLSError,
            "tls_error",
        ),
        (
            OSError(113, "No route to host"),
            BrokerUnreachableError,
            "broker_unreachable",
        ),
    ],
)
def test_connect_error_says_why(error: OSError, expected: type, code: str) -> None:
    """Refused, unknown host, timeout and TLS failures are told apart by class and code."""
    err = connect_error(BrokerConfig(host="broker.example", port=1883), error)
    assert type(err) is expected
    assert err.code == code
    assert "broker.example" in str(err)


def test_connect_error_reset_during_tls_handshake() -> None:
    """mqtts:// at a plain listener: the reset during the handshake is a TLS error."""
    reset = ConnectionResetError(104, "Connection reset by peer")
    err = connect_error(BrokerConfig(host="h", tls=True), reset)
    assert type(err) is BrokerTLSError
    assert "does this port speak TLS?" in str(err)
    plain = connect_error(BrokerConfig(host="h"), reset)
    assert type(plain) is BrokerUnreachableError


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca", "its CA is not one"),
        ("sslv3 alert certificate expired", "client certificate: it has expired"),
        ("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED]", "requires a client certificate"),
        ("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] bad", "rejected the client certificate"),
        ("certificate verify failed: Hostname mismatch", "is not for broker.test"),
        ("certificate verify failed: unable to get local issuer", "does not verify"),
        ("Connection reset by peer", None),
    ],
)
def test_certificate_problem_names_the_certificate(
    detail: str, expected: str | None
) -> None:
    """TLS failures say whether the broker's or the client's certificate is at fault."""
    config = BrokerConfig(host="broker.test", port=8883, tls=True)
    problem = paho_client.certificate_problem(config, detail)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem


def test_lost_alert_falls_back_on_the_configured_certificate(pki: Pki) -> None:
    """Without the broker's alert, what is known of the client certificate speaks."""
    base = BrokerConfig(host="broker.test", port=8883, tls=True)
    reset = "Connection reset by peer"
    assert "none is configured" in str(paho_client.handshake_error(base, reset))
    expired = replace(base, client_cert=pki.client_cert_expired_pem)
    assert "it has expired" in str(paho_client.handshake_error(expired, reset))
    valid = replace(base, client_cert=pki.client_cert_pem)
    assert "not accept the client certificate" in str(
        paho_client.handshake_error(valid, reset)
    )
