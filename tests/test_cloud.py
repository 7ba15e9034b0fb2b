"""Cloud brokers in Home Assistant: profiles in the flows and the API, repairs, sensors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.cloudsync.const import (
    CONF_CA_CERT,
    CONF_CLIENT_CERT,
    CONF_CLIENT_ID,
    CONF_CLIENT_KEY,
    CONF_PROFILE,
    CONF_URL,
    CONF_VERIFY_HOSTNAME,
    DOMAIN,
)
from tests.client.test_takeover import aggressive_twin
from tests.common import entry_for, setup_entry
from tests.mosquitto import Mosquitto
from tests.pki import Pki
from tests.test_config_flow import (  # noqa: F401 - fixtures
    OUTBOX_INPUT,
    mock_setup_entry,
    upload,
    uploads,
)
from tests.test_http import post

pytestmark = pytest.mark.usefixtures("socket_enabled")

type Upload = Callable[[str | bytes], str]

AWS = "aws_iot_core"
BODY = {"appid": "app", "payload": "1", "url": "127.0.0.1"}


async def _user_flow(hass: HomeAssistant, **form: Any) -> dict[str, Any]:
    """Start the user flow and submit ``form``."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    return await hass.config_entries.flow.async_configure(result["flow_id"], form)


# -- the config flow ------------------------------------------------------------------


@pytest.mark.usefixtures("mock_setup_entry")
async def test_aws_flow_needs_endpoint_over_tls_and_certificates(
    hass: HomeAssistant,
    tls_broker: Mosquitto,
    pki: Pki,
    upload: Upload,  # noqa: F811 - the fixture
) -> None:
    """An AWS endpoint without a scheme is mqtts; the CA, cert and key are required."""
    result = await _user_flow(
        hass, **{CONF_PROFILE: AWS, CONF_URL: f"127.0.0.1:{tls_broker.port}"}
    )
    assert result["step_id"] == "tls"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {**uploads(upload, pki, {CONF_CA_CERT: "ca_pem"}), CONF_VERIFY_HOSTNAME: True},
    )
    assert result["errors"] == {"base": "profile_certificates"}
    files = {
        CONF_CA_CERT: "ca_pem",
        CONF_CLIENT_CERT: "client_cert_pem",
        CONF_CLIENT_KEY: "client_key_pem",
    }
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {**uploads(upload, pki, files), CONF_VERIFY_HOSTNAME: True},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_PROFILE] == AWS
    assert result["data"][CONF_URL] == tls_broker.url


@pytest.mark.usefixtures("mock_setup_entry")
@pytest.mark.parametrize(
    ("form", "errors"),
    [
        ({CONF_URL: "mqtt://127.0.0.1:1883"}, {CONF_URL: "profile_needs_tls"}),
        (
            {CONF_URL: "mqtts://127.0.0.1:8883", CONF_CLIENT_ID: "c" * 129},
            {CONF_CLIENT_ID: "profile_client_id"},
        ),
    ],
)
async def test_aws_flow_errors(
    hass: HomeAssistant, form: dict[str, str], errors: dict[str, str]
) -> None:
    """A plain URL or an over-long client id is refused in the form, naming why."""
    result = await _user_flow(hass, **{CONF_PROFILE: AWS, **form})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors


async def test_options_refuse_what_the_profile_refuses(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """AWS IoT Core: keepalive 30-1200 s and QoS 0/1 only, shown as form errors."""
    entry = entry_for(plain_broker, **{CONF_PROFILE: AWS})
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    form = {
        "qos": "2",
        "retain": False,
        "keepalive": 10.0,
        "state_interval": 1.0,
        "topic_sensors": True,
        "allow_local_unauthenticated": False,
        "message_events": False,
        "app_isolation": False,
        "outbox": OUTBOX_INPUT,
        "cache": {"max_topics": 1000.0, "max_size": 4.0},
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], form)
    assert result["errors"] == {"keepalive": "profile_keepalive", "qos": "profile_qos"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], form | {"qos": "1", "keepalive": 30.0}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


# -- the limits at the REST API and the actions ---------------------------------------


