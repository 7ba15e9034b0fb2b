"""Optional sampling profiles of Home Assistant during each measurement (py-spy).

With ``--profile DIR`` every measurement writes ``DIR/<measurement>.txt``: py-spy's raw
output, one ``stack;frames count`` line per distinct stack (flamegraph tools read it), and
``DIR/<measurement>.top.txt``: the functions with the most samples, inclusive and own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
import contextlib
from pathlib import Path
import shutil
import signal
import sys
from typing import TYPE_CHECKING

from .processes import BenchError, Processes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

_RATE = 200
_WRITE_TIMEOUT = 20.0
_TOP = 40


class Profiler:
    """Runs py-spy against HA around a block, when a profile directory was given."""

    def __init__(self, processes: Processes, directory: Path | None) -> None:
        """Profile into ``directory``; do nothing when it is None."""
        self._processes = processes
        self._directory = directory
        self.pid = 0
        py_spy = Path(sys.executable).parent / "py-spy"
        self._py_spy = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
        if directory is not None:
            if self._py_spy is None:
                msg = "--profile needs py-spy (pip install -r bench/requirements.txt)"
                raise BenchError(msg)
            directory.mkdir(parents=True, exist_ok=True)

    @contextlib.asynccontextmanager
    async def record(self, name: str) -> AsyncIterator[None]:
        """Sample HA while the block runs."""
        if self._directory is None or self._py_spy is None:
            yield
            return
        output = self._directory / f"{name}.txt"
        child = await self._processes.start(
            "py-spy",
            self._py_spy,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(_RATE),
            "--format",
            "raw",
            "--function",
            "--output",
            output,
            log=self._directory / f"{name}.log",
        )
        try:
            yield
        finally:
            # py-spy writes its output when interrupted.
            child.process.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.process.wait(), _WRITE_TIMEOUT)
            await self._processes.stop(child)
            if output.exists():
                write_top(output, self._directory / f"{name}.top.txt")


def write_top(raw: Path, top: Path) -> None:
    """Summarize the main thread's stacks: top functions by inclusive and own samples.

    Only stacks that start in the main module count: the event loop runs there, and
    py-spy also reports executor threads waiting on their queues as busy.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not frames[0].startswith("<module>") or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    total = max(total, 1)
    lines = [f"{total} main-thread samples at {_RATE} Hz", "", "inclusive %  function"]
    lines += [f"{100 * n / total:10.1f}  {f}" for f, n in inclusive.most_common(_TOP)]
    lines += ["", "own %        function"]
    lines += [f"{100 * n / total:10.1f}  {f}" for f, n in own.most_common(_TOP)]
    top.write_text("\n".join(lines) + "\n", encoding="utf-8")
