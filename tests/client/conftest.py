"""Fixtures for the client core tests, which run without Home Assistant."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Override the root fixture: client tests need no `hass`."""


@pytest.fixture(autouse=True)
def auto_socket_enabled(socket_enabled: None) -> None:
    """Let client tests open sockets (pytest-socket still allows only 127.0.0.1)."""
