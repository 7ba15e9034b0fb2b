"""Drive the private Home Assistant like a user would: onboarding, tokens, config flows.

Everything goes through HA's public REST and websocket APIs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
import contextlib
import itertools
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from .processes import BenchError

if TYPE_CHECKING:
    from .context import Context

USERNAME = "bench"
PASSWORD = "bench-password-not-secret"  # noqa: S105 - a throwaway local account
_FLOW_STEPS = 5
_FAILED = ("setup_error", "setup_retry", "failed_unload", "migration_error")

type EventHandler = Callable[[Any], None]
type ReplyHandler = Callable[[Any, dict[str, Any] | None], None]


async def stop_reading(
    reader: asyncio.Task[None], ws: aiohttp.ClientWebSocketResponse
) -> None:
    """Cancel a websocket's reader task and close the socket."""
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await ws.close()


async def open_event_socket(
    ctx: Context, event_types: Sequence[str], name: str
) -> aiohttp.ClientWebSocketResponse:
    """Open an authenticated websocket subscribed to ``event_types``."""
    commands = [{"type": "subscribe_events", "event_type": t} for t in event_types]
    return await open_socket(ctx, commands, name)


async def open_socket(
    ctx: Context, commands: Sequence[dict[str, Any]], name: str
) -> aiohttp.ClientWebSocketResponse:
    """Open an authenticated websocket and send ``commands`` (subscriptions).

    Coalescing lets HA send a burst's events as a few large frames.
    """
    ws = await ctx.api.session.ws_connect(
        f"{ctx.api.base_url}/api/websocket", max_msg_size=0
    )
    await ws.receive_json()
    await ws.send_json({"type": "auth", "access_token": ctx.api.token})
    replies = [await ws.receive_json()]
    sent: list[dict[str, Any]] = [
        {"type": "supported_features", "features": {"coalesce_messages": 1}},
        *commands,
    ]
    for msg_id, command in enumerate(sent, 1):
        await ws.send_json({"id": msg_id, **command})
        replies.append(await ws.receive_json())
    if replies[0].get("type") != "auth_ok" or not all(
        reply.get("success") for reply in replies[1:]
    ):
        await ws.close()
        msg = f"{name} websocket: {replies}"
        raise BenchError(msg)
    return ws


class Websocket:
    """HA's websocket API: commands with results, and event subscriptions."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Wrap an authenticated websocket."""
        self._ws = ws
        self._ids = itertools.count(1)
        self._results: dict[int, asyncio.Future[Any]] = {}
        self._callbacks: dict[int, ReplyHandler] = {}
        self._handlers: dict[int, EventHandler] = {}
        self._reader = asyncio.create_task(self._read(), name="bench websocket")

    @classmethod
    async def connect(
        cls, session: aiohttp.ClientSession, base_url: str, token: str
    ) -> Websocket:
        """Open and authenticate the websocket."""
        ws = await session.ws_connect(f"{base_url}/api/websocket", max_msg_size=0)
        await ws.receive_json()  # auth_required
        await ws.send_json({"type": "auth", "access_token": token})
        reply = await ws.receive_json()
        if reply.get("type") != "auth_ok":
            msg = f"websocket auth failed: {reply}"
            raise BenchError(msg)
        return cls(ws)

    async def command(self, message: dict[str, Any], timeout: float = 30) -> Any:
        """Send a command and return its result."""
        msg_id = next(self._ids)
        future = self._results[msg_id] = asyncio.get_running_loop().create_future()
        await self._ws.send_json({"id": msg_id, **message})
        async with asyncio.timeout(timeout):
            return await future

    async def send_command(self, body: str, on_reply: ReplyHandler) -> None:
        """Send a command written as JSON (its fields after the id) without waiting.

        ``on_reply(result, error)`` gets its result, or None and the failed reply.
        For load phases: no task, future or JSON encoding per command.
        """
        msg_id = next(self._ids)
        self._callbacks[msg_id] = on_reply
        await self._ws.send_str(f'{{"id":{msg_id},{body}')

    async def subscribe_events(self, event_type: str, handler: EventHandler) -> int:
        """Call ``handler(event)`` for each event of the type; return the subscription."""
        return await self.subscribe(
            {"type": "subscribe_events", "event_type": event_type}, handler
        )

    async def subscribe(self, message: dict[str, Any], handler: EventHandler) -> int:
        """Send a subscribing command; call ``handler`` with each of its events."""
        msg_id = next(self._ids)
        self._handlers[msg_id] = handler
        future = self._results[msg_id] = asyncio.get_running_loop().create_future()
        await self._ws.send_json({"id": msg_id, **message})
        await future
        return msg_id

    async def unsubscribe(self, subscription: int) -> None:
        """Stop an event subscription."""
        await self.command({"type": "unsubscribe_events", "subscription": subscription})
        self._handlers.pop(subscription, None)

    async def close(self) -> None:
        """Close the socket and stop reading."""
        await stop_reading(self._reader, self._ws)

    async def _read(self) -> None:
        async for frame in self._ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = orjson.loads(frame.data)  # HA's own JSON library: fast
            # HA sends several messages as one JSON array when they queue up.
            for message in data if isinstance(data, list) else [data]:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        msg_id = message.get("id")
        if message.get("type") == "event":
            if (handler := self._handlers.get(msg_id)) is not None:  # type: ignore[arg-type]
                handler(message["event"])
            return
        if (on_reply := self._callbacks.pop(msg_id, None)) is not None:  # type: ignore[arg-type]
            if message.get("success", True):
                on_reply(message.get("result"), None)
            else:
                on_reply(None, message)
            return
        future = self._results.pop(msg_id, None)  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if message.get("success", True):
            future.set_result(message.get("result"))
        else:
            future.set_exception(BenchError(f"websocket command failed: {message}"))