async def test_rest_and_actions_refuse_over_the_limits(
    hass: HomeAssistant, hass_client: Any, plain_broker: Mosquitto
) -> None:
    """413 over the payload limit, 400 for topic rules and QoS; the link stays up."""
    entry = await setup_entry(hass, entry_for(plain_broker, **{CONF_PROFILE: AWS}))
    client = await hass_client()
    cases = [
        ({"topic": "cloud/big", "payload": "x" * (128 * 1024 + 1)}, 413, "131072"),
        ({"topic": "cloud/qos", "qos": 2}, 400, "QoS 0 and 1"),
        ({"topic": "a/b/c/d/e/f/g/h/i"}, 400, "7 '/'"),
        ({"topic": "t" * 257}, 400, "256 bytes"),
    ]
    for body, status, words in cases:
        answer, reply = await post(client, "publish", BODY | body)
        assert (answer, words in reply["Message"]) == (status, True), reply
    answer, reply = await post(
        client, "subscribe", BODY | {"topic": "a/b/c/d/e/f/g/h/#"}
    )
    assert answer == 400
    assert "AWS IoT Core" in reply["Message"]
    answer, _reply = await post(client, "publish", BODY | {"topic": "cloud/ok"})
    assert answer == 200
    with pytest.raises(ServiceValidationError) as caught:
        await hass.services.async_call(
            DOMAIN,
            "publish",
            {
                "config_entry_id": entry.entry_id,
                "topic": "cloud/qos",
                "payload": "1",
                "qos": 2,
            },
            blocking=True,
        )
    assert caught.value.translation_key == "profile_limit"
    assert entry.runtime_data.connected
    assert entry.runtime_data.outbox_stats.queued == 0


# -- client id takeover ---------------------------------------------------------------


async def test_takeover_issue_and_new_client_id(
    hass: HomeAssistant, hass_client: Any, plain_broker: Mosquitto
) -> None:
    """A twin with our client id raises a fixable issue; the fix makes a new id."""
    assert await async_setup_component(hass, "repairs", {})
    shared = "cloudsync-shared-ha"
    entry = await setup_entry(hass, entry_for(plain_broker, **{CONF_CLIENT_ID: shared}))
    issue_id = f"client_id_taken_{entry.entry_id}"
    registry = ir.async_get(hass)
    with aggressive_twin(plain_broker, client_id=shared):
        async with asyncio.timeout(30):
            while registry.async_get_issue(DOMAIN, issue_id) is None:
                await asyncio.sleep(0.2)
        issue = registry.async_get_issue(DOMAIN, issue_id)
        assert issue is not None
        assert issue.is_fixable
        assert issue.translation_placeholders == {
            "broker": plain_broker.url,
            "client_id": shared,
        }
        client = await hass_client()
        response = await client.post(
            "/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": issue_id}
        )
        flow = await response.json()
        assert flow.get("step_id") == "confirm", flow
        response = await client.post(f"/api/repairs/issues/fix/{flow['flow_id']}")
        assert (await response.json())["type"] == "create_entry"
        await hass.async_block_till_done()
        new_id = entry.data[CONF_CLIENT_ID]
        assert new_id != shared
        assert new_id.startswith("cloudsync-")
        # The entry reloads with the new id (the twin keeps the old one).
        async with asyncio.timeout(15):
            while not (
                entry.state is ConfigEntryState.LOADED
                and entry.runtime_data.diagnostics()["connection"]["client_id"]
                == new_id
                and entry.runtime_data.connected
            ):
                await asyncio.sleep(0.1)
    assert registry.async_get_issue(DOMAIN, issue_id) is None
    await hass.config_entries.async_unload(entry.entry_id)


