"""Tests for the cloudsync config flow, against real mosquitto brokers."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
import re
from typing import TYPE_CHECKING, Any
from unittest.mock import AsyncMock, patch
import uuid

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.data_entry_flow import FlowResultType, InvalidData
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
)

from custom_components.cloudsync.const import (
    CONF_CA_CERT,
    CONF_CLIENT_CERT,
    CONF_CLIENT_ID,
    CONF_CLIENT_KEY,
    CONF_KEEPALIVE,
    CONF_KEY_PASSWORD,
    CONF_PROFILE,
    CONF_PROTOCOL,
    CONF_QOS,
    CONF_RETAIN,
    CONF_URL,
    CONF_VERIFY_HOSTNAME,
    DOMAIN,
)
from custom_components.cloudsync.entry_data import default_title
from custom_components.cloudsync.outbox import outbox_limits
from tests.common import entry_for, setup_entry
from tests.mosquitto import MqttSubscriber, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator
    from pathlib import Path

    from homeassistant.core import HomeAssistant

    from tests.mosquitto import BrokerFactory, Mosquitto
    from tests.pki import Pki

    Upload = Callable[[str | bytes], str]

pytestmark = pytest.mark.usefixtures("socket_enabled")

CLIENT_ID_RE = re.compile(r"cloudsync-[0-9a-f]{12}")
PEM_UPLOADS = {
    CONF_CA_CERT: "ca_pem",
    CONF_CLIENT_CERT: "client_cert_pem",
    CONF_CLIENT_KEY: "client_key_pem",
}


@pytest.fixture
def mock_setup_entry() -> Generator[AsyncMock]:
    """Keep created entries from connecting: these tests are about the flow."""
    with patch(
        "custom_components.cloudsync.async_setup_entry", return_value=True
    ) as mock:
        yield mock


@pytest.fixture
def upload(tmp_path: Path) -> Generator[Upload]:
    """Stand in for the frontend's file upload: return a file id for some content."""
    files: dict[str, Path] = {}

    @contextmanager
    def process_uploaded_file(hass: HomeAssistant, file_id: str) -> Iterator[Path]:
        if file_id not in files:
            msg = "File does not exist"
            raise ValueError(msg)
        yield files.pop(file_id)  # like HA, a file can be read only once

    def add(content: str | bytes) -> str:
        file_id = str(uuid.uuid4())
        path = tmp_path / file_id
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        files[file_id] = path
        return file_id

    with patch(
        "custom_components.cloudsync.certificates.process_uploaded_file",
        process_uploaded_file,
    ):
        yield add


def closed_url() -> str:
    """Return the URL of a port on 127.0.0.1 that nothing listens on."""
    return f"mqtt://127.0.0.1:{free_port()}"


def broker_entry(broker: Mosquitto, **data: Any) -> MockConfigEntry:
    """Return a config entry for a broker."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=broker.url.partition("://")[2],
        unique_id=broker.url,
        data={
            CONF_URL: broker.url,
            CONF_CLIENT_ID: "cloudsync-0123456789ab",
            CONF_PROTOCOL: "mqttv311",
            **data,
        },
    )


def uploads(upload: Upload, pki: Pki, files: dict[str, str | bytes]) -> dict[str, str]:
    """Upload files given as a Pki attribute name or raw bytes; return the form input."""
    return {
        field: upload(getattr(pki, value) if isinstance(value, str) else value)
        for field, value in files.items()
    }


async def start_user_flow(hass: HomeAssistant, url: str, **extra: Any) -> dict:
    """Start the user flow and submit a URL."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    # hassfest forbids URLs in strings.json: the example URL is a placeholder.
    assert result["description_placeholders"] == {
        "example_url": "mqtts://broker.example.com:8883"
    }
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: url, **extra}
    )


def suggested(result: dict, field: str) -> Any:
    """Return the suggested value of a form field."""
    for key in result["data_schema"].schema:
        if key == field:
            return (key.description or {}).get("suggested_value")
    raise KeyError(field)