def _form_values(schema: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a serialized form's current values (suggested value, else default)."""
    values: dict[str, Any] = {}
    for field in schema:
        if field.get("type") == "expandable":  # a section
            values[field["name"]] = _form_values(field["schema"])
            continue
        suggested = (field.get("description") or {}).get("suggested_value")
        if suggested is not None:
            values[field["name"]] = suggested
        elif "default" in field:
            values[field["name"]] = field["default"]
    return values


def _merged(values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Return ``values`` with ``changes`` applied, sections merged key by key."""
    merged = dict(values)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


class HomeAssistantApi:
    """Admin calls against the private Home Assistant."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        """Use ``session`` for everything (it is not the load generator's)."""
        self.session = session
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.token = ""
        self.ws: Websocket | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Return the Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}

    async def onboard(self, timeout: float = 120) -> None:
        """Create the owner user, get tokens and open the websocket."""
        client_id = f"{self.base_url}/"
        body = {
            "client_id": client_id,
            "name": "Bench",
            "username": USERNAME,
            "password": PASSWORD,
            "language": "en",
        }
        reply = await self._retry_post("/api/onboarding/users", body, timeout=timeout)
        form = {
            "grant_type": "authorization_code",
            "code": reply["auth_code"],
            "client_id": client_id,
        }
        async with self.session.post(f"{self.base_url}/auth/token", data=form) as resp:
            tokens = await self._json(resp)
        self.ws = await Websocket.connect(
            self.session, self.base_url, tokens["access_token"]
        )
        # A long-lived token, so a long run never sees the 30-minute access token expire.
        self.token = await self.ws.command(
            {
                "type": "auth/long_lived_access_token",
                "client_name": "scripts/bench",
                "lifespan": 1,
            }
        )

    async def wait_running(self, timeout: float = 120) -> dict[str, Any]:
        """Wait until HA reports that it started; return its config."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                config: dict[str, Any] = await self.get("/api/config")
            except (BenchError, aiohttp.ClientError):
                if time.monotonic() > deadline:
                    raise
                config = {}  # still starting: the API is not set up yet
            if config.get("state") == "RUNNING" or time.monotonic() > deadline:
                return config
            await asyncio.sleep(0.2)

    async def connect_websocket(self) -> None:
        """(Re)open the admin websocket with the long-lived token."""
        await self.close()
        self.ws = await Websocket.connect(self.session, self.base_url, self.token)

    async def get(self, path: str) -> Any:
        """GET an authenticated JSON resource."""
        async with self.session.get(
            f"{self.base_url}{path}", headers=self.headers
        ) as resp:
            return await self._json(resp)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON to an authenticated resource."""
        async with self.session.post(
            f"{self.base_url}{path}", json=body, headers=self.headers
        ) as resp:
            return await self._json(resp)

    async def config_flow(
        self, handler: str, answers: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """Run a config flow, answering each form by its step id; return the entry."""
        flow_path = "/api/config/config_entries/flow"
        result = await self.post(flow_path, {"handler": handler})
        for _ in range(_FLOW_STEPS):
            if result["type"] == "create_entry":
                return dict(result["result"])
            if result["type"] == "menu" and result["step_id"] in answers:
                choice = {"next_step_id": answers[result["step_id"]]["next_step_id"]}
                result = await self.post(f"{flow_path}/{result['flow_id']}", choice)
                continue
            if result["type"] != "form" or result["step_id"] not in answers:
                break
            if result.get("errors"):
                msg = f"{handler} config flow: {result['errors']}"
                raise BenchError(msg)
            result = await self.post(
                f"{flow_path}/{result['flow_id']}", answers[result["step_id"]]
            )
        msg = f"{handler} config flow stopped at {result}"
        raise BenchError(msg)

    async def wait_entry_loaded(self, domain: str, timeout: float = 30) -> None:
        """Wait until the domain's config entry is loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entries = await self.get(
                f"/api/config/config_entries/entry?domain={domain}"
            )
            states = {entry["state"] for entry in entries}
            if states == {"loaded"}:
                return
            if states & {"setup_error", "migration_error"}:
                break
            await asyncio.sleep(0.1)
        msg = f"the {domain} config entry did not load ({states}); see hass.log"
        raise BenchError(msg)

    async def entry_id(self, domain: str) -> str:
        """Return the id of the domain's (only) config entry."""
        entries = await self.get(f"/api/config/config_entries/entry?domain={domain}")
        return str(entries[0]["entry_id"])

    async def options_flow(
        self, entry_id: str, changes: dict[str, Any], timeout: float = 120
    ) -> dict[str, Any]:
        """Change an entry's options through its options flow, as the UI does.

        Every field keeps its current value (the form's suggested value or default)
        unless ``changes`` sets it; a section's fields are changed with a nested dict.
        Waits until the entry reloaded with the new options; returns them.
        """
        assert self.ws is not None  # noqa: S101
        flow_path = "/api/config/config_entries/options/flow"
        form = await self.post(flow_path, {"handler": entry_id})
        if form.get("type") != "form":
            msg = f"options flow of {entry_id}: {form}"
            raise BenchError(msg)
        current = _form_values(form["data_schema"])
        answers = _merged(current, changes)
        if answers == current:  # nothing to change: close the form unanswered
            async with self.session.delete(
                f"{self.base_url}{flow_path}/{form['flow_id']}", headers=self.headers
            ) as resp:
                await self._json(resp)
            return answers
        states: list[str] = []
        reloaded = asyncio.Event()

        def on_entries(changes_: list[dict[str, Any]]) -> None:
            # The entry unloads (not_loaded), sets up again and is loaded once more.
            for change in changes_:
                entry = change.get("entry", {})
                if change.get("type") is None or entry.get("entry_id") != entry_id:
                    continue  # the subscription's initial list, or another entry
                states.append(entry.get("state", ""))
                if states[-1] in _FAILED or (
                    states[-1] == "loaded" and set(states) != {"loaded"}
                ):
                    reloaded.set()

        subscription = await self.ws.subscribe(
            {"type": "config_entries/subscribe"}, on_entries
        )
        try:
            result = await self.post(f"{flow_path}/{form['flow_id']}", answers)
            if result.get("type") != "create_entry":
                msg = f"options flow of {entry_id} stopped at {result}"
                raise BenchError(msg)
            async with asyncio.timeout(timeout):
                await reloaded.wait()
        except TimeoutError:
            msg = f"the entry did not reload after its options changed ({states})"
            raise BenchError(msg) from None
        finally:
            await self.ws.command(
                {"type": "unsubscribe_events", "subscription": subscription}
            )
        if states[-1] != "loaded":
            msg = f"the entry did not load after its options changed ({states})"
            raise BenchError(msg)
        return answers

    async def entity_registry(self, platform: str) -> list[dict[str, Any]]:
        """Return the entity registry entries of an integration."""
        assert self.ws is not None  # noqa: S101
        entries = await self.ws.command({"type": "config/entity_registry/list"})
        return [entry for entry in entries if entry["platform"] == platform]

    async def close(self) -> None:
        """Close the websocket."""
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def _retry_post(
        self, path: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """POST until HA has set up the component serving the path."""
        deadline = time.monotonic() + timeout
        while True:
            async with self.session.post(f"{self.base_url}{path}", json=body) as resp:
                if resp.status != 404 or time.monotonic() > deadline:  # noqa: PLR2004
                    return dict(await self._json(resp))
            await asyncio.sleep(0.2)

    @staticmethod
    async def _json(resp: aiohttp.ClientResponse) -> Any:
        if resp.status >= 400:  # noqa: PLR2004
            msg = f"{resp.method} {resp.url.path} -> {resp.status}: {await resp.text()}"
            raise BenchError(msg)
        return await resp.json(content_type=None)
