"""The load generator: closed-loop HTTP workers over one aiohttp connection pool.

``concurrency`` workers each send a request, wait for the answer and send the next, for a
fixed time (and at most a fixed count). The pool has exactly ``concurrency`` keep-alive
connections, opened before the clock starts. Bodies are built per request, because a
publish carries its send time for the subscriber's latency measurement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