@pytest.mark.usefixtures("mock_setup_entry")
async def test_user_plain(hass: HomeAssistant, plain_broker: Mosquitto) -> None:
    """A plain broker typed as host:port becomes an entry with a generated client id."""
    result = await start_user_flow(hass, f"127.0.0.1:{plain_broker.port}")

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"127.0.0.1:{plain_broker.port}"
    assert result["result"].unique_id == plain_broker.url
    assert result["data"] == {
        CONF_URL: plain_broker.url,
        CONF_CLIENT_ID: result["data"][CONF_CLIENT_ID],
        CONF_PROTOCOL: "mqttv311",
        CONF_PROFILE: "generic",
    }
    assert CLIENT_ID_RE.fullmatch(result["data"][CONF_CLIENT_ID])


@pytest.mark.usefixtures("mock_setup_entry")
async def test_user_client_id_and_mqtt5(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """A given client id and MQTT 5 are stored as given."""
    result = await start_user_flow(
        hass,
        plain_broker.url,
        **{CONF_CLIENT_ID: " my-client ", CONF_PROTOCOL: "mqttv5"},
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_CLIENT_ID] == "my-client"
    assert result["data"][CONF_PROTOCOL] == "mqttv5"


async def test_user_already_configured(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """A broker with an entry already is not added twice, whatever the URL's form."""
    broker_entry(plain_broker).add_to_hass(hass)

    result = await start_user_flow(hass, f"MQTT://127.0.0.1:{plain_broker.port}/")

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


@pytest.mark.usefixtures("mock_setup_entry")
@pytest.mark.parametrize(
    ("bad_url", "errors"),
    [
        ("ftp://127.0.0.1", {CONF_URL: "invalid_url"}),
        ("mqtt://127.0.0.1:99999", {CONF_URL: "invalid_url"}),
        ("  ", {CONF_URL: "invalid_url"}),
        (None, {"base": "connection_refused"}),
    ],
)
async def test_user_errors(
    hass: HomeAssistant,
    plain_broker: Mosquitto,
    bad_url: str | None,
    errors: dict[str, str],
) -> None:
    """A bad URL or an unreachable broker shows an error; fixing it finishes the flow."""
    result = await start_user_flow(hass, bad_url or closed_url(), username="user")

    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == errors
    assert suggested(result, CONF_USERNAME) == "user"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plain_broker.url}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == plain_broker.url


@pytest.mark.usefixtures("mock_setup_entry")
async def test_user_unexpected_error(
    hass: HomeAssistant, plain_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception is logged and shown as unknown; a retry finishes."""
    with patch(
        "custom_components.cloudsync.probe.async_probe_broker",
        side_effect=RuntimeError("boom"),
    ):
        result = await start_user_flow(hass, plain_broker.url)

    assert result["errors"] == {"base": "unknown"}
    assert "Unexpected error while connecting" in caplog.text

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plain_broker.url}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.usefixtures("mock_setup_entry")
@pytest.mark.parametrize(
    "credentials",
    [
        {CONF_USERNAME: "cloudsync", CONF_PASSWORD: "wrong"},
        {CONF_USERNAME: "nobody", CONF_PASSWORD: "s3cret-pw"},
        {},
    ],
)
async def test_user_password_broker(
    hass: HomeAssistant,
    password_broker: Mosquitto,
    credentials: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused credentials show invalid_auth; the right ones are stored."""
    result = await start_user_flow(hass, password_broker.url, **credentials)

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    assert suggested(result, CONF_PASSWORD) is None  # never sent back to the browser

    good = {CONF_USERNAME: "cloudsync", CONF_PASSWORD: "s3cret-pw"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: password_broker.url, **good}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_USERNAME] == "cloudsync"
    assert result["data"][CONF_PASSWORD] == "s3cret-pw"
    assert result["options"] == {"app_isolation": True}
    assert "s3cret-pw" not in caplog.text
    assert "wrong" not in caplog.text


@pytest.mark.usefixtures("mock_setup_entry")
@pytest.mark.parametrize(
    ("files", "verify_hostname"),
    [
        (PEM_UPLOADS, True),
        (
            {
                CONF_CA_CERT: "ca_der",
                CONF_CLIENT_CERT: "client_cert_der",
                CONF_CLIENT_KEY: "client_key_der",
            },
            False,
        ),
    ],
    ids=["pem", "der"],
)
async def test_tls(
    hass: HomeAssistant,
    tls_broker: Mosquitto,
    pki: Pki,
    upload: Upload,
    files: dict[str, str],
    verify_hostname: bool,
) -> None:
    """mTLS with PEM or DER uploads stores the certificates as PEM text."""
    result = await start_user_flow(hass, tls_broker.url)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "tls"
    assert result["description_placeholders"] == {CONF_URL: tls_broker.url}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {**uploads(upload, pki, files), CONF_VERIFY_HOSTNAME: verify_hostname},
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"127.0.0.1:{tls_broker.port}"
    assert result["result"].unique_id == tls_broker.url
    assert result["data"] == {
        CONF_URL: tls_broker.url,
        CONF_CLIENT_ID: result["data"][CONF_CLIENT_ID],
        CONF_PROTOCOL: "mqttv311",
        CONF_PROFILE: "generic",
        CONF_CA_CERT: pki.ca_pem,
        CONF_CLIENT_CERT: pki.client_cert_pem,
        CONF_CLIENT_KEY: pki.client_key_pem,
        CONF_VERIFY_HOSTNAME: verify_hostname,
    }


@pytest.mark.usefixtures("mock_setup_entry")
async def test_tls_encrypted_key(
    hass: HomeAssistant, tls_broker: Mosquitto, pki: Pki, upload: Upload
) -> None:
    """An encrypted key stays encrypted, with its password stored beside it."""
    files = {**PEM_UPLOADS, CONF_CLIENT_KEY: "client_key_encrypted_pem"}
    result = await start_user_flow(hass, tls_broker.url)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            **uploads(upload, pki, files),
            CONF_KEY_PASSWORD: pki.client_key_password,
            CONF_VERIFY_HOSTNAME: True,
        },
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    data = result["data"]
    assert data[CONF_CLIENT_KEY].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert data[CONF_KEY_PASSWORD] == pki.client_key_password


