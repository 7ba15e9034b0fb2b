"""Hostile callers: app isolation between users, the loopback option, Origin, bans."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from ipaddress import ip_address
import json
from typing import TYPE_CHECKING, Any
from unittest.mock import MagicMock
import uuid

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from homeassistant.auth.const import GROUP_ID_USER
from homeassistant.components.http.ban import (
    KEY_BAN_MANAGER,
    KEY_FAILED_LOGIN_ATTEMPTS,
    KEY_LOGIN_THRESHOLD,
)
from homeassistant.core import Context
from homeassistant.exceptions import ServiceValidationError
import pytest
from pytest_homeassistant_custom_component.common import MockUser

from custom_components.cloudsync.const import (
    CONF_ALLOW_LOCAL_UNAUTHENTICATED,
    CONF_APP_ISOLATION,
    DOMAIN,
)
from custom_components.cloudsync.http_auth import async_authenticate
from tests.common import entry_for, setup_entry, user_client
from tests.mosquitto import mqtt_publish

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    from tests.mosquitto import BrokerFactory, Mosquitto

pytestmark = pytest.mark.usefixtures("socket_enabled")

BASE = "/api/v1/orchestration/cloudsyncmgr"
ISOLATED = {CONF_APP_ISOLATION: True}


async def _post(client: TestClient, action: str, **body: Any) -> tuple[int, str]:
    response = await client.post(f"{BASE}/{action}", json=body)
    return response.status, (await response.json()).get("error", "")


async def _get(client: TestClient, topic: str, app: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(
        f"{BASE}/getsubscribedata/{topic.replace('/', '%2F')}/{app}"
    )
    return response.status, await response.json()


@pytest.fixture
async def isolated(
    hass: HomeAssistant, plain_broker: Mosquitto, socket_enabled: None
) -> MockConfigEntry:
    """Return a loaded entry with app isolation on."""
    return await setup_entry(hass, entry_for(plain_broker, options=ISOLATED))


@pytest.mark.usefixtures("isolated")
async def test_app_belongs_to_its_first_user(
    hass: HomeAssistant, hass_client: Any
) -> None:
    """Another non-admin user naming an app gets 403; its owner and admins do not."""
    alice, bob = (
        await user_client(hass, hass_client),
        await user_client(hass, hass_client),
    )
    admin = await hass_client()
    topic = f"iso/{uuid.uuid4().hex[:8]}"
    common = {"topic": topic, "url": "127.0.0.1"}
    assert await _post(alice, "subscribe", appid="a1", **common) == (200, "")
    assert await _post(alice, "publish", appid="a1", payload="x", **common) == (200, "")
    for action, extra in (
        ("publish", {"payload": "x"}),
        ("subscribe", {}),
        ("unsubscribe", {}),
    ):
        assert await _post(bob, action, appid="a1", **common, **extra) == (
            403,
            "app_not_owned",
        )
    assert (await _get(bob, topic, "a1"))[0] == 403
    assert (await _get(alice, topic, "a1"))[0] == 200
    assert await _post(admin, "unsubscribe", appid="a1", **common) == (200, "")
    # Bob's own app works; the ownership survives the last unsubscribe.
    assert await _post(bob, "subscribe", appid="b1", **common) == (200, "")
    assert await _post(bob, "subscribe", appid="a1", **common) == (
        403,
        "app_not_owned",
    )


@pytest.mark.usefixtures("isolated")
async def test_no_data_from_before_the_app_subscribed(
    hass: HomeAssistant, hass_client: Any, plain_broker: Mosquitto
) -> None:
    """An app that subscribes late does not read what arrived before it."""
    alice, bob = (
        await user_client(hass, hass_client),
        await user_client(hass, hass_client),
    )
    topic = f"iso/{uuid.uuid4().hex[:8]}"
    common = {"topic": topic, "url": "127.0.0.1"}
    assert (await _post(alice, "subscribe", appid="a2", **common))[0] == 200
    await mqtt_publish(plain_broker, topic, "secret", qos=1)
    await _wait_payload(alice, topic, "a2", "secret")
    assert (await _post(bob, "subscribe", appid="b2", **common))[0] == 200
    status, body = await _get(bob, topic, "b2")
    assert (status, body["Message"], body["received"]) == (200, "", None)
    await mqtt_publish(plain_broker, topic, "later", qos=1)
    await _wait_payload(bob, topic, "b2", "later")


async def _wait_payload(client: TestClient, topic: str, app: str, text: str) -> None:
    for _ in range(200):
        status, body = await _get(client, topic, app)
        assert status == 200, body
        if body["Message"] == text:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{text!r} never arrived")


async def test_existing_entries_keep_shared_apps(
    hass: HomeAssistant, hass_client: Any, plain_broker: Mosquitto
) -> None:
    """Without the option (entries made before it) any user may name any app."""
    await setup_entry(hass, entry_for(plain_broker))
    alice, bob = (
        await user_client(hass, hass_client),
        await user_client(hass, hass_client),
    )
    common = {"topic": f"iso/{uuid.uuid4().hex[:8]}", "url": "127.0.0.1"}
    assert (await _post(alice, "subscribe", appid="shared", **common))[0] == 200
    assert (await _post(bob, "unsubscribe", appid="shared", **common))[0] == 200


async def test_actions_run_as_their_user(
    hass: HomeAssistant, isolated: MockConfigEntry, hass_admin_user: MockUser
) -> None:
    """An action's user must own the app; automations (no user) act as admin."""
    user = MockUser(
        groups=[await hass.auth.async_get_group(GROUP_ID_USER)]
    ).add_to_hass(hass)
    other = MockUser(
        groups=[await hass.auth.async_get_group(GROUP_ID_USER)]
    ).add_to_hass(hass)
    data = {
        "config_entry_id": isolated.entry_id,
        "topic": f"iso/{uuid.uuid4().hex[:8]}",
        "app_id": "act",
    }
    await hass.services.async_call(
        DOMAIN, "subscribe", data, blocking=True, context=Context(user_id=user.id)
    )
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "unsubscribe", data, blocking=True, context=Context(other.id)
        )
    assert err.value.translation_key == "app_not_owned"
    await hass.services.async_call(
        DOMAIN, "get_data", data, blocking=True, return_response=True
    )
    await hass.services.async_call(
        DOMAIN, "unsubscribe", data, blocking=True, context=Context(hass_admin_user.id)
    )


