"""CloudSync driven through Home Assistant's real frontend, step by step.

Each step builds on the previous one (one page, one Home Assistant) and asserts on
what the page shows.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

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


def _fill(field: Locator, value: str) -> None:
    """Fill a field and wait until it holds ``value``.

    The onboarding form derives the username from the name while one types and
    renders again: a fill that lands mid-render goes to the wrong field, so it is
    retried until this field holds what was typed.
    """
    for _ in range(5):
        field.fill(value)
        try:
            expect(field).to_have_value(value, timeout=2000)
        except AssertionError:
            continue
        return
    expect(field).to_have_value(value)


def test_onboarding(page: Page, home_assistant: HomeAssistantServer, steps: Steps):
    """Create the owner through the onboarding pages."""
    page.goto(home_assistant.url)
    page.get_by_role("button", name="Create my smart home").click()
    name = page.get_by_label("Name", exact=True)
    _fill(name, "Owner")
    expect(page.get_by_label("Username")).to_have_value("owner")  # derived, rendered
    _fill(page.get_by_label("Username"), OWNER)
    _fill(page.get_by_label("Password", exact=True), OWNER_PASSWORD)
    _fill(page.get_by_label("Confirm password"), OWNER_PASSWORD)
    expect(name).to_have_value("Owner")
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
    # The files read fine, so they stay: only the CA is uploaded again.
    expect(page.get_by_text("the ones uploaded before stay otherwise")).to_be_visible()
    steps.shot("tls-wrong-ca")
    _upload(page, "CA certificate", tls.files["ca"])
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
    _expect_helpers(page, steps)
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


def _expect_helpers(page: Page, steps: Steps) -> None:
    """Each options field shows its unit and help text, in the sections too."""
    expect(page.get_by_text("Keepalive", exact=True)).to_be_visible()
    expect(page.get_by_text("Keepalive (seconds)")).to_have_count(0)
    expect(page.get_by_text("Used when a publish does not say whether")).to_be_visible()
    page.get_by_text("Outbox", exact=True).click()
    max_age = page.get_by_label("Maximum message age")
    expect(max_age).to_have_value("168")
    expect(page.get_by_text("In hours (168 h is 7 days)")).to_be_visible()
    expect(page.get_by_text("Drop the oldest messages to make room")).to_be_visible()
    page.get_by_text(
        "Drop the oldest messages to make room"
    ).scroll_into_view_if_needed()
    steps.shot("options-outbox", readme=True)
    page.get_by_text("Outbox", exact=True).click()


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
    page.get_by_text("Connection", exact=True).click()
    dialog = page.locator("ha-more-info-dialog")
    dialog.get_by_text("Attributes", exact=True).click()
    # The attribute rows are slotted: only the accessibility tree has their text.
    error = re.escape(f"{plain.url} refused the TCP connection").replace("/", r"\/")
    expect(dialog.get_by_role("region", name="Attributes")).to_match_aria_snapshot(
        f'- region "Attributes": /Last error {error}/'
    )
    # Left open: closing it navigates back, which would race the next step's goto.
    steps.shot("connection-last-error", readme=True)


def _entry_menu(page: Page, broker: Mosquitto, item: str) -> None:
    """Open an entry's three-dots menu on the integration page and pick ``item``."""
    _entry_row(page, broker).get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name=item).click()


def test_reconfigure(
    page: Page, home_assistant: HomeAssistantServer, plain: Mosquitto, steps: Steps
):
    """Reconfigure the plain broker: an unreachable URL is refused, MQTT 5 works."""
    plain.start()
    _open_cloudsync(page, home_assistant)
    # iot_class local_push: the broker may be on the LAN; no "Requires Internet".
    expect(page.get_by_text("Custom integration")).to_be_visible()
    expect(page.get_by_text("Requires Internet")).to_have_count(0)
    _entry_menu(page, plain, "Reconfigure")
    expect(page.get_by_text("Reconfigure the broker")).to_be_visible()
    expect(page.get_by_label("Broker URL")).to_have_value(plain.url)
    _submit_url(page, "mqtt://127.0.0.1:1")
    expect(_error(page)).to_contain_text("refused the connection")
    page.get_by_label("Broker URL").fill(plain.url)
    page.get_by_role("radio", name="MQTT 5").check()
    steps.shot("reconfigure", readme=True)
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("The broker was reconfigured.")).to_be_visible()
    page.get_by_role("button", name="Close", exact=True).last.click()

    _open_cloudsync(page, home_assistant)
    _entry_row(page, plain).get_by_role("link", name="1 service").click()
    expect(_state(page, "Connected")).to_be_visible()
    expect(_state(page, "21.5")).to_be_visible()  # restored, and the broker is back