@pytest.mark.usefixtures("mock_setup_entry")
@pytest.mark.parametrize(
    ("files", "key_password", "errors"),
    [
        (
            {**PEM_UPLOADS, CONF_CA_CERT: b"not a certificate"},
            None,
            {CONF_CA_CERT: "invalid_ca_cert"},
        ),
        (
            {**PEM_UPLOADS, CONF_CLIENT_CERT: b"-----BEGIN CERTIFICATE-----\nx"},
            None,
            {CONF_CLIENT_CERT: "invalid_client_cert"},
        ),
        (
            {**PEM_UPLOADS, CONF_CLIENT_KEY: b"\x30\x03\x02\x01\x00"},
            None,
            {CONF_CLIENT_KEY: "invalid_client_key"},
        ),
        (
            {**PEM_UPLOADS, CONF_CLIENT_KEY: "client_key_encrypted_pem"},
            None,
            {CONF_CLIENT_KEY: "invalid_client_key"},
        ),
        (
            {**PEM_UPLOADS, CONF_CLIENT_KEY: "client_key_encrypted_pem"},
            "wrong",
            {CONF_CLIENT_KEY: "invalid_client_key"},
        ),
        (PEM_UPLOADS, "not-encrypted", {CONF_CLIENT_KEY: "invalid_client_key"}),
        (
            {CONF_CA_CERT: "ca_pem", CONF_CLIENT_CERT: "client_cert_pem"},
            None,
            {"base": "client_cert_and_key"},
        ),
        (
            {CONF_CA_CERT: "ca_pem", CONF_CLIENT_KEY: "client_key_pem"},
            None,
            {"base": "client_cert_and_key"},
        ),
        (
            {**PEM_UPLOADS, CONF_CLIENT_KEY: "other_client_key_pem"},
            None,
            {"base": "client_key_mismatch"},
        ),
        ({**PEM_UPLOADS, CONF_CA_CERT: "other_ca_pem"}, None, {"base": "tls_error"}),
        (
            {k: v for k, v in PEM_UPLOADS.items() if k != CONF_CA_CERT},
            None,
            {"base": "tls_error"},
        ),
        ({CONF_CA_CERT: "ca_pem"}, None, {"base": "tls_error"}),
        (
            {
                CONF_CA_CERT: "ca_pem",
                CONF_CLIENT_CERT: "other_client_cert_pem",
                CONF_CLIENT_KEY: "other_client_key_pem",
            },
            None,
            {"base": "tls_error"},
        ),
    ],
    ids=[
        "bad_ca",
        "bad_cert",
        "bad_key",
        "encrypted_key_no_password",
        "encrypted_key_wrong_password",
        "password_for_plain_key",
        "cert_without_key",
        "key_without_cert",
        "key_not_the_certs",
        "other_ca",
        "system_ca",
        "no_client_cert",
        "client_cert_of_other_ca",
    ],
)
async def test_tls_errors(
    hass: HomeAssistant,
    tls_broker: Mosquitto,
    pki: Pki,
    upload: Upload,
    files: dict[str, str | bytes],
    key_password: str | None,
    errors: dict[str, str],
) -> None:
    """Bad uploads and certificates the broker refuses show errors; good ones finish."""
    result = await start_user_flow(hass, tls_broker.url)
    form = uploads(upload, pki, files) | {CONF_VERIFY_HOSTNAME: True}
    if key_password:
        form[CONF_KEY_PASSWORD] = key_password
    result = await hass.config_entries.flow.async_configure(result["flow_id"], form)

    assert result["type"] is FlowResultType.FORM
    # Files that read fine but did not connect are kept for the retry.
    refused = errors.get("base") in {"tls_error", "client_key_mismatch"}
    assert result["step_id"] == ("tls_retry" if refused else "tls")
    assert result["errors"] == errors

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        uploads(upload, pki, PEM_UPLOADS) | {CONF_VERIFY_HOSTNAME: True},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_CLIENT_CERT] == pki.client_cert_pem