# -- certificate lifecycle ------------------------------------------------------------


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_certificate_expiry_sensors_issue_and_fix(
    hass: HomeAssistant,
    hass_client: Any,
    tls_broker: Mosquitto,
    pki: Pki,
    upload: Upload,  # noqa: F811 - the fixture
) -> None:
    """A client certificate 10 days from expiry: sensors, an issue, new files fix it."""
    assert await async_setup_component(hass, "repairs", {})
    entry = await setup_entry(
        hass,
        entry_for(tls_broker, pki, **{CONF_CLIENT_CERT: pki.client_cert_expiring_pem}),
    )
    assert entry.state is ConfigEntryState.LOADED
    entities = er.async_get(hass)
    client_sensor = entities.async_get_entity_id(
        "sensor", DOMAIN, f"{entry.entry_id}_client_cert_expiry"
    )
    ca_sensor = entities.async_get_entity_id(
        "sensor", DOMAIN, f"{entry.entry_id}_ca_cert_expiry"
    )
    assert client_sensor
    assert ca_sensor
    expires = dt_util.parse_datetime(hass.states.get(client_sensor).state)
    assert expires is not None
    assert timedelta(days=9) < expires - dt_util.utcnow() <= timedelta(days=10)
    assert hass.states.get(client_sensor).attributes["device_class"] == "timestamp"
    registry = ir.async_get(hass)
    issue_id = f"certificate_expiring_client_cert_{entry.entry_id}"
    issue = registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders["certificate"] == "client certificate"
    assert (
        registry.async_get_issue(
            DOMAIN, f"certificate_expiring_ca_cert_{entry.entry_id}"
        )
        is None
    )

    client = await hass_client()
    response = await client.post(
        "/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": issue_id}
    )
    flow = await response.json()
    assert flow["step_id"] == "upload"
    # The wrong key for the certificate: refused like in the config flow.
    bad = uploads(
        upload,
        pki,
        {CONF_CLIENT_CERT: "client_cert_pem", CONF_CLIENT_KEY: "other_client_key_pem"},
    )
    response = await client.post(
        f"/api/repairs/issues/fix/{flow['flow_id']}",
        json={**bad, CONF_VERIFY_HOSTNAME: True},
    )
    assert (await response.json())["errors"] == {"base": "client_key_mismatch"}
    good = uploads(upload, pki, {CONF_CLIENT_CERT: "client_cert_pem"})
    response = await client.post(
        f"/api/repairs/issues/fix/{flow['flow_id']}",
        json={**good, CONF_VERIFY_HOSTNAME: True},
    )
    assert (await response.json())["type"] == "create_entry"
    await hass.async_block_till_done()
    assert entry.data[CONF_CLIENT_CERT] == pki.client_cert_pem
    assert entry.state is ConfigEntryState.LOADED
    assert registry.async_get_issue(DOMAIN, issue_id) is None
    expires = dt_util.parse_datetime(hass.states.get(client_sensor).state)
    assert expires is not None
    assert expires - dt_util.utcnow() > timedelta(days=3000)
    await hass.config_entries.async_unload(entry.entry_id)


async def test_expired_certificate_issue_even_when_setup_fails(
    hass: HomeAssistant, tls_broker: Mosquitto, pki: Pki
) -> None:
    """The broker refuses an expired client certificate; the issue says which one."""
    entry = await setup_entry(
        hass,
        entry_for(tls_broker, pki, **{CONF_CLIENT_CERT: pki.client_cert_expired_pem}),
    )
    assert entry.state is ConfigEntryState.SETUP_RETRY
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, f"certificate_expired_client_cert_{entry.entry_id}"
    )
    assert issue is not None
    assert issue.severity is ir.IssueSeverity.ERROR
    assert issue.translation_placeholders["certificate"] == "client certificate"
    await hass.config_entries.async_unload(entry.entry_id)


# -- metrics --------------------------------------------------------------------------


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_metrics_sensors(hass: HomeAssistant, plain_broker: Mosquitto) -> None:
    """Sent, received, latency percentiles and reconnects, written once per interval."""
    entry = await setup_entry(hass, entry_for(plain_broker))
    broker = entry.runtime_data
    await broker.async_subscribe("app", "metrics/#", qos=1)
    for index in range(5):
        await broker.async_publish("app", f"metrics/{index}", b"1", qos=1)
    async with asyncio.timeout(5):
        while broker.metrics().received < 5:
            await asyncio.sleep(0.05)
    entities = er.async_get(hass)

    def state(key: str) -> str:
        entity_id = entities.async_get_entity_id(
            "sensor", DOMAIN, f"{entry.entry_id}_{key}"
        )
        assert entity_id is not None
        registry_entry = entities.async_get(entity_id)
        assert registry_entry is not None
        assert registry_entry.entity_category == "diagnostic"
        return hass.states.get(entity_id).state

    before = state("messages_sent")
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=11))
    await hass.async_block_till_done()
    assert state("messages_sent") == "5"
    assert before != "5"  # no write per message: only the interval wrote it
    assert state("messages_received") == "5"
    assert state("reconnects") == "0"
    assert (
        0 < float(state("publish_latency_p50")) <= float(state("publish_latency_p95"))
    )
    await hass.config_entries.async_unload(entry.entry_id)


async def test_metrics_disabled_by_default(
    hass: HomeAssistant, plain_broker: Mosquitto
) -> None:
    """The metrics sensors are off until a user turns them on."""
    entry = await setup_entry(hass, entry_for(plain_broker))
    entities = er.async_get(hass)
    for key in ("messages_sent", "publish_latency_p95", "reconnects"):
        entity_id = entities.async_get_entity_id(
            "sensor", DOMAIN, f"{entry.entry_id}_{key}"
        )
        assert entity_id is not None
        registry_entry = entities.async_get(entity_id)
        assert registry_entry is not None
        assert registry_entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    await hass.config_entries.async_unload(entry.entry_id)
