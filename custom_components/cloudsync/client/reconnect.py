"""Reconnecting with exponential backoff and full jitter until an attempt works."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import logging
import random

from .errors import CloudSyncError
from .runtime import TaskFactory, backoff_delays

_LOGGER = logging.getLogger(__name__)


class Reconnector:
    """Runs connection attempts in the background while enabled."""

    def __init__(
        self,
        attempt: Callable[[], Awaitable[None]],
        create_task: TaskFactory,
        url: str,
        backoff: tuple[float, float],
        on_failure: Callable[[CloudSyncError], None] | None = None,
    ) -> None:
        """Retry ``attempt`` with delays between ``backoff`` (min, max) seconds.

        ``on_failure`` hears of every failed attempt (a host may act on refused
        credentials, which retrying alone does not fix).
        """
        self._attempt = attempt
        self._on_failure = on_failure
        self._create_task = create_task
        self._url = url
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self.enabled = False

    def start(self) -> None:
        """Start retrying unless disabled or already retrying."""
        if self.enabled and (self._task is None or self._task.done()):
            self._task = self._create_task(
                self._run(), f"cloudsync reconnect {self._url}"
            )

    async def stop(self) -> None:
        """Disable and cancel a running retry."""
        self.enabled = False
        if (task := self._task) is not None:
            self._task = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        for delay in backoff_delays(*self._backoff):
            await asyncio.sleep(random.uniform(delay / 2, delay))  # noqa: S311
            if not self.enabled:
                return
            try:
                await self._attempt()
            except CloudSyncError as err:
                _LOGGER.debug("Reconnect to %s failed: %s", self._url, err)
                if self._on_failure is not None:
                    self._on_failure(err)
            else:
                _LOGGER.info("Reconnected to %s", self._url)
                return