@pytest.mark.usefixtures("mock_setup_entry")
async def test_tls_retry_keeps_the_uploads(
    hass: HomeAssistant, tls_broker: Mosquitto, pki: Pki, upload: Upload
) -> None:
    """After a refused handshake only the wrong file needs uploading again."""
    result = await start_user_flow(hass, tls_broker.url)
    files = {**PEM_UPLOADS, CONF_CA_CERT: "other_ca_pem"}
    form = uploads(upload, pki, files) | {CONF_VERIFY_HOSTNAME: True}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], form)
    assert result["step_id"] == "tls_retry"
    assert result["errors"] == {"base": "tls_error"}

    form = uploads(upload, pki, {CONF_CA_CERT: "ca_pem"}) | {CONF_VERIFY_HOSTNAME: True}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_CA_CERT] == pki.ca_pem
    assert result["data"][CONF_CLIENT_KEY] == pki.client_key_pem


@pytest.mark.usefixtures("mock_setup_entry")
async def test_tls_upload_gone(
    hass: HomeAssistant, tls_broker: Mosquitto, pki: Pki, upload: Upload
) -> None:
    """A file id the upload store does not know is an invalid file."""
    result = await start_user_flow(hass, tls_broker.url)
    form = uploads(upload, pki, PEM_UPLOADS) | {CONF_VERIFY_HOSTNAME: True}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], form | {CONF_CA_CERT: str(uuid.uuid4())}
    )

    assert result["errors"] == {CONF_CA_CERT: "invalid_ca_cert"}


async def test_reconfigure_to_other_broker(
    hass: HomeAssistant, plain_broker: Mosquitto, password_broker: Mosquitto
) -> None:
    """Reconfiguring to another broker changes the unique id, title and data."""
    entry = broker_entry(plain_broker, **{CONF_USERNAME: "old", CONF_PASSWORD: "pw"})
    entry.add_to_hass(hass)

    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    assert suggested(result, CONF_URL) == plain_broker.url
    assert suggested(result, CONF_USERNAME) == "old"
    assert suggested(result, CONF_PASSWORD) is None

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_URL: password_broker.url,
            CONF_USERNAME: "cloudsync",
            CONF_PASSWORD: "s3cret-pw",
            CONF_CLIENT_ID: "cloudsync-0123456789ab",
            CONF_PROTOCOL: "mqttv5",
        },
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.unique_id == password_broker.url
    assert entry.title == f"127.0.0.1:{password_broker.port}"
    assert entry.data == {
        CONF_URL: password_broker.url,
        CONF_USERNAME: "cloudsync",
        CONF_PASSWORD: "s3cret-pw",
        CONF_CLIENT_ID: "cloudsync-0123456789ab",
        CONF_PROTOCOL: "mqttv5",
        CONF_PROFILE: "generic",
    }


@pytest.mark.parametrize(
    ("url", "title"),
    [
        ("mqtt://broker.example.com:1883", "broker.example.com"),
        ("mqtts://broker.example.com:8883", "broker.example.com"),
        ("mqtts://broker.example.com:1883", "broker.example.com:1883"),
        ("mqtt://127.0.0.1:1884", "127.0.0.1:1884"),
        ("mqtt://[::1]:1883", "::1"),
        ("mqtt://[::1]:1884", "[::1]:1884"),
    ],
)
def test_default_title(url: str, title: str) -> None:
    """A new broker is named after its host; the port only when it is not the usual."""
    assert default_title(url) == title


