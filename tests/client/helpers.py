"""Helpers for client tests: build configs for the test brokers and collect messages."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from custom_components.cloudsync.client import (
    BrokerConfig,
    BrokerConnection,
    ReceivedMessage,
)
from tests.mosquitto import Mosquitto
from tests.pki import Pki


def config_for(
    broker: Mosquitto, pki: Pki | None = None, **changes: Any
) -> BrokerConfig:
    """Return a BrokerConfig that connects to a test broker with valid credentials."""
    config = BrokerConfig(host=broker.host, port=broker.port, tls=broker.kind == "tls")
    if broker.kind == "tls" and pki is not None:
        config = replace(
            config,
            ca_cert=pki.ca_pem,
            client_cert=pki.client_cert_pem,
            client_key=pki.client_key_pem,
        )
    if broker.kind == "password":
        config = replace(config, username=broker.username, password=broker.password)
    return replace(config, **changes)


@dataclass
class Recorder:
    """Collects messages and connection changes from a BrokerConnection."""

    messages: asyncio.Queue[ReceivedMessage] = field(default_factory=asyncio.Queue)
    states: list[bool] = field(default_factory=list)
    state_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_message(self, message: ReceivedMessage) -> None:
        """Queue a message."""
        self.messages.put_nowait(message)

    def on_state(self, connected: bool) -> None:
        """Record a connection change."""
        self.states.append(connected)
        self.state_changed.set()

    async def wait_state(self, connected: bool, timeout: float = 15) -> None:
        """Wait until the last reported state is `connected`."""
        async with asyncio.timeout(timeout):
            while not self.states or self.states[-1] is not connected:
                self.state_changed.clear()
                await self.state_changed.wait()

    async def next_message(self, timeout: float = 5) -> ReceivedMessage:
        """Return the next delivered message."""
        async with asyncio.timeout(timeout):
            return await self.messages.get()

    def connection(self, config: BrokerConfig, **kwargs: Any) -> BrokerConnection:
        """Return a connection wired to this recorder."""
        connection = BrokerConnection(
            config, on_connection_change=self.on_state, **kwargs
        )
        connection.add_message_listener(self.on_message)
        return connection


async def wait_until(predicate: Any, timeout: float = 15.0) -> None:
    """Return once ``predicate()`` is true; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