def _retained(broker: Mosquitto, topic: str) -> str:
    """Return the retained payload of ``topic`` on ``broker`` (mosquitto_sub)."""
    result = subprocess.run(
        [
            shutil.which("mosquitto_sub") or "mosquitto_sub",
            *broker.cli_args(),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "10",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_add_mirror(
    page: Page, home_assistant: HomeAssistantServer, plain: Mosquitto, steps: Steps
):
    """Add a mirror to the plain broker from its menu: its states reach the broker."""
    _open_cloudsync(page, home_assistant)
    _entry_menu(page, plain, "Add mirror")
    expect(page.get_by_text("Mirror Home Assistant to this broker")).to_be_visible()
    expect(page.get_by_label("Base topic")).to_have_value("home")
    page.get_by_label("Base topic").fill("ui-home")
    page.get_by_role("button", name="Add entity ID patterns").click()
    page.get_by_label("Entity ID patterns").first.fill("binary_sensor.*")
    steps.shot("mirror", readme=True)
    page.get_by_role("button", name="Submit").click()
    expect(
        page.get_by_text("Created configuration for Mirror to ui-home")
    ).to_be_visible()
    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Mirror to ui-home", exact=True)).to_be_visible()
    steps.shot("mirror-added")
    assert _retained(plain, "ui-home/status") == "online"
    connection = f"ui-home/binary_sensor/127_0_0_1_{plain.port}_connection/state"
    assert _retained(plain, connection) == "on"


def test_reauth_after_password_change(
    page: Page,
    home_assistant: HomeAssistantServer,
    password_broker: Mosquitto,
    steps: Steps,
):
    """A wrong password is refused; a changed one starts reauth, driven from Settings."""
    _open_cloudsync(page, home_assistant)
    page.get_by_role("button", name="Add service").click()
    page.get_by_label("Username").fill(password_broker.username or "")
    page.get_by_label("Password", exact=True).fill("wrong-password")
    _submit_url(page, password_broker.url)
    expect(_error(page)).to_contain_text("refused the username, password")
    page.get_by_label("Password", exact=True).fill(password_broker.password or "")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Success!")).to_be_visible()
    page.get_by_role("button", name="Finish").click()
    title = f"127.0.0.1:{password_broker.port}"
    expect(page.get_by_text(title, exact=True)).to_be_visible()

    password_broker.stop()
    password_broker.change_password("changed-on-the-broker")
    password_broker.start()
    page.goto(f"{home_assistant.url}/config/dashboard")
    notice = page.get_by_text(re.compile(rf"Authentication expired for {title}"))
    expect(notice).to_be_visible()
    steps.shot("reauth-notice", readme=True)
    notice.click()
    expect(page.get_by_text("Broker login failed")).to_be_visible()
    expect(
        page.get_by_text(f"The broker {password_broker.url} refused")
    ).to_be_visible()
    page.get_by_label("Password", exact=True).fill("changed-on-the-broker")
    steps.shot("reauth")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("The credentials were updated.")).to_be_visible()
    page.get_by_role("button", name="Close", exact=True).last.click()
    expect(notice).to_be_hidden()

    _open_cloudsync(page, home_assistant)
    _entry_row(page, password_broker).get_by_role("link", name="1 service").click()
    expect(_state(page, "Connected")).to_be_visible()
    steps.shot("reauth-connected")