async def test_reconfigure_keeps_a_chosen_title(
    hass: HomeAssistant, plain_broker: Mosquitto, password_broker: Mosquitto
) -> None:
    """A title the user gave the broker survives a URL change; a default one follows."""
    entry = broker_entry(plain_broker)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, title="Cloud broker")
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_URL: password_broker.url,
            CONF_USERNAME: password_broker.username,
            CONF_PASSWORD: password_broker.password,
            CONF_PROTOCOL: "mqttv311",
        },
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.title == "Cloud broker"


async def test_reconfigure_already_configured(
    hass: HomeAssistant, plain_broker: Mosquitto, password_broker: Mosquitto
) -> None:
    """Reconfiguring to a broker another entry has aborts and changes nothing."""
    entry = broker_entry(plain_broker)
    entry.add_to_hass(hass)
    broker_entry(password_broker).add_to_hass(hass)

    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: password_broker.url, CONF_PROTOCOL: "mqttv311"}
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.unique_id == plain_broker.url


@pytest.mark.parametrize(
    ("bad_url", "errors"),
    [("mqtt://", {CONF_URL: "invalid_url"}), (None, {"base": "connection_refused"})],
)
async def test_reconfigure_errors(
    hass: HomeAssistant,
    password_broker: Mosquitto,
    bad_url: str | None,
    errors: dict[str, str],
) -> None:
    """Errors show on the reconfigure form; an empty password keeps the stored one."""
    entry = broker_entry(
        password_broker, **{CONF_USERNAME: "cloudsync", CONF_PASSWORD: "s3cret-pw"}
    )
    entry.add_to_hass(hass)
    form = {CONF_USERNAME: "cloudsync", CONF_PROTOCOL: "mqttv311"}

    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], form | {CONF_URL: bad_url or closed_url()}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    assert result["errors"] == errors

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], form | {CONF_URL: f"127.0.0.1:{password_broker.port}"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.unique_id == password_broker.url
    assert entry.data[CONF_PASSWORD] == "s3cret-pw"
    assert CLIENT_ID_RE.fullmatch(entry.data[CONF_CLIENT_ID])


async def test_reconfigure_new_user_needs_password(
    hass: HomeAssistant, password_broker: Mosquitto
) -> None:
    """The stored password is not sent for another username."""
    entry = broker_entry(
        password_broker, **{CONF_USERNAME: "cloudsync", CONF_PASSWORD: "s3cret-pw"}
    )
    entry.add_to_hass(hass)

    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_URL: password_broker.url,
            CONF_USERNAME: "other",
            CONF_PROTOCOL: "mqttv5",
        },
    )

    assert result["errors"] == {"base": "invalid_auth"}
    assert entry.data[CONF_USERNAME] == "cloudsync"


async def test_reconfigure_tls(
    hass: HomeAssistant,
    plain_broker: Mosquitto,
    tls_broker: Mosquitto,
    pki: Pki,
    upload: Upload,
) -> None:
    """Moving to a TLS broker asks for certificates; a later run keeps them."""
    entry = broker_entry(plain_broker)
    entry.add_to_hass(hass)
    form = {CONF_URL: tls_broker.url, CONF_PROTOCOL: "mqttv311"}

    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure_tls"
    assert suggested(result, CONF_VERIFY_HOSTNAME) is True

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        uploads(upload, pki, PEM_UPLOADS) | {CONF_VERIFY_HOSTNAME: False},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.unique_id == tls_broker.url
    assert entry.data[CONF_CLIENT_KEY] == pki.client_key_pem
    assert entry.data[CONF_VERIFY_HOSTNAME] is False

    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], form)
    assert suggested(result, CONF_VERIFY_HOSTNAME) is False
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_VERIFY_HOSTNAME: True}
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_CA_CERT] == pki.ca_pem
    assert entry.data[CONF_CLIENT_CERT] == pki.client_cert_pem
    assert entry.data[CONF_CLIENT_KEY] == pki.client_key_pem
    assert entry.data[CONF_VERIFY_HOSTNAME] is True


