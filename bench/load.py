"""The load generator: closed-loop HTTP workers over one aiohttp connection pool.

``concurrency`` workers each send a request, wait for the answer and send the next, for a
fixed time (and at most a fixed count). The pool has exactly ``concurrency`` keep-alive
connections, opened before the clock starts. Bodies are built per request, because a
publish carries its send time for the subscriber's latency measurement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
import time

import aiohttp

type BodyFactory = Callable[[int], bytes | None]
_MAX_ERROR_SAMPLES = 5


@dataclass
class LoadResult:
    """What one load run did."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Return successful requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def new_session(concurrency: int) -> aiohttp.ClientSession:
    """Return a session whose pool holds ``concurrency`` keep-alive connections."""
    connector = aiohttp.TCPConnector(
        limit=concurrency, force_close=False, enable_cleanup_closed=False
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    )


async def warm_up(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], count: int
) -> None:
    """Open ``count`` connections at once with cheap authenticated GETs."""

    async def one() -> None:
        async with session.get(url, headers=headers) as resp:
            await resp.read()

    await asyncio.gather(*(one() for _ in range(count)))


async def run_load(  # noqa: PLR0913
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: BodyFactory,
    *,
    concurrency: int,
    duration: float,
    max_requests: int,
) -> LoadResult:
    """Send requests for ``duration`` seconds (GET when ``body`` gives None)."""
    result = LoadResult()
    start = time.perf_counter()
    deadline = start + duration

    async def request(seq: int) -> None:
        data = body(seq)
        sent_at = time.perf_counter()
        try:
            method = session.get if data is None else session.post
            async with method(url, data=data, headers=headers) as resp:
                reply = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as err:
            _failed(result, f"{type(err).__name__}: {err}")
            return
        if status >= 300:  # noqa: PLR2004
            _failed(result, f"{status}: {reply[:200].decode(errors='replace')}")
            return
        result.ok += 1
        result.latencies.append(time.perf_counter() - sent_at)

    async def worker() -> None:
        while time.perf_counter() < deadline and result.sent < max_requests:
            seq = result.sent
            result.sent += 1
            await request(seq)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result


def _failed(result: LoadResult, detail: str) -> None:
    result.errors += 1
    if len(result.error_samples) < _MAX_ERROR_SAMPLES:
        result.error_samples.append(detail)


class LatencyProbe:
    """An open-loop GET at a fixed rate, each request timed, in the background.

    A request is started every ``1 / rate`` seconds whether or not the previous one
    was answered, so a stalled event loop shows up as a few slow requests rather than
    as fewer requests.
    """

    def __init__(self, url: str, headers: dict[str, str], rate: float = 100.0) -> None:
        """Probe ``url`` at ``rate`` requests per second once started."""
        self._url = url
        self._headers = headers
        self._interval = 1 / rate
        self.samples: list[tuple[float, float]] = []  # (sent at, seconds)
        self.errors: list[str] = []
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open the connections and start probing."""
        self._session = new_session(16)
        await warm_up(self._session, self._url, self._headers, 4)
        self._task = asyncio.create_task(self._run(), name="bench latency probe")

    async def stop(self) -> None:
        """Stop sending, wait for the answers still due, close the connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=30)
        if self._session is not None:
            await self._session.close()

    def latencies(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Return the latencies (s) of requests sent between ``since`` and ``until``."""
        return [took for sent, took in self.samples if since <= sent <= until]

    async def _run(self) -> None:
        next_at = time.perf_counter()
        while True:
            task = asyncio.create_task(self._one())
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            next_at += self._interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def _one(self) -> None:
        assert self._session is not None  # noqa: S101
        sent_wall, sent_at = time.time(), time.perf_counter()
        try:
            async with self._session.get(self._url, headers=self._headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as err:
            self.errors.append(f"{type(err).__name__}: {err}")
            return
        if status >= 300:  # noqa: PLR2004
            self.errors.append(f"GET {status}")
            return
        self.samples.append((sent_wall, time.perf_counter() - sent_at))
