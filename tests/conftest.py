"""Shared fixtures: custom integrations, test PKI and real mosquitto brokers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from unittest.mock import PropertyMock, patch

import pytest
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion

from tests.mosquitto import BrokerFactory, BrokerKind, Mosquitto, run_broker
from tests.pki import Pki, generate_pki

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

    from homeassistant.core import HomeAssistant


BROWSER_SUITE = Path(__file__).parent / "browser"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --browser: run tests/browser (real HA + Chromium), skipped otherwise."""
    parser.addoption(
        "--browser",
        action="store_true",
        help="run the browser suite in tests/browser (scripts/test --browser)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave tests/browser out unless --browser was given."""
    if collection_path == BROWSER_SUITE and not config.getoption("--browser"):
        return True
    return None


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    enable_custom_integrations: None, hass: HomeAssistant, tmp_path: Path
) -> None:
    """Enable custom integrations; give each test its own config dir (outbox files)."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    hass.config.config_dir = str(config_dir)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Use HA's snapshot format and folder (tests/snapshots) on every HA version.

    The test plugin's own fixture does this from 0.13.316 on; under 0.13.236
    syrupy's plain fixture won, which wrote to tests/__snapshots__ instead.
    """
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Create entities that are disabled by default (the outbox counters) enabled."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        new_callable=PropertyMock,
        return_value=True,
    ):
        yield


@pytest.fixture(scope="session")
def pki() -> Pki:
    """Return the session's generated test PKI."""
    return generate_pki()


@pytest.fixture(scope="session")
def pki_files(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Return the PKI written to files (see `Pki.write_files` for the keys)."""
    return pki.write_files(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def plain_broker(pki: Pki) -> Generator[Mosquitto]:
    """Return a session broker with an anonymous plain-TCP listener."""
    yield from run_broker("plain", pki)


@pytest.fixture(scope="session")
def tls_broker(pki: Pki) -> Generator[Mosquitto]:
    """Return a session broker with a mutual-TLS listener (client cert required)."""
    yield from run_broker("tls", pki)


@pytest.fixture(scope="session")
def password_broker(pki: Pki) -> Generator[Mosquitto]:
    """Return a session broker requiring `username` / `password`."""
    yield from run_broker("password", pki)


@pytest.fixture
def broker_factory(pki: Pki) -> Generator[BrokerFactory]:
    """Return a factory of private brokers (for stop/kill/restart tests)."""
    brokers: list[Mosquitto] = []

    def factory(
        kind: BrokerKind = "plain",
        *,
        port: int | None = None,
        extra_config: Sequence[str] = (),
        start: bool = True,
    ) -> Mosquitto:
        """Create a private broker, started unless `start` is False."""
        broker = Mosquitto(kind, pki=pki, port=port, extra_config=extra_config)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield factory
    for broker in brokers:
        broker.close()