async def test_reconfigure_tls_new_key(
    hass: HomeAssistant, tls_broker: Mosquitto, pki: Pki, upload: Upload
) -> None:
    """A newly uploaded key replaces the stored key and its password."""
    entry = broker_entry(
        tls_broker,
        **{
            CONF_CA_CERT: pki.ca_pem,
            CONF_CLIENT_CERT: pki.client_cert_pem,
            CONF_CLIENT_KEY: pki.client_key_encrypted_pem,
            CONF_KEY_PASSWORD: pki.client_key_password,
            CONF_VERIFY_HOSTNAME: True,
        },
    )
    entry.add_to_hass(hass)

    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: tls_broker.url, CONF_PROTOCOL: "mqttv311"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_CLIENT_KEY: upload(pki.client_key_der), CONF_VERIFY_HOSTNAME: True},
    )

    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_CLIENT_KEY] == pki.client_key_pem
    assert CONF_KEY_PASSWORD not in entry.data


async def test_reauth(hass: HomeAssistant, password_broker: Mosquitto) -> None:
    """Reauth refuses wrong credentials, then stores the right ones."""
    entry = broker_entry(
        password_broker, **{CONF_USERNAME: "cloudsync", CONF_PASSWORD: "old"}
    )
    entry.add_to_hass(hass)

    result = await entry.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"][CONF_URL] == password_broker.url
    assert suggested(result, CONF_USERNAME) == "cloudsync"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_USERNAME: "cloudsync", CONF_PASSWORD: "wrong"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    assert entry.data[CONF_PASSWORD] == "old"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_USERNAME: "cloudsync", CONF_PASSWORD: "s3cret-pw"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    # The reload may wait for the integration's import: how far it got when the flow
    # returned depends on what earlier tests imported. Judge once it is done.
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED  # reauth reloads the entry
    assert entry.data == {
        CONF_URL: password_broker.url,
        CONF_CLIENT_ID: "cloudsync-0123456789ab",
        CONF_PROTOCOL: "mqttv311",
        CONF_PROFILE: "generic",  # the older entry was migrated by the reload
        CONF_USERNAME: "cloudsync",
        CONF_PASSWORD: "s3cret-pw",
    }
    await hass.config_entries.async_unload(entry.entry_id)


async def test_reauth_reloads_failed_entry(
    hass: HomeAssistant, password_broker: Mosquitto
) -> None:
    """An entry whose setup was refused loads once reauth stored good credentials."""
    entry = broker_entry(
        password_broker, **{CONF_USERNAME: "cloudsync", CONF_PASSWORD: "old"}
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    [flow] = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == "reauth"

    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_USERNAME: "cloudsync", CONF_PASSWORD: "s3cret-pw"}
    )
    await hass.async_block_till_done()

    assert result["reason"] == "reauth_successful"
    assert entry.state is ConfigEntryState.LOADED
    await hass.config_entries.async_unload(entry.entry_id)


async def test_reauth_tls(hass: HomeAssistant, tls_broker: Mosquitto, pki: Pki) -> None:
    """Reauth of a TLS entry keeps its certificates and probes with them."""
    tls_data = {
        CONF_CA_CERT: pki.ca_pem,
        CONF_CLIENT_CERT: pki.client_cert_pem,
        CONF_CLIENT_KEY: pki.client_key_pem,
        CONF_VERIFY_HOSTNAME: True,
    }
    entry = broker_entry(tls_broker, **tls_data)
    entry.add_to_hass(hass)

    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})

    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_CLIENT_KEY] == pki.client_key_pem
    await hass.async_block_till_done()
    await hass.config_entries.async_unload(entry.entry_id)


OUTBOX_INPUT = {
    "max_messages": 500.0,
    "max_size": 2.0,
    "max_age": 36.0,
    "overflow": "refuse",
    "drain_rate": 100.0,
}


def section_suggested(result: dict, name: str, field: str) -> Any:
    """Return the suggested value of a field inside a form section."""
    for key, value in result["data_schema"].schema.items():
        if key == name:
            return suggested({"data_schema": value.schema}, field)
    raise KeyError(name)


