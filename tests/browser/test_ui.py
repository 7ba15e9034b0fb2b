"""CloudSync driven through Home Assistant's real frontend, step by step.

Each step builds on the previous one (one page, one Home Assistant) and asserts on
what the page shows.
"""

from __future__ import annotations

import http.client
import json
import re
from typing import TYPE_CHECKING, Any

from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import Steps
    from tests.browser.homeassistant import HomeAssistantServer
    from tests.mosquitto import Mosquitto

OWNER = "owner"
OWNER_PASSWORD = "owner-pass-123"
REST = "/api/v1/orchestration/cloudsyncmgr"


def _error(page: Page) -> Any:
    """Return the form's error banner."""
    return page.locator("ha-alert[alert-type=error]")


def _open_cloudsync(page: Page, home_assistant: HomeAssistantServer) -> None:
    """Go to Settings -> Devices & services -> CloudSync."""
    page.goto(f"{home_assistant.url}/config/integrations/integration/cloudsync")
    expect(page.get_by_text("Services", exact=True)).to_be_visible()


def _start_add_broker(page: Page) -> None:
    """Open the Add integration dialog for CloudSync from the integrations page."""
    page.get_by_role("button", name="Add integration").click()
    page.get_by_label("Search for a brand name").fill("CloudSync")
    page.get_by_text("CloudSync", exact=True).click()
    expect(page.get_by_text("Connect to an MQTT broker")).to_be_visible()


def _submit_url(page: Page, url: str) -> None:
    page.get_by_label("Broker URL").fill(url)
    page.get_by_role("button", name="Submit").click()


def _upload(page: Page, label: str, path: Any) -> None:
    """Pick a file through the form's file picker button."""
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=label, exact=True).click()
    chooser.value.set_files(str(path))
    expect(page.get_by_text(path.name, exact=True)).to_be_visible()


def _rest(
    home_assistant: HomeAssistantServer, token: str, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """POST to the cloudsync REST API with the logged-in user's token."""
    conn = http.client.HTTPConnection("127.0.0.1", home_assistant.port, timeout=30)
    try:
        conn.request(
            "POST",
            f"{REST}/{path}",
            json.dumps(body),
            {"Authorization": f"Bearer {token}"},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_onboarding(page: Page, home_assistant: HomeAssistantServer, steps: Steps):
    """Create the owner through the onboarding pages."""
    page.goto(home_assistant.url)
    page.get_by_role("button", name="Create my smart home").click()
    page.get_by_label("Name", exact=True).fill("Owner")
    page.get_by_label("Username").fill(OWNER)
    page.get_by_label("Password", exact=True).fill(OWNER_PASSWORD)
    page.get_by_label("Confirm password").fill(OWNER_PASSWORD)
    steps.shot("onboarding-user")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Home location")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Country")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Help us help you")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Finish").click()
    page.wait_for_url(re.compile(r"/lovelace"))
    expect(page.get_by_text("Settings", exact=True).first).to_be_visible()
    steps.shot("onboarded")


def test_add_plain_broker(
    page: Page, home_assistant: HomeAssistantServer, plain: Mosquitto, steps: Steps
):
    """Settings -> Devices & services -> Add integration -> CloudSync, with errors first."""
    page.get_by_text("Settings", exact=True).first.click()
    page.get_by_text("Devices & services", exact=True).click()
    page.wait_for_url(re.compile(r"/config/integrations"))
    _start_add_broker(page)
    expect(page.get_by_label("Broker URL")).to_be_visible()
    expect(page.get_by_text("MQTT protocol version")).to_be_visible()
    steps.shot("add-broker", readme=True)

    _submit_url(page, "mqtt://127.0.0.1:1")
    expect(_error(page)).to_contain_text("refused the connection")
    steps.shot("add-broker-refused")
    _submit_url(page, "mqtt://no such host")
    expect(_error(page)).to_contain_text("Not a broker URL")
    _submit_url(page, f"mqtts://127.0.0.1:{plain.port}")
    expect(page.get_by_text("TLS certificates")).to_be_visible()
    page.get_by_role("button", name="Submit").click()
    expect(_error(page)).to_contain_text("TLS handshake failed")
    steps.shot("add-broker-tls-on-plain")
    page.get_by_label("Close").click()

    _start_add_broker(page)
    _submit_url(page, plain.url)
    expect(page.get_by_text("Success!")).to_be_visible()
    expect(
        page.get_by_text(f"Created configuration for 127.0.0.1:{plain.port}")
    ).to_be_visible()
    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_text(f"127.0.0.1:{plain.port}", exact=True)).to_be_visible()


