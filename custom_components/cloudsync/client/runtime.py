"""What the core needs from its host: an executor, a task factory, ids and timeouts.

A host such as Home Assistant injects its own executor and task factory; the defaults run
on the current asyncio loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator
import logging
from typing import Any
import uuid

_LOGGER = logging.getLogger(__name__)

type Executor = Callable[..., Awaitable[Any]]
type TaskFactory = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]

CLIENT_ID_PREFIX = "cloudsync-"


def default_executor[T](func: Callable[..., T], *args: Any) -> Awaitable[T]:
    """Run a blocking call in the loop's default executor."""
    return asyncio.get_running_loop().run_in_executor(None, func, *args)


def default_task_factory(
    coro: Coroutine[Any, Any, None], name: str
) -> asyncio.Task[None]:
    """Start a task on the running loop."""
    return asyncio.get_running_loop().create_task(coro, name=name)


def new_client_id() -> str:
    """Return a fresh MQTT client id (brokers drop a session whose id is reused)."""
    return f"{CLIENT_ID_PREFIX}{uuid.uuid4().hex[:12]}"


async def wait_with_timeout[T](
    future: Awaitable[T], timeout: float | None, on_timeout: Callable[[], Exception]
) -> T:
    """Await ``future``; past ``timeout`` seconds raise what ``on_timeout`` returns."""
    try:
        async with asyncio.timeout(timeout):
            return await future
    except TimeoutError as err:
        raise on_timeout() from err


def backoff_delays(minimum: float, maximum: float) -> Iterator[float]:
    """Yield minimum, 2 x minimum, 4 x minimum, … capped at ``maximum``, forever."""
    delay = minimum
    while True:
        yield min(delay, maximum)
        delay = min(delay * 2, maximum)


class Listeners[T]:
    """Callbacks to tell about something; one that raises is logged, not propagated."""

    def __init__(self, what: str) -> None:
        """Name ``what`` the listeners hear about (for the log)."""
        self._what = what
        self._listeners: list[Callable[[T], None]] = []

    def add(self, listener: Callable[[T], None]) -> Callable[[], None]:
        """Call ``listener(value)`` on each notify; return a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def notify(self, value: T) -> None:
        """Call every listener with ``value``."""
        for listener in list(self._listeners):
            try:
                listener(value)
            except Exception:
                _LOGGER.exception("Error in a listener for %s", self._what)