async def test_options(hass: HomeAssistant, plain_broker: Mosquitto) -> None:
    """The options flow stores QoS and keepalive as integers, and the outbox caps."""
    entry = broker_entry(plain_broker)
    entry.add_to_hass(hass)

    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    assert suggested(result, CONF_QOS) == "0"

    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_QOS: "2",
            CONF_RETAIN: True,
            CONF_KEEPALIVE: 120.0,
            "state_interval": 2.5,
            "topic_sensors": False,
            "allow_local_unauthenticated": True,
            "message_events": True,
            "app_isolation": True,
            "outbox": OUTBOX_INPUT,
            "cache": {"max_topics": 1000.0, "max_size": 4.0},
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {
        CONF_QOS: 2,
        CONF_RETAIN: True,
        CONF_KEEPALIVE: 120,
        "state_interval": 2.5,
        "topic_sensors": False,
        "allow_local_unauthenticated": True,
        "message_events": True,
        "app_isolation": True,
        "outbox": {
            "max_messages": 500,
            "max_size": 2,
            "max_age": 36,
            "overflow": "refuse",
            "drain_rate": 100,
        },
        "cache": {"max_topics": 1000, "max_size": 4},
    }

    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert suggested(result, CONF_QOS) == "2"
    assert section_suggested(result, "cache", "max_topics") == 1000
    assert suggested(result, CONF_KEEPALIVE) == 120
    assert section_suggested(result, "outbox", "max_messages") == 500
    assert section_suggested(result, "outbox", "overflow") == "refuse"


async def test_options_outbox_defaults_and_max_age(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """The outbox section defaults to the documented caps; the max age is in hours."""
    entry = broker_entry(plain_broker)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert section_suggested(result, "outbox", "max_age") == 168
    base = {CONF_QOS: "0", CONF_RETAIN: False, CONF_KEEPALIVE: 60, "state_interval": 1}
    with pytest.raises(InvalidData):
        await hass.config_entries.options.async_configure(
            result["flow_id"],
            {**base, "outbox": {**OUTBOX_INPUT, "max_age": 0}, "cache": {}},
        )

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**base, "outbox": {}, "cache": {}}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["outbox"] == {
        "max_messages": 100_000,
        "max_size": 64,
        "max_age": 168,
        "overflow": "drop_oldest",
        "drain_rate": 1000,
    }
    assert entry.options["cache"] == {"max_topics": 10_000, "max_size": 16}
    assert entry.options["message_events"] is False


async def test_options_read_an_older_max_age(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """Entries before 0.2 stored the max age as a duration: shown in hours, still used."""
    entry = broker_entry(plain_broker)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, options={"outbox": {"max_age": {"hours": 1, "minutes": 30}}}
    )
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert section_suggested(result, "outbox", "max_age") == 1.5
    assert outbox_limits(entry.options).max_age == 5400


@pytest.mark.usefixtures("socket_enabled")
@pytest.mark.parametrize("choice", ["send", "discard"])
async def test_reconfigure_with_queued_messages(
    hass: HomeAssistant, broker_factory: BrokerFactory, choice: str
) -> None:
    """Messages queued for the old broker go to the new one only if the user says so."""
    old, new = broker_factory(), broker_factory()
    entry = await setup_entry(hass, entry_for(old))
    await old.async_stop()
    async with asyncio.timeout(10):
        while entry.runtime_data.connected:
            await asyncio.sleep(0.02)
    for i in range(3):
        published = await entry.runtime_data.async_publish("app", "q/x", b"%d" % i)
        assert published.queued
    dropped = async_capture_events(hass, "cloudsync_messages_dropped")
    async with MqttSubscriber(new, "q/#", qos=1) as sub:
        result = await entry.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {
                CONF_URL: new.url,
                CONF_CLIENT_ID: entry.data[CONF_CLIENT_ID],
                CONF_PROTOCOL: "mqttv311",
            },
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "reconfigure_queue"
        assert result["description_placeholders"] == {
            "count": "3",
            "old_url": old.url,
            "new_url": new.url,
        }
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"queued_messages": choice}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reconfigure_successful"
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        assert entry.unique_id == new.url
        if choice == "send":
            got = await sub.messages(3)
            assert [m.payload for m in got] == [b"0", b"1", b"2"]
            assert dropped == []
        else:
            await asyncio.sleep(1)
            assert sub.received == []
            assert [e.data["reasons"] for e in dropped] == [{"discarded": 3}]
            assert entry.runtime_data.outbox_stats.queued == 0
    await hass.config_entries.async_unload(entry.entry_id)