def test_add_tls_broker(
    page: Page, home_assistant: HomeAssistantServer, tls: Mosquitto, steps: Steps
):
    """mqtts:// with mutual TLS: a wrong CA is a translated error, the right one works."""
    _open_cloudsync(page, home_assistant)
    page.get_by_role("button", name="Add service").click()
    _submit_url(page, tls.url)
    expect(page.get_by_text("TLS certificates")).to_be_visible()
    # Leaving the flow open at the TLS step must not block adding the broker again.
    page.get_by_label("Close").click()
    page.get_by_role("button", name="Add service").click()
    _submit_url(page, tls.url)
    expect(page.get_by_text("TLS certificates")).to_be_visible()
    expect(page.get_by_text(f"Certificates for {tls.url}")).to_be_visible()
    _upload(page, "CA certificate", tls.files["other_ca"])
    _upload(page, "Client certificate", tls.files["client_cert"])
    _upload(page, "Client private key", tls.files["client_key"])
    steps.shot("tls-certificates", readme=True)
    page.get_by_role("button", name="Submit").click()
    expect(_error(page)).to_contain_text(
        "The TLS handshake failed: check the CA, the client certificate and the hostname"
    )
    steps.shot("tls-wrong-ca")
    _upload(page, "CA certificate", tls.files["ca"])
    _upload(page, "Client certificate", tls.files["client_cert"])
    _upload(page, "Client private key", tls.files["client_key"])
    page.get_by_role("button", name="Submit").click()
    expect(
        page.get_by_text(f"Created configuration for 127.0.0.1:{tls.port}")
    ).to_be_visible()
    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_text(f"127.0.0.1:{tls.port}", exact=True)).to_be_visible()


def _state(page: Page, text: str) -> Any:
    """Return an entity row's state text (the row's own text, without its name)."""
    return page.get_by_text(re.compile(rf"\b{re.escape(text)}\b"))


def _entry_row(page: Page, broker: Mosquitto) -> Any:
    """Return a broker's row on the integration page."""
    return page.locator("ha-md-list-item").filter(has_text=f"127.0.0.1:{broker.port}")


def test_options(
    page: Page, home_assistant: HomeAssistantServer, plain: Mosquitto, steps: Steps
):
    """The options form: change the default QoS, turn topic sensors off and on."""
    _open_cloudsync(page, home_assistant)
    configure = _entry_row(page, plain).get_by_role("button", name="Configure")
    qos = page.locator("ha-select").filter(has_text="Default QoS")
    topic_sensors = (
        page.locator("ha-formfield")
        .filter(has_text="A sensor for each subscribed topic")
        .get_by_role("switch")
    )
    configure.click()
    expect(page.get_by_text("CloudSync options")).to_be_visible()
    expect(qos).to_contain_text("at most once")
    expect(topic_sensors).to_be_checked()
    steps.shot("options", readme=True)
    qos.click()
    page.get_by_role("option", name=re.compile(r"^1 ")).click()
    topic_sensors.click()
    expect(topic_sensors).not_to_be_checked()
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Options successfully saved.")).to_be_visible()
    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Options successfully saved.")).to_be_hidden()

    _open_cloudsync(page, home_assistant)  # the entry reloaded: a fresh page
    configure.click()
    expect(page.get_by_text("CloudSync options")).to_be_visible()
    expect(qos).to_contain_text("at least once")
    expect(topic_sensors).not_to_be_checked()
    topic_sensors.click()
    expect(topic_sensors).to_be_checked()
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Options successfully saved.")).to_be_visible()
    page.get_by_role("button", name="Finish").click()


def test_device_page(
    page: Page, home_assistant: HomeAssistantServer, plain: Mosquitto, steps: Steps
):
    """REST subscribe + publish; the device page shows them; a stopped broker shows too."""
    token = page.evaluate("JSON.parse(localStorage.hassTokens).access_token")
    body = {"appid": "ui", "url": plain.url, "topic": "demo/#"}
    status, answer = _rest(home_assistant, token, "subscribe", body)
    assert status == 200, answer
    body = {"appid": "ui", "url": plain.url, "topic": "demo/temp", "payload": "21.5"}
    status, answer = _rest(home_assistant, token, "publish", body)
    assert status == 200, answer

    _open_cloudsync(page, home_assistant)
    _entry_row(page, plain).get_by_role("link", name="1 service").click()
    expect(page.get_by_text(f"127.0.0.1:{plain.port}").first).to_be_visible()
    expect(page.get_by_text("Topic demo/#")).to_be_visible()
    expect(_state(page, "Connected")).to_be_visible()
    expect(_state(page, "21.5")).to_be_visible()
    steps.shot("device", readme=True)

    plain.stop()
    expect(_state(page, "Disconnected")).to_be_visible()
    expect(_state(page, "Unavailable")).to_be_visible()
    expect(_state(page, "21.5")).to_be_hidden()
    steps.shot("device-broker-down")