async def test_loopback_option_is_per_broker(
    hass: HomeAssistant,
    hass_client_no_auth: Any,
    plain_broker: Mosquitto,
    broker_factory: BrokerFactory,
) -> None:
    """One entry's token-less option opens only that broker, not to web pages."""
    other = broker_factory()
    await setup_entry(
        hass,
        entry_for(plain_broker, options={CONF_ALLOW_LOCAL_UNAUTHENTICATED: True}),
    )
    await setup_entry(hass, entry_for(other))
    client = await hass_client_no_auth()
    body = {"appid": "p", "topic": "t", "payload": "x"}
    assert await _post(client, "publish", url=plain_broker.url, **body) == (200, "")
    assert await _post(client, "publish", url=other.url, **body) == (
        401,
        "unauthorized",
    )
    response = await client.post(
        f"{BASE}/publish",
        data=json.dumps({**body, "url": plain_broker.url}),
        headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
    )
    assert response.status == 401
    response = await client.get(
        f"{BASE}/getsubscribedata/{other.host}:{other.port}/t/p"
    )
    assert response.status == 401


async def test_token_resets_failed_logins(
    hass: HomeAssistant, hass_access_token: str
) -> None:
    """A request with a good raw token clears the caller's failed-login count."""
    app = web.Application()
    app[KEY_BAN_MANAGER] = MagicMock()
    app[KEY_LOGIN_THRESHOLD] = 5
    app[KEY_FAILED_LOGIN_ATTEMPTS] = defaultdict(int, {ip_address("127.0.0.1"): 3})
    transport = MagicMock()
    transport.get_extra_info.return_value = ("127.0.0.1", 40000)
    request = make_mocked_request(
        "GET",
        f"{BASE}/getsubscribedata/t/app",
        headers={"Authorization": hass_access_token},
        transport=transport,
        app=app,
    )
    assert async_authenticate(hass, request).user is not None
    assert ip_address("127.0.0.1") not in app[KEY_FAILED_LOGIN_ATTEMPTS]
