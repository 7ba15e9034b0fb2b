"""Fixtures of the browser suite: a real Home Assistant, real brokers, Chromium.

The steps in test_ui.py share one page and run in file order; after a failed step
the rest are skipped. A failed step leaves a screenshot; its path and the Home
Assistant log's are printed with the failure.
"""

from __future__ import annotations

from collections.abc import Generator
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playwright.sync_api import expect, sync_playwright
import pytest
import pytest_socket

from tests.browser.homeassistant import ROOT, HomeAssistantServer
from tests.mosquitto import Mosquitto, run_broker
from tests.pki import Pki, generate_pki

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = os.environ.get("CLOUDSYNC_CHROMIUM", "/usr/bin/chromium")
# Screenshots the README shows; written there only when this variable names a folder.
SCREENSHOTS_ENV = "CLOUDSYNC_SCREENSHOTS"
TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1280, "height": 900}
# Paths printed at the end of the run when a step failed.
ARTIFACTS: dict[str, str] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here `browser` (the normal suite deselects them)."""
    for item in items:
        if Path(str(item.path)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Replace tests/conftest.py's fixture: no in-process hass in this suite."""
    _allow_sockets()


def _allow_sockets() -> None:
    """Undo the HA test plugin's socket block (made for in-process tests) per test."""
    pytest_socket.enable_socket()


class Steps:
    """Artifacts of the run: screenshots, the page, and which step failed."""

    def __init__(self, folder: Path) -> None:
        """Keep screenshots in ``folder``."""
        self.folder = folder
        self.page: Page | None = None
        self.failed: str | None = None
        self.count = 0
        readme = os.environ.get(SCREENSHOTS_ENV)
        self.readme_folder = ROOT / readme if readme else None

    def shot(self, name: str, *, readme: bool = False) -> Path:
        """Save a screenshot of the page; README ones also go to $CLOUDSYNC_SCREENSHOTS."""
        assert self.page is not None
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=path)
        if readme and self.readme_folder is not None:
            self.readme_folder.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=self.readme_folder / f"{name}.png")
        return path


@pytest.fixture(scope="session")
def steps(tmp_path_factory: pytest.TempPathFactory) -> Steps:
    """Return the session's step bookkeeping."""
    return Steps(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture(scope="session")
def browser_pki() -> Pki:
    """Return a fresh PKI for the TLS broker."""
    return generate_pki()


@pytest.fixture(scope="session")
def plain(browser_pki: Pki) -> Generator[Mosquitto]:
    """Return an anonymous plain broker."""
    yield from run_broker("plain", browser_pki)


@pytest.fixture(scope="session")
def tls(browser_pki: Pki) -> Generator[Mosquitto]:
    """Return a mutual-TLS broker."""
    yield from run_broker("tls", browser_pki)


@pytest.fixture(scope="session")
def password_broker(browser_pki: Pki) -> Generator[Mosquitto]:
    """Return a broker that needs a username and password."""
    yield from run_broker("password", browser_pki)


@pytest.fixture(scope="session")
def home_assistant(
    tmp_path_factory: pytest.TempPathFactory,
) -> Generator[HomeAssistantServer]:
    """Run Home Assistant with the frontend; its config dir (and log) stay afterwards."""
    _allow_sockets()  # session fixtures come before the autouse one
    server = HomeAssistantServer(tmp_path_factory.mktemp("ha-config"))
    ARTIFACTS["Home Assistant log"] = str(server.log_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Generator[Browser]:
    """Return headless Chromium (Debian's; no Playwright browser download)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def page(
    browser: Browser, home_assistant: HomeAssistantServer, steps: Steps
) -> Generator[Page]:
    """Return the one page every step drives; nothing leaves 127.0.0.1."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    context.route(
        lambda url: not url.startswith(home_assistant.url),
        lambda route: route.abort(),
    )
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    steps.page = context.new_page()
    yield steps.page
    context.close()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip the remaining steps once one failed: they build on each other."""
    failed = getattr(item.session, "browser_failed", None)
    if failed and "page" in getattr(item, "fixturenames", ()):
        pytest.skip(f"step {failed} failed")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed step: a screenshot, and print where it and the HA log are."""
    report = yield
    if report.failed and call.when != "teardown":
        item.session.browser_failed = item.name  # type: ignore[attr-defined]
        steps: Steps | None = getattr(item, "funcargs", {}).get("steps")
        if steps is not None and steps.page is not None:
            try:
                shot = str(steps.shot(f"FAILED-{item.name}"))
            except Exception as err:  # noqa: BLE001 - report what we can
                shot = f"none ({err})"
            ARTIFACTS[f"screenshot of {item.name}"] = shot
        text = "\n".join(f"{key}: {value}" for key, value in ARTIFACTS.items())
        report.sections.append(("browser artifacts", text))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print where the failed step's screenshot and the Home Assistant log are."""
    if any(key.startswith("screenshot") for key in ARTIFACTS):
        terminalreporter.section("browser artifacts")
        for key, value in ARTIFACTS.items():
            terminalreporter.write_line(f"{key}: {value}")
