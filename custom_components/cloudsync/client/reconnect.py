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

    def __init__(  # noqa: PLR0913
        self,
        attempt: Callable[[], Awaitable[None]],
        create_task: TaskFactory,
        url: str,
        backoff: tuple[float, float],
        on_failure: Callable[[CloudSyncError], None] | None = None,
        floor: float = 0.0,
    ) -> None:
        """Retry ``attempt`` with delays between ``backoff`` (min, max) seconds.

        ``on_failure`` hears of every failed attempt (a host may act on refused
        credentials, which retrying alone does not fix). No delay is shorter than
        ``floor`` (a broker's minimum time between CONNECTs of one client id).
        """
        self._floor = floor
        self._attempt = attempt
        self._on_failure = on_failure
        self._create_task = create_task
        self._url = url
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self.enabled = False

    def start(self, skip: int = 0) -> None:
        """Start retrying unless disabled or already retrying.

        ``skip`` steps of the backoff are skipped: a link that keeps dropping right
        after each connect does not restart at the shortest delay.
        """
        if self.enabled and (self._task is None or self._task.done()):
            self._task = self._create_task(
                self._run(skip), f"cloudsync reconnect {self._url}"
            )

    async def stop(self) -> None:
        """Disable and cancel a running retry."""
        self.enabled = False
        if (task := self._task) is not None:
            self._task = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self, skip: int) -> None:
        low, high = self._backoff
        for delay in backoff_delays(min(low * 2 ** min(skip, 16), high), high):
            jittered = random.uniform(delay / 2, delay)  # noqa: S311
            await asyncio.sleep(max(jittered, self._floor))
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
