"""Smoke tests for the broker fixtures and the CLI client helpers."""

from __future__ import annotations

import re
import ssl
from typing import TYPE_CHECKING

from cryptography import x509
import pytest

from tests.mosquitto import (
    CliAuth,
    MqttCliError,
    MqttSubscriber,
    ReceivedMessage,
    mqtt_publish,
    mqtt_subscribe_collect,
)
from tests.pki import CLIENT_CN, Pki

if TYPE_CHECKING:
    from pathlib import Path

    from tests.mosquitto import BrokerFactory, Mosquitto

BINARY = b"\x00\x01binary\x00\xff\n\x00"
WRONG_PASSWORD = "wrong"


def test_pki_material(pki: Pki, pki_files: dict[str, Path]) -> None:
    """The generated PKI loads into ssl, including the encrypted key."""
    context = ssl.create_default_context(cafile=pki_files["ca"])
    context.load_cert_chain(
        pki_files["client_cert"],
        pki_files["client_key_encrypted"],
        password=pki.client_key_password,
    )
    context.load_verify_locations(cadata=pki.ca_der)
    cert = x509.load_der_x509_certificate(pki.client_cert_der)
    assert f"CN={CLIENT_CN}" in cert.subject.rfc4514_string()
    assert pki.other_ca_pem != pki.ca_pem


async def test_plain_round_trip(plain_broker: Mosquitto) -> None:
    """A binary payload with zero bytes arrives unchanged, with QoS and retain."""
    async with MqttSubscriber(plain_broker, "smoke/plain/#", qos=1) as sub:
        await mqtt_publish(plain_broker, "smoke/plain/a b", BINARY, qos=1)
        await mqtt_publish(plain_broker, "smoke/plain/empty", b"")
        first, second = await sub.messages(2)
        await sub.assert_no_message(0.2)
    assert first == ReceivedMessage("smoke/plain/a b", BINARY, 1, retain=False)
    assert second == ReceivedMessage("smoke/plain/empty", b"", 0, retain=False)


async def test_collect_retained(plain_broker: Mosquitto) -> None:
    """mqtt_subscribe_collect sees a retained message published beforehand."""
    await mqtt_publish(plain_broker, "smoke/retained", "kept", qos=1, retain=True)
    got = await mqtt_subscribe_collect(plain_broker, "smoke/retained", 1)
    await mqtt_publish(plain_broker, "smoke/retained", b"", retain=True)
    assert got == [("smoke/retained", b"kept")]


async def test_tls_round_trip(tls_broker: Mosquitto) -> None:
    """The mTLS broker accepts the CA-signed client certificate."""
    assert tls_broker.url == f"mqtts://127.0.0.1:{tls_broker.port}"
    async with MqttSubscriber(tls_broker, "smoke/tls") as sub:
        await mqtt_publish(tls_broker, "smoke/tls", BINARY)
        assert (await sub.message()).payload == BINARY
    assert f"as {sub.client_id}" in tls_broker.log_text()


async def test_tls_refuses_without_cert(tls_broker: Mosquitto) -> None:
    """Without a client certificate the TLS broker refuses the connection."""
    auth = CliAuth(client_cert=False)
    result = await mqtt_publish(tls_broker, "smoke/tls", b"x", auth=auth, check=False)
    assert result.returncode != 0


async def test_tls_refuses_other_ca(tls_broker: Mosquitto) -> None:
    """A client certificate from an unrelated CA is rejected."""
    other = tls_broker.files
    auth = CliAuth(
        cert_file=other["other_client_cert"], key_file=other["other_client_key"]
    )
    with pytest.raises(MqttCliError):
        await mqtt_publish(tls_broker, "smoke/tls", b"x", auth=auth)


async def test_password_broker(password_broker: Mosquitto) -> None:
    """The right password works; a wrong one and no credentials are refused."""
    assert password_broker.username == "cloudsync"
    assert password_broker.password == "s3cret-pw"
    async with MqttSubscriber(password_broker, "smoke/pw") as sub:
        await mqtt_publish(password_broker, "smoke/pw", b"ok")
        assert (await sub.message()).payload == b"ok"
    for auth in (CliAuth(password=WRONG_PASSWORD), CliAuth(anonymous=True)):
        result = await mqtt_publish(
            password_broker, "smoke/pw", b"x", auth=auth, check=False
        )
        assert result.returncode != 0
    with pytest.raises(MqttCliError):
        async with MqttSubscriber(
            password_broker, "t", auth=CliAuth(password=WRONG_PASSWORD)
        ):
            pass


async def test_restart_same_port(broker_factory: BrokerFactory) -> None:
    """Restart, kill and start again keep the port; the broker keeps working."""
    broker = broker_factory()
    port = broker.port
    await broker.async_restart()
    assert broker.port == port
    broker.kill()
    assert not broker.running
    with pytest.raises(MqttCliError):
        await mqtt_publish(broker, "smoke/down", b"x")
    broker.start()
    assert broker.port == port
    async with MqttSubscriber(broker, "smoke/up") as sub:
        await mqtt_publish(broker, "smoke/up", b"back")
        assert (await sub.message()).payload == b"back"
    assert len(re.findall(r"mosquitto version \S+ running", broker.log_text())) == 3
