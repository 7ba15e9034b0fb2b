"""Command line: ``scripts/bench [--quick] [--json PATH] ...`` (see ``--help``)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
import signal
import sys
from typing import Any

from .context import Options
from .fastlanes import fastlanes_markdown
from .mirror import mirror_markdown
from .processes import BenchError
from .report import markdown
from .runner import log, run

FULL = Options(
    rounds=3,
    duration=3.0,
    concurrencies=(1, 8, 32),
    max_requests=200_000,
    ingest_messages=20_000,
    ingest_topics=4,
    subscriptions=10_000,
    subscribe_concurrency=8,
    retries=12,
    outbox_messages=5_000,
    outbox_concurrency=8,
    recorder_messages=20_000,
    recorder_event_messages=5_000,
    wide_topics=100_000,
    wide_cache_topics=1_000,
    mirror_entities=1_000,
    mirror_rate=1.0,
    mirror_seconds=30.0,
    mirror_payloads=("state", "json"),
    mirror_rounds=1,
)
QUICK = Options(
    rounds=1,
    duration=1.5,
    concurrencies=(1, 8, 32),
    max_requests=50_000,
    ingest_messages=3_000,
    ingest_topics=4,
    subscriptions=1_000,
    subscribe_concurrency=8,
    retries=3,
    outbox_messages=500,
    outbox_concurrency=8,
    recorder_messages=3_000,
    recorder_event_messages=0,
    wide_topics=5_000,
    wide_cache_topics=1_000,
    mirror_entities=200,
    mirror_rate=1.0,
    mirror_seconds=5.0,
    mirror_payloads=("state",),
    mirror_rounds=1,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark cloudsync against Home Assistant's mqtt.publish and "
        "HA's HTTP ceiling, on a private mosquitto and Home Assistant.",
    )
    parser.add_argument("--quick", action="store_true", help="one short round (~1 min)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved phases")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument(
        "--concurrency", help="comma-separated concurrencies (default 1,8,32)"
    )
    parser.add_argument("--ingest-messages", type=int, help="messages per burst")
    parser.add_argument("--subscriptions", type=int, help="memory phase size")
    parser.add_argument(
        "--outbox-messages", type=int, help="publishes queued per outbox cycle"
    )
    parser.add_argument(
        "--outbox-concurrency", type=int, help="workers sending them (default 8)"
    )
    parser.add_argument(
        "--recorder-messages", type=int, help="burst size with the recorder on"
    )
    parser.add_argument(
        "--recorder-event-messages",
        type=int,
        help="burst with message_events on, recorder on (0 skips it)",
    )
    parser.add_argument(
        "--wide-topics", type=int, help="distinct topics against the cache cap"
    )
    parser.add_argument(
        "--mirror-entities", type=int, help="sensors the mirror phase changes"
    )
    parser.add_argument(
        "--mirror-seconds", type=float, help="seconds of changes per mirror measurement"
    )
    parser.add_argument(
        "--mirror-payloads", help="comma-separated mirror payloads (state,json)"
    )
    parser.add_argument("--mirror-rounds", type=int, help="rounds of the mirror phase")
    parser.add_argument(
        "--only-mirror",
        action="store_true",
        help="run only the mirror phase (full size unless --quick)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        help="how many measurements may be repeated because other processes "
        "loaded the CPU (default 12, --quick 3)",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy profiles of HA into DIR"
    )
    parser.add_argument(
        "--integration",
        type=Path,
        metavar="DIR",
        help="the cloudsync to load (default: custom_components/cloudsync)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary HA config and logs"
    )
    return parser


def _options(args: argparse.Namespace) -> Options:
    base = QUICK if args.quick else FULL
    changes: dict[str, Any] = {
        "rounds": args.rounds,
        "duration": args.duration,
        "ingest_messages": args.ingest_messages,
        "subscriptions": args.subscriptions,
        "retries": args.retries,
        "outbox_messages": args.outbox_messages,
        "outbox_concurrency": args.outbox_concurrency,
        "recorder_messages": args.recorder_messages,
        "recorder_event_messages": args.recorder_event_messages,
        "wide_topics": args.wide_topics,
        "mirror_entities": args.mirror_entities,
        "mirror_seconds": args.mirror_seconds,
        "mirror_rounds": args.mirror_rounds,
    }
    if args.mirror_payloads:
        changes["mirror_payloads"] = tuple(args.mirror_payloads.split(","))
    if args.concurrency:
        changes["concurrencies"] = tuple(int(c) for c in args.concurrency.split(","))
    return Options(
        **{**base.__dict__, **{k: v for k, v in changes.items() if v is not None}}
    )


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None  # noqa: S101
    loop = asyncio.get_running_loop()
    # Also when started in the background, where the shell ignores SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    extra = {"integration": args.integration} if args.integration else {}
    return await run(
        _options(args),
        profile_dir=args.profile,
        keep=args.keep,
        only_mirror=args.only_mirror,
        **extra,
    )


def main() -> int:
    """Run the benchmark; exit 1 if any phase lost messages or had errors."""
    args = _parser().parse_args()
    try:
        result = asyncio.run(_main(args))
    except BenchError as err:
        log(f"error: {err}")
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
        return 130
    if "phases" in result:
        sys.stdout.write(markdown(result) + fastlanes_markdown(result))
    sys.stdout.write(mirror_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        log(f"results written to {args.json}")
    # The last target of each list is "nothing lost"; the others only inform.
    lossless = all(
        result[name][-1]["met"]
        for name in ("targets", "mirror_targets")
        if name in result
    )
    return 0 if lossless else 1


if __name__ == "__main__":
    sys.exit(main())
